"""The count token (``model.count_token``): one more word-anchored image token after the cells, the
number of occupied cells as a mix of the number words, weighted by the cells' own probabilities."""
import itertools
import json

import pytest
import torch

from illume_rm.data import load_examples
from illume_rm.vlm import load_vlm

WORDS = [["small", "large"], ["red", "green", "blue"], ["circle", "square", "nothing"]]


def _force(vlm, per_cell: list[list[int]]) -> None:
    """Make cell c's slot s say word per_cell[c][s] with probability 1 (0: nothing): the projector's
    last layer reads a one-hot of the cell's index, which the features are replaced by."""
    model = vlm.model
    cells = len(per_cell)
    sizes = [len(w) + 1 for w in model.config.visual_words]
    table = torch.full((cells, sum(sizes)), -1e4)
    for c, choice in enumerate(per_cell):
        offset = 0
        for s, n in enumerate(sizes):
            table[c, offset + choice[s]] = 1e4
            offset += n
    model.slot_logits = lambda feats: list(torch.split(table.expand(feats.shape[0], -1, -1).clone(), sizes, dim=-1))


def _text_for(vlm, per_cell, count_word):
    from illume_rm.vlm.processor import cell_text

    words = [" ".join(vlm.model.config.visual_words[s][k - 1] for s, k in enumerate(c) if k > 0) for c in per_cell]
    return cell_text(vlm.processor.image_layout, words, vlm.processor.cell_places, count_word)


@pytest.mark.parametrize("cell_places", ["around", "before"])
def test_count_token_of_exact_cells_is_the_texts_number_in_training_and_generate(tiny_grid3, shapes64, cell_places):
    """The plumbing guarantee with the count token: cells whose tokens are exactly words make the
    count token exactly the number word of the occupied cells, and the image is, to the LM, the text
    "... (bottom right). objects: three." (same embeddings, logits, loss, greedy continuation)."""
    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS, cell_places, count_token=True)
    assert vlm.model.config.image_tokens == 9 * 3 + 1 == vlm.processor.image_ids.count(vlm.processor.image_token_id)
    nothing = [0, 0, 3]
    image = load_examples(shapes64, "train")[0].image
    # three occupied cells: the count token is the word " three" (the empty cells' zero slots have no text)
    _force(vlm, [[2, 1, 2], nothing, nothing, [1, 3, 1], nothing, nothing, nothing, [2, 2, 2], nothing])
    feats = vlm.features.get([image])
    three = vlm.model.get_input_embeddings()(torch.tensor(vlm.processor.encode(" three")))
    assert three.shape[0] == 1 and torch.equal(vlm.model.word_tokens(feats)[0, -1], three[0])
    assert vlm.describe([image])[0].endswith("; objects: three")
    # every cell occupied: the whole image is exactly the text, count included
    per_cell = [[2, 1, 2], [1, 3, 1], [2, 2, 2]] * 3
    _force(vlm, per_cell)
    text = _text_for(vlm, per_cell, "nine")
    assert text.endswith("objects: nine.")
    prompt, target = "Q: How many objects are there? A:", " nine"
    with_image = [(image, prompt, target), (None, "Q: pad me to a longer row than the other one? A:", " no")]
    as_text = [(None, text + prompt, target), with_image[1]]
    vlm.model.eval()
    a, b = vlm._inputs(with_image, "right", True), vlm._inputs(as_text, "right", True)
    assert a["input_ids"].shape == b["input_ids"].shape
    assert torch.equal(vlm.model.embed(a["input_ids"], a.get("image_features"))[0],
                       vlm.model.embed(b["input_ids"])[0])
    logits_a = vlm.model(**{k: v for k, v in a.items() if k != "labels"}).logits
    logits_b = vlm.model(**{k: v for k, v in b.items() if k != "labels"}).logits
    assert torch.allclose(logits_a, logits_b, atol=1e-5)
    assert torch.allclose(vlm.loss(with_image), vlm.loss(as_text), atol=1e-6)
    gen = [(image, prompt, None), (None, "Q: a longer prompt than the first one here? A:", None)]
    assert vlm.generate(gen, max_new_tokens=6) == vlm.generate([(None, text + prompt, None), gen[1]], max_new_tokens=6)
    assert vlm.describe([image])[0].endswith("; objects: nine")
    _force(vlm, [nothing] * 9)
    assert vlm.describe([image])[0].endswith("; objects: zero")


