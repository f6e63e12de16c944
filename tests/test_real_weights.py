"""The real shipped weights: convert (cached), one forward pass, one generation."""
import os

import pytest
import torch


@pytest.fixture(scope="module")
def real_cache(monkeypatch_module=None):
    # Conversion takes ~30 s; share it with the user's cache when there is one.
    real = os.environ.get("ILLUME_RM_REAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "illume-rm")
    old = os.environ["ILLUME_RM_CACHE"]
    os.environ["ILLUME_RM_CACHE"] = real
    yield real
    os.environ["ILLUME_RM_CACHE"] = old


def test_builtin_vlm_from_shipped_weights(real_cache, shapes_small):
    from illume_rm.data import load_examples
    from illume_rm.vlm import load_vlm

    vlm = load_vlm("builtin")
    n_params = sum(p.numel() for p in vlm.model.language_model.parameters())
    assert 130e6 < n_params < 140e6  # SmolLM2-135M
    ex = load_examples(shapes_small, "train")[0]
    with torch.no_grad():
        loss = vlm.loss([(ex.image, "Q: " + ex.question + " A:", " " + ex.answer)])
    assert torch.isfinite(loss) and 0 < float(loss) < 20
    out = vlm.generate([(None, "The capital of France is", None)], max_new_tokens=5)
    assert "paris" in out[0][0].lower()  # the language model really is the pretrained one
    out = vlm.generate([(ex.image, "Q: " + ex.question + " A:", None)], max_new_tokens=5)
    assert isinstance(out[0][0], str)
