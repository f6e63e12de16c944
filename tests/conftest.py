import os
from pathlib import Path

import pytest

_CACHE = None


def pytest_configure(config):
    # Tests never touch the user's cache: data, features and tiny models go to a temporary one.
    # The converted real weights are expensive, so they are shared from the normal cache
    # (see test_real_weights.py), which `make demo` or the first run fills.
    global _CACHE
    import tempfile

    if "ILLUME_RM_TEST_CACHE" in os.environ:
        _CACHE = Path(os.environ["ILLUME_RM_TEST_CACHE"])
    else:
        _CACHE = Path(tempfile.mkdtemp(prefix="illume-rm-test-cache-"))
    os.environ.setdefault("ILLUME_RM_REAL_CACHE", os.environ.get("ILLUME_RM_CACHE", ""))
    os.environ["ILLUME_RM_CACHE"] = str(_CACHE)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_vlm_path(tmp_path_factory):
    from illume_rm.vlm.weights import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "vlm", image_size=64)


@pytest.fixture(scope="session")
def shapes_small():
    """A small shapes dataset config (64 px images)."""
    from illume_rm.data import DataConfig
    from illume_rm.data.shapes import ShapesConfig

    return DataConfig(name="shapes", shapes=ShapesConfig(train=40, val=10, test=10, image_size=64))


FIXTURES = Path(__file__).parent / "fixtures"


def load_diagnostic(name: str):
    """diagnostics/<name>.py as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).parent.parent / "diagnostics" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_grid3(tmp_path_factory):
    """A tiny built-in VLM with a 3 x 3 grid (the shapes world's), 64 px images."""
    from illume_rm.vlm.weights import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny3") / "vlm", image_size=64, image_grid=3)


@pytest.fixture(scope="module")
def shapes64():
    from illume_rm.data import DataConfig
    from illume_rm.data.shapes import ShapesConfig

    return DataConfig(name="shapes", shapes=ShapesConfig(train=40, val=10, test=4, image_size=64))