def test_count_distribution_is_the_number_of_occupied_cells_by_enumeration(tiny_grid3):
    """Against brute force over all 2^9 ways the cells can be occupied, each cell independently with
    its occupancy (its slots' words against nothing, averaged over slots); and the gradient of the
    count token reaches the projector."""
    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS, count_token=True)
    model = vlm.model
    torch.manual_seed(0)
    feats = torch.randn(2, 9, model.config.vision_dim)
    probs = [torch.softmax(lg.float() * 3, -1) for lg in model.slot_logits(feats)]
    occ = model.occupancy(probs)
    by_hand = torch.stack([1 - probs[0][..., 0], 1 - probs[1][..., 0],
                           1 - probs[2][..., 0] - probs[2][..., 1 + WORDS[2].index("nothing")]], -1).mean(-1)
    assert torch.allclose(occ, by_hand, atol=1e-6)
    dist = model.count_distribution(probs)
    assert dist.shape == (2, 10) and torch.allclose(dist.sum(-1), torch.ones(2), atol=1e-5)
    brute = torch.zeros(2, 10, dtype=torch.float64)
    o = occ.double()
    for pattern in itertools.product([0, 1], repeat=9):
        pat = torch.tensor(pattern, dtype=torch.float64)
        brute[:, sum(pattern)] += torch.prod(o * pat + (1 - o) * (1 - pat), -1)
    assert torch.allclose(dist.double(), brute, atol=1e-6)
    tokens = model.word_tokens(feats)
    assert tokens.shape[1] == 28
    model.projector.zero_grad()
    tokens[:, -1].sum().backward()
    assert model.projector[1].weight.grad.abs().sum() > 0


def test_count_token_survives_save_and_load_and_old_files_have_none(tiny_grid3, shapes64, tmp_path):
    from illume_rm.data.shapes import scene_text
    from illume_rm.evaluate.controls import as_text
    from illume_rm.vlm.processor import PROCESSOR_FILE, IllumeVLMProcessor

    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS, "around", count_token=True)
    vlm.save(tmp_path / "ckpt")
    again = load_vlm(tmp_path / "ckpt")
    assert again.processor.count_token and again.processor.image_ids == vlm.processor.image_ids
    assert again.model.config.count_words[3] == "three" and again.model.config.image_tokens == 28
    spec = json.loads((tmp_path / "ckpt" / PROCESSOR_FILE).read_text())
    plain = load_vlm(tiny_grid3)
    plain.use_word_tokens(WORDS, "around")
    plain.save(tmp_path / "plain")
    assert "count_token" not in json.loads((tmp_path / "plain" / PROCESSOR_FILE).read_text())
    assert spec["count_token"] is True
    assert not IllumeVLMProcessor.from_pretrained(tmp_path / "plain").count_token
    # the text bound writes the count as the token says it
    ex = load_examples(shapes64, "train")[0]
    n = len(ex.meta["scene"]["objects"])
    from illume_rm.data.scene import number_word
    assert scene_text(ex.meta["scene"], "around", True) == scene_text(ex.meta["scene"], "around") + f" objects: {number_word(n)}."
    assert as_text(ex, "around", True).question.startswith(scene_text(ex.meta["scene"], "around", True) + " ")


def test_count_token_keys_the_warmup_and_is_refused_without_word_tokens(tiny_vlm_path):
    from illume_rm.checkpoints import base_vlm
    from illume_rm.config import _hashable, load_recipe
    from illume_rm.errors import UserError

    key = lambda r: r.hash("seed", "data", "model", "warmup")  # noqa: E731
    off, on = load_recipe(None, []), load_recipe(None, ["model.count_token=true"])
    assert "count_token" not in _hashable(off)["model"] and key(off) != key(on)
    projected = load_recipe(None, ["model.count_token=true", "model.image_tokens=projected",
                                   f"model.base={tiny_vlm_path}"])
    with pytest.raises(UserError, match="model.count_token"):
        base_vlm(projected)


def test_warmup_with_the_count_token_reports_it_and_its_text_bound_writes_the_count(tiny_grid3, tmp_path, monkeypatch):
    """`illume-rm warmup --set model.count_token=true`: the checkpoint has the token, the report says how
    often its number is the image's, and the text upper bound's scene ends with the count's sentence."""
    from click.testing import CliRunner

    from illume_rm.cli import cli
    from illume_rm.train import warmup as warmup_mod

    seen = []
    real = warmup_mod.as_text
    monkeypatch.setattr(warmup_mod, "as_text", lambda ex, *a: seen.append(real(ex, *a)) or seen[-1])
    args = ["warmup", "--set", f"model.base={tiny_grid3}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 20, val: 6, test: 2, image_size: 64}", "--set", "model.count_token=true",
            "--set", "warmup.steps=3", "--set", "warmup.batch_size=4", "--set", "warmup.align_steps=20",
            "--out", str(tmp_path / "copy"), "--upper-bound"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "copy" / "warmup.json").read_text())
    assert set(report["cells"]) == {"occupied", "empty", "count"} and 0 <= report["cells"]["count"] <= 1
    assert "count token's most likely number" in r.output
    assert seen and all(" objects: " in ex.question.split("?")[0] for ex in seen)
    vlm = load_vlm(tmp_path / "copy")
    assert vlm.processor.count_token and vlm.model.config.image_tokens == 28
