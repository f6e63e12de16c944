"""Word-anchored image tokens: the built-in VLM writes each grid cell as text whose content words are
mixes of the LM's own word embeddings; the scene graph supervises them; the warm-up's controls."""
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import load_diagnostic

from illume_rm.cli import cli
from illume_rm.data import DataConfig, cell_words, load_examples, visual_words
from illume_rm.data.shapes import ShapesConfig, more_questions
from illume_rm.vlm import load_vlm

WORDS = [["small", "large"], ["red", "green", "blue"], ["circle", "square", "nothing"]]


def _force_words(vlm, choice: list[int]) -> None:
    """Make every cell's slot s say its word choice[s] with probability exactly 1 (index 0: nothing)."""
    last = vlm.model.projector[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1e4)
        offset = 0
        for s, words in enumerate(vlm.model.config.visual_words):
            last.bias[offset + choice[s]] = 1e4
            offset += len(words) + 1


@pytest.mark.parametrize("cell_places", ["before", "around", "bare"])
def test_image_tokens_of_exact_words_give_the_texts_logits_in_training_and_generate(tiny_grid3, shapes64, cell_places):
    """The plumbing guarantee: an image whose tokens are exactly some words' embeddings is, to the LM,
    the text of those words (same logits, same loss, same greedy continuation), padded or not, in
    either layout of the cells' places."""
    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS, cell_places)
    _force_words(vlm, [2, 1, 2])  # large red square, in every cell
    image = load_examples(shapes64, "train")[0].image
    places = vlm.processor.image_layout
    text = ", ".join({"before": f"{p}: large red square", "around": f"{p}: large red square ({p})",
                      "bare": f"{p} large red square {p}"}[cell_places] for p in places) + "."
    p = vlm.processor
    # the processor's image, placeholders aside, is this text's own tokenisation
    ids = p.image_ids
    assert [i for i in ids if i != p.image_token_id] == [t for t in p.encode(text)
                                                         if t not in {p.encode(" " + w)[0] for w in ("large", "red", "square")}]
    prompt, target = "Q: What is in the top left? A:", " a large red square"
    with_image = [(image, prompt, target), (None, "Q: pad me to a longer row than the other one? A:", " no")]
    as_text = [(None, text + prompt, target), with_image[1]]
    vlm.model.eval()
    a, b = vlm._inputs(with_image, "right", True), vlm._inputs(as_text, "right", True)
    assert torch.equal(a["labels"][a["labels"] != -100], b["labels"][b["labels"] != -100])
    emb_a = vlm.model.embed(a["input_ids"], a.get("image_features"))
    emb_b = vlm.model.embed(b["input_ids"])
    assert torch.equal(emb_a[0], emb_b[0])
    logits_a = vlm.model(**{k: v for k, v in a.items() if k != "labels"}).logits
    logits_b = vlm.model(**{k: v for k, v in b.items() if k != "labels"}).logits
    assert torch.allclose(logits_a, logits_b, atol=1e-5)
    assert torch.allclose(vlm.loss(with_image), vlm.loss(as_text), atol=1e-6)
    gen = [(image, prompt, None), (None, "Q: a longer prompt than the first one here? A:", None)]
    gen_text = [(None, text + prompt, None), gen[1]]
    assert vlm.generate(gen, max_new_tokens=6) == vlm.generate(gen_text, max_new_tokens=6)


@pytest.mark.parametrize("cell_places", ["before", "around", "bare"])
def test_reading_each_image_once_gives_the_whole_rows_losses_and_gradients(tiny_grid3, shapes64, cell_places):
    """With ``share_images`` a batch with images repeated (out of order, prompts and targets of
    different lengths, per-item weights) reads each image's block once and shares its keys and
    values: the loss, every trainable gradient (LoRA, and the projector's, which flows back through
    the shared keys and values) and the targets' log-probabilities are those of the whole rows."""
    from illume_rm.train.lora import LoraConfig, add_lora

    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS, cell_places)
    exs = load_examples(shapes64, "train")
    a, b, c = exs[0].image, exs[3].image, exs[6].image
    assert len({a, b, c}) == 3
    items = [(a, "Q: What is in the top left? A:", " a large red square"), (b, "Q: short? A:", " no"),
             (a, "Q: a much longer question about this image, is it? A:", " yes"), (c, "Q: x? A:", " nothing at all"),
             (b, "Q: y? A:", " two"), (a, "Q: z? A:", " blue, seeing that it is")]
    weights = [1.0, 2.0, 1.0, 0.5, 1.0, 3.0]
    model = add_lora(vlm, LoraConfig(r=4, alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():  # adapters' B away from 0, so that their A matrices get gradients too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    model.train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def run(share: bool):
        vlm.share_images = share
        if share:  # the batch is read image by image (the path under test)
            assert vlm._shared_image_inputs(items) is not None
        for _, p in params:
            p.grad = None
        loss = vlm.loss(items, weights)
        loss.backward()
        with torch.no_grad():
            logprobs = vlm.target_logprobs(items)
        return loss.detach(), {n: p.grad.clone() for n, p in params if p.grad is not None}, logprobs

    whole, shared = run(False), run(True)
    vlm.share_images = False
    assert torch.allclose(shared[0], whole[0], atol=1e-6)
    assert set(shared[1]) == set(whole[1])
    assert any(n.startswith("projector") and g.abs().sum() > 0 for n, g in whole[1].items())
    assert any("lora_A" in n and g.abs().sum() > 0 for n, g in whole[1].items())
    for n, g in whole[1].items():
        assert torch.allclose(shared[1][n], g, atol=1e-6, rtol=1e-4), n
    assert shared[2] == pytest.approx(whole[2], abs=1e-4)
    # nothing to share (every image once), a row without an image, or a row labelled from its first
    # token after the image: the whole rows are read
    vlm.share_images = True
    assert vlm._shared_image_inputs(items[:2]) is None
    assert vlm._shared_image_inputs(items + [(None, "Q: text? A:", " yes")]) is None
    assert vlm._shared_image_inputs(items + [(a, "", " a target right after the image")]) is None


def test_scene_graph_words_per_cell_and_the_projector_learns_them(tiny_grid3, shapes64):
    from illume_rm.train.align import align_projector, cell_accuracy, cell_targets

    train = load_examples(shapes64, "train")
    scene = train[0].meta["scene"]
    cells = cell_words(train[0], 3)
    for o in scene["objects"]:
        assert cells[o["row"] * 3 + o["col"]] == [o["size"], o["color"], o["shape"]]
    assert sum(c == [None, None, "nothing"] for c in cells) == 9 - len(scene["objects"])
    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(visual_words(shapes64))
    targets = cell_targets(vlm, train)
    assert len(targets) == 40 and targets[train[0].image].shape == (9, 3)
    before = cell_accuracy(vlm, targets)
    align_projector(vlm, train, steps=300, log=lambda s: None)
    after = cell_accuracy(vlm, targets)
    assert after["occupied"] > 0.9 and after["empty"] > 0.9 and after["occupied"] > before["occupied"] + 0.5
    # and the tokens survive a save and a load
    v2_path = tiny_grid3.parent / "aligned"
    vlm.save(v2_path)
    assert cell_accuracy(load_vlm(v2_path), targets) == after


def test_swapped_images_are_another_scenes_and_grounding_questions_by_kind(shapes64):
    from illume_rm.evaluate.controls import grounding_items, swap_images

    val = load_examples(shapes64, "val")
    swapped = swap_images(val)
    assert [e.question for e in swapped] == [e.question for e in val]
    assert all(s.image != e.image for s, e in zip(swapped, val))
    assert len({s.image for s in swapped}) == len({e.image for e in val})
    items = grounding_items(val, limit=4)
    assert len({i[0] for i in items}) == 4
    kinds = {k for *_, k in items}
    assert kinds == {"what_occupied", "what_empty", "where"} or kinds == {"what_occupied", "where"}
    assert all((a == "nothing") == (k == "what_empty") for _, q, a, k in items if q.startswith("What"))


def test_accuracy_and_swapped_accuracy_in_one_pass_ask_each_image_once_and_keep_each_answer_its_question(shapes64):
    """The warm-up's after and swapped accuracies come from one answering pass with each image's own and
    swapped-in questions side by side; a model that answers right only of the question's own scene
    scores 1 on every family and 0 swapped (a mix-up of the two halves would show)."""
    from illume_rm.evaluate.controls import swap_images
    from illume_rm.train.warmup import evaluate_answers, evaluate_with_swapped

    val = load_examples(shapes64, "val")
    own = {e.question + e.id: e.image for e in val}
    calls = []

    class SeesOnlyItsOwnScene:
        def answer(self, examples):
            calls.append([e.image for e in examples])
            return [e.answers[0] if own[e.question + e.id] == e.image else "zebra" for e in examples]

    after, swapped = evaluate_with_swapped(SeesOnlyItsOwnScene(), val)
    assert set(after) == set(swapped) and len(after) > 2
    assert all(v == 1.0 for v in after.values()) and all(v == 0.0 for v in swapped.values())
    assert len(calls) == 1 and len(calls[0]) == 2 * len(val)
    images = calls[0]
    assert all(images.index(img) + images.count(img) - 1 == len(images) - 1 - images[::-1].index(img) for img in images)
    # the same as the two passes it replaces
    assert (after, swapped) == (evaluate_answers(SeesOnlyItsOwnScene(), val),
                                evaluate_answers(SeesOnlyItsOwnScene(), swap_images(val)))


def test_warmup_report_has_the_controls_and_the_text_upper_bound(tiny_grid3, tmp_path):
    args = ["warmup", "--set", f"model.base={tiny_grid3}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 20, val: 6, test: 2, image_size: 64}",
            "--set", "warmup.steps=3", "--set", "warmup.batch_size=4", "--set", "warmup.align_steps=20",
            "--out", str(tmp_path / "copy")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "copy" / "warmup.json").read_text())
    assert set(report["swapped"]) == set(report["after"])
    assert set(report["grounding"]) <= {"what_occupied", "what_empty", "where"} and "where" in report["grounding"]
    assert set(report["cells"]) == {"occupied", "empty"}
    assert "swapped" in r.output and "lost" in r.output and "grounding questions" in r.output
    assert "text" not in report
    r2 = CliRunner().invoke(cli, args + ["--upper-bound"])
    assert r2.exit_code == 0, r2.output
    report = json.loads((tmp_path / "copy" / "warmup.json").read_text())
    assert report["text"]["steps"] == 2 and set(report["text"]["after"]) == set(report["after"])  # 3 steps x 50%
    assert "upper bound" in r2.output


def test_data_without_words_keeps_projected_tokens_and_says_so(tiny_vlm_path, tmp_path):
    from PIL import Image

    from illume_rm.records import Example, write_jsonl

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    for split in ("train", "val"):
        write_jsonl(tmp_path / f"{split}.jsonl", [Example(id=f"{split}{i}", question="q?", answers=["yes"],
                                                          image=str(tmp_path / "x.png")) for i in range(4)])
    r = CliRunner().invoke(cli, ["warmup", "--set", f"model.base={tiny_vlm_path}", "--set", "data.name=jsonl",
                                 "--set", "model.image_size=64", "--set", "warmup.steps=1", "--set",
                                 "warmup.batch_size=2", "--data-path", str(tmp_path / "{split}.jsonl"),
                                 "--out", str(tmp_path / "ck")])
    assert r.exit_code == 0, r.output
    assert "stay projected" in r.output and "model.visual_words" in r.output
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["token_kind"] == "projected"


def test_balanced_grounding_asks_of_as_many_empty_cells_as_occupied_ones(shapes64):
    from collections import Counter

    from illume_rm.train.warmup import warmup_items

    train = load_examples(shapes64, "train")
    _, _, every = warmup_items(train)
    _, _, balanced = warmup_items(train, balance=True, seed=0)
    nothing = Counter(img for img, _, t in balanced if t == " nothing")
    named = Counter(img for img, p, t in balanced if t != " nothing" and "What is" in p)
    assert nothing and all(nothing[img] == min(named[img], 9 - named[img]) for img in named | nothing)
    # every question whose answer names an object or a place is kept
    assert [i for i in every if i[2] != " nothing"] == [i for i in balanced if i[2] != " nothing"]
    assert warmup_items(train, balance=True, seed=0) == warmup_items(train, balance=True, seed=0)


def test_describe_says_what_the_image_tokens_say(tiny_grid3, shapes64):
    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS)
    image = load_examples(shapes64, "train")[0].image
    _force_words(vlm, [2, 1, 2])
    text = vlm.describe([image])[0]
    assert text.startswith("top left: large red square, top middle: large red square")
    assert text.count("large red square") == 9
    _force_words(vlm, [0, 0, 3])  # no size, no colour, the shape slot's "nothing"
    assert vlm.describe([image])[0].split(", ")[4] == "centre: nothing"


def test_scene_text_reward_reads_the_vlms_description(tiny_grid3, shapes64, tmp_path):
    from illume_rm.errors import UserError
    from illume_rm.records import Candidate
    from illume_rm.reward import RewardConfig, load_reward, train_reward
    from illume_rm.reward.models import SceneTextReward

    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(visual_words(shapes64))
    train = load_examples(shapes64, "train")[:12]
    rows = []
    for k, ex in enumerate(train):
        rows.append((ex, Candidate(id=f"{ex.id}#g", example_id=ex.id, answer=ex.answer, rationale=ex.explanations[0]), True))
        rows.append((ex, Candidate(id=f"{ex.id}#b", example_id=ex.id, answer=ex.answer, rationale="it has a long neck"), False))
    texts = SceneTextReward.texts(None, [(ex, c) for ex, c, _ in rows[:1]], vlm)
    assert texts[0][0] == f"{vlm.describe([train[0].image])[0]}. Q: {train[0].question} A: {train[0].answer}"
    with pytest.raises(UserError, match="warm-up VLM"):
        SceneTextReward.texts(None, [(ex, c) for ex, c, _ in rows[:1]], None)
    train_reward(rows, RewardConfig(kind="scene-text", epochs=1, batch_size=8), tmp_path / "st", vlm=vlm,
                 log=lambda *_: None)
    by_id = {ex.id: ex for ex in train}
    with pytest.raises(UserError, match="scene-text"):
        load_reward(tmp_path / "st").score(by_id, [rows[0][1]])
    probs = load_reward(tmp_path / "st", vlm=vlm).score(by_id, [c for _, c, _ in rows])
    assert len(probs) == len(rows) and all(0.0 <= p <= 1.0 for p in probs)


def test_vlm_likelihood_reward_scores_by_the_vlms_own_likelihood(tiny_grid3, shapes64, tmp_path):
    """The judge is the VLM's teacher-forced log-probability of the rationale, calibrated by a logistic
    regression on the judgements; saved as plain JSON weights, reloaded to the same scores."""
    from illume_rm.errors import UserError
    from illume_rm.records import Candidate
    from illume_rm.reward import RewardConfig, load_reward, train_reward
    from illume_rm.reward.models import LikelihoodReward

    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(visual_words(shapes64))
    train = load_examples(shapes64, "train")[:12]
    good = [Candidate(id=f"{e.id}#g", example_id=e.id, answer=e.answer, rationale="yes yes yes") for e in train]
    bad = [Candidate(id=f"{e.id}#b", example_id=e.id, answer=e.answer,
                     rationale="a long rationale that goes on and on about nothing at all") for e in train]
    rows = [(e, g, True) for e, g in zip(train, good)] + [(e, b, False) for e, b in zip(train, bad)]
    feats = LikelihoodReward.features([(e, c) for e, c, _ in rows], vlm)
    assert feats.shape == (24, 5) and (feats[:, 0] < 0).all()
    assert torch.allclose(feats[:, 0], feats[:, 1] * feats[:, 2])  # sum = per-token mean x tokens
    assert (feats[12:, 2] > feats[:12, 2]).all()  # the long rationales have more tokens
    from illume_rm.reward.relevance import relevance
    assert torch.allclose(feats[:, 3:], torch.tensor([relevance(e.question, c.answer, c.rationale) for e, c, _ in rows]))
    only = LikelihoodReward.features([(e, c) for e, c, _ in rows], vlm, names=LikelihoodReward.LIKELIHOOD)
    assert torch.allclose(only, feats[:, :3])  # a model saved with the likelihood alone reads those three
    train_reward(rows, RewardConfig(kind="vlm-likelihood", heldout_fraction=0.0), tmp_path / "lk", vlm=vlm,
                 log=lambda *_: None)
    by_id = {e.id: e for e in train}
    probs = load_reward(tmp_path / "lk", vlm=vlm).score(by_id, [c for _, c, _ in rows])
    assert sum(probs[:12]) / 12 > sum(probs[12:]) / 12 + 0.5  # separable by length alone: learned
    with pytest.raises(UserError, match="warm-up VLM"):
        load_reward(tmp_path / "lk").score(by_id, good[:1])


def test_threshold_folds_read_each_seed_judgement_through_the_vlm_once(tiny_grid3, shapes64, tmp_path, monkeypatch):
    """K folds and the final fit train K + 1 likelihood models on the same judgements: each is read
    through the VLM once, and the out-of-fold scores and threshold are those of reading them every time."""
    import illume_rm.reward.training as training
    from contextlib import nullcontext
    from illume_rm.records import Candidate
    from illume_rm.reward import RewardConfig, train_reward

    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(visual_words(shapes64))
    train = load_examples(shapes64, "train")[:15]
    rows = [(e, Candidate(id=f"{e.id}#{k}", example_id=e.id, answer=e.answer,
                          rationale=("yes yes" if k else "a long rationale about nothing much at all")), k == 1)
            for e in train for k in (0, 1)]
    read = []
    real = vlm.model.target_loss
    monkeypatch.setattr(vlm.model, "target_loss", lambda **b: read.append(len(b["input_ids"])) or real(**b))
    cfg = RewardConfig(kind="vlm-likelihood", threshold_folds=3, target_precision=0.5)
    once = train_reward(rows, cfg, tmp_path / "once", vlm=vlm, log=lambda *_: None)
    assert sum(read) == len(rows)  # not (3 + 1) x 30
    read.clear()
    monkeypatch.setattr(training, "remembered_features", nullcontext)
    every = train_reward(rows, cfg, tmp_path / "every", vlm=vlm, log=lambda *_: None)
    assert sum(read) == (3 + 1) * len(rows)  # each fold reads its training and its held-out rows
    assert once["threshold"] == pytest.approx(every["threshold"], abs=1e-4)
    assert once["crossval"]["roc_auc"] == pytest.approx(every["crossval"]["roc_auc"], abs=1e-6)


def test_places_around_the_cells_are_the_scenes_text_and_survive_save_and_load(tiny_grid3, shapes64, tmp_path):
    """cell_places="around": each cell's place before and after its tokens, as the scene's text writes
    it for the text upper bound; saved with the checkpoint, and a processor saved before the option
    existed reads as "before"."""
    from illume_rm.data.shapes import scene_text
    from illume_rm.evaluate.controls import as_text
    from illume_rm.vlm.processor import PROCESSOR_FILE, IllumeVLMProcessor

    ex = load_examples(shapes64, "train")[0]
    text = scene_text(ex.meta["scene"], "around")
    first = text.split(", ")[0]
    assert first.startswith("top left: ") and first.endswith(" (top left)") and text.endswith("(bottom right).")
    assert scene_text(ex.meta["scene"]) == text.replace(" (top left)", "").replace(" (bottom right)", "").replace(
        " (centre)", "").replace(" (top middle)", "").replace(" (top right)", "").replace(" (middle left)", "").replace(
        " (middle right)", "").replace(" (bottom left)", "").replace(" (bottom middle)", "")
    assert as_text(ex, "around").question == f"{text} {ex.question}"
    vlm = load_vlm(tiny_grid3)
    vlm.use_word_tokens(WORDS, "around")
    before = load_vlm(tiny_grid3)
    before.use_word_tokens(WORDS, "before")
    bare = load_vlm(tiny_grid3)
    bare.use_word_tokens(WORDS, "bare")  # the places around the words, without ": " and "( )": fewer tokens
    assert len(vlm.processor.image_ids) > len(bare.processor.image_ids) > len(before.processor.image_ids)
    vlm.save(tmp_path / "ckpt")
    again = load_vlm(tmp_path / "ckpt")
    assert again.processor.cell_places == "around" and again.processor.image_ids == vlm.processor.image_ids
    spec = json.loads((tmp_path / "ckpt" / PROCESSOR_FILE).read_text())
    del spec["cell_places"]
    (tmp_path / "ckpt" / PROCESSOR_FILE).write_text(json.dumps(spec))
    assert IllumeVLMProcessor.from_pretrained(tmp_path / "ckpt").cell_places == "before"
    with pytest.raises(ValueError, match="cell_places"):
        vlm.use_word_tokens(WORDS, "sideways")


def test_cell_places_before_keeps_old_warmup_keys_and_a_bad_value_is_refused():
    """Checkpoints warmed up before the option existed were laid out "before": that value leaves the
    warm-up's key as it was, "around" makes another; a value outside the two is refused by name."""
    from illume_rm.config import _hashable, load_recipe
    from illume_rm.errors import UserError

    key = lambda r: r.hash("seed", "data", "model", "warmup")  # noqa: E731
    before, around = (load_recipe(None, [f"model.cell_places={v}"]) for v in ("before", "around"))
    assert "cell_places" not in _hashable(before)["model"] and _hashable(around)["model"]["cell_places"] == "around"
    assert key(before) != key(around)
    with pytest.raises(UserError, match="cell_places"):
        load_recipe(None, ["model.cell_places=sideways"])


def test_place_layouts_diagnostic_writes_the_models_layouts_and_reports_each(tiny_grid3, capsys):
    """diagnostics/place_layouts.py: its "before" and "around" texts are the scene text the image tokens
    stand for, and one short run per layout ends in a table row for each."""
    from illume_rm.data.shapes import scene_text

    mod = load_diagnostic("place_layouts")
    data = DataConfig(name="shapes", shapes=ShapesConfig(train=12, val=4, test=2, image_size=64))
    scene = load_examples(data, "train")[0].meta["scene"]
    for layout in ("before", "around", "bare"):
        assert mod.render(scene, layout) == scene_text(scene, layout)
    assert mod.render(scene, "after").split(", ")[0].endswith(" in the top left")
    mod.main(["--steps", "1", "--set", f"model.base={tiny_grid3}", "--set", "model.image_size=64",
              "--set", "data.shapes={train: 12, val: 4, test: 2, image_size: 64}", "--set", "warmup.batch_size=4"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "| 0 |" in line]
    assert [line.split(" | ")[0].strip("| ") for line in table] == ["before", "after", "around", "bare"]


def test_family_as_text_diagnostic_trains_on_one_family_and_reports_each_evaluation(tiny_grid3, capsys):
    """diagnostics/family_as_text.py: trained on the named family's questions alone (the count it
    reports is that family's share of the training split), it reports a row at every --every steps and
    at the end; a recipe without scene graphs is one clear error, not a traceback."""
    from illume_rm.errors import UserError

    mod = load_diagnostic("family_as_text")
    data = DataConfig(name="shapes", shapes=ShapesConfig(train=12, val=6, test=2, image_size=64))
    n_exist = sum(e.meta["family"] == "exist" for e in load_examples(data, "train"))
    tiny = ["--set", f"model.base={tiny_grid3}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 12, val: 6, test: 2, image_size: 64}", "--set", "warmup.batch_size=4"]
    mod.main(["recipes/shapes-warmup.yaml", "--family", "exist", "--steps", "3", "--every", "2", *tiny])
    out = capsys.readouterr().out
    assert f"exist: {n_exist} training questions" in out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| exist |")]
    assert [int(r[1]) for r in rows] == [2, 3]
    assert all(0.0 <= float(r[3]) <= 1.0 for r in rows)
    with pytest.raises(UserError, match="needs shapes"):
        mod.main(["recipes/vqax-text-critic.yaml", "--family", "exist", *tiny[:2]])
    mod.main(["recipes/shapes-warmup.yaml", "--family", "exist", "--steps", "1", "--every", "1",
              "--more-questions", "3", "--pair-questions", "1", "--question-first", *tiny])
    out = capsys.readouterr().out
    assert "the question before it too" in out
    more = [e for e in more_questions(load_examples(data, "train"), 3) if e.meta["family"] == "exist"]
    pairs = mod.pair_questions(load_examples(data, "train"), 1)
    assert more and pairs
    assert (f"exist: {n_exist + len(more) + len(pairs)} training questions ({len(more)} of them from "
            f"--more-questions, {len(pairs)} two-object questions)") in out
    with pytest.raises(UserError, match="must be 0 or more"):
        mod.main(["recipes/shapes-warmup.yaml", "--pair-questions", "-1", *tiny])


def test_family_as_text_question_first_asks_before_and_after_the_scene():
    """family_as_text --question-first: the scene is written between two copies of the question, so the
    prompt still ends with the question as the plain text run's does, and the scene's text is the
    plain run's, word for word."""
    from illume_rm.data.shapes import scene_text

    mod = load_diagnostic("family_as_text")
    data = DataConfig(name="shapes", shapes=ShapesConfig(train=12, val=4, test=2, image_size=64))
    train = [e for e in load_examples(data, "train") if e.meta["family"] == "compare"][:3]
    assert len(train) == 3  # the loop below checks something
    plain, first = mod.text_examples(train, "around"), mod.text_examples(train, "around", question_first=True)
    for ex, p, f in zip(train, plain, first):
        scene = scene_text(ex.meta["scene"], "around", False)
        assert p.question == f"{scene} {ex.question}"
        assert f.question == f"{ex.question} {scene} {ex.question}"
        assert f.image is None and f.answers == ex.answers


def test_pair_questions_name_two_objects_and_answer_their_attribute():
    """family_as_text's two-object questions: each names two objects of its image as compare does, and
    the answer's two words are their attribute, as a careful reader of the scene says ("the X is red")."""
    import re

    from illume_rm.data.scene import check_rationale
    from illume_rm.data.shapes import generate

    mod = load_diagnostic("family_as_text")
    train = generate(ShapesConfig(train=80), "train", None)
    pairs = mod.pair_questions(train, 2, seed=0)
    assert len(pairs) > 100 and pairs == mod.pair_questions(train, 2, seed=0)
    attrs = set()
    for e in pairs:
        m = re.fullmatch(r"What (color|shape|size) are the (.+) and the (.+)\?", e.question)
        assert m, e.question
        attr, a, b = m.groups()
        attrs.add(attr)
        va, vb = e.answer.split(" and ")
        for ref, value in ((a, va), (b, vb)):
            claim = f"the {ref} is " + ("a " + value if attr == "shape" else value)
            assert check_rationale(e.meta["scene"], claim).ok, (e.question, e.answer, claim)
            wrong = {"color": "red" if value != "red" else "blue", "size": "large" if value == "small" else "small",
                     "shape": "circle" if value != "circle" else "square"}[attr]
            bad = f"the {ref} is " + ("a " + wrong if attr == "shape" else wrong)
            assert not check_rationale(e.meta["scene"], bad).ok, (e.question, bad)
    assert attrs == {"color", "shape", "size"}


def _oracle_perception_on(tiny_model):
    """(the diagnostic's module, its tiny command-line settings, that recipe, its val examples, its base VLM)."""
    from illume_rm.checkpoints import base_vlm
    from illume_rm.config import load_recipe

    tiny = ["--set", f"model.base={tiny_model}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 12, val: 4, test: 2, image_size: 64}", "--set", "warmup.batch_size=4"]
    recipe = load_recipe("recipes/shapes-warmup.yaml", [s for s in tiny if s != "--set"])
    return load_diagnostic("oracle_perception"), tiny, recipe, load_examples(recipe.data, "val"), base_vlm(recipe)


def test_oracle_perception_tokens_layout_gives_the_true_words_and_zero_for_no_word(tiny_grid3, capsys):
    """diagnostics/oracle_perception.py --layout tokens: every image token is exactly its cell's true
    word's embedding, or the zero vector where the cell has no such word (the two slots before an empty
    cell's "nothing"); what the image says is the scene; a short run ends in the per-family table."""
    from illume_rm.data.shapes import scene_cells

    mod, tiny, recipe, examples, vlm = _oracle_perception_on(tiny_grid3)
    mod.perfect_tokens(vlm, examples)
    ex = examples[0]
    scene = ex.meta["scene"]
    cells = {(o["row"], o["col"]): o for o in scene["objects"]}
    batch = vlm._inputs([(ex.image, "Q: x A:", None)], "right", with_targets=False)
    embeds = vlm.model.embed(batch["input_ids"], batch["image_features"])[0]
    image = embeds[batch["input_ids"][0] == vlm.model.config.image_token_id]
    assert vlm.model.config.count_tokens == 1  # the demo recipe's count token: its number is exact too
    tokens, count = image[:27].view(9, 3, -1), image[27]
    table = vlm.model.get_input_embeddings().weight
    ids = vlm.model.config.visual_word_ids
    for k in range(9):
        o = cells.get(divmod(k, 3))
        want = [o["size"], o["color"], o["shape"]] if o else [None, None, "nothing"]
        for s, word in enumerate(want):
            expected = torch.zeros_like(table[0]) if word is None else table[
                ids[s][vlm.model.config.visual_words[s].index(word)]].mean(0)
            assert torch.equal(tokens[k, s], expected), (k, s, word)
    n = len(scene["objects"])
    assert torch.allclose(count, table[vlm.model.config.count_word_ids[n]].mean(0), atol=1e-6)
    assert vlm.describe([ex.image])[0] == ", ".join(f"{p}: {w}" for p, w in zip(*scene_cells(scene))) + \
        f"; objects: {vlm.model.config.count_words[n]}"
    mod.main(["--layout", "tokens", "--steps", "1", *tiny])
    out = capsys.readouterr().out
    assert "perfect image tokens" in out
    assert any(line.startswith("count ") for line in out.splitlines())


def test_oracle_perception_block_layout_is_the_image_tokens_as_text_without_their_zero_slots(tiny_grid3, capsys):
    """diagnostics/oracle_perception.py --layout block: the prompt's token ids are the image block's with
    each placeholder replaced by its true word (none for the zero slots) and then the question's own
    prompt; the answer template is restored after the run, and a short run ends in the table."""
    from illume_rm.train.align import cell_targets
    from illume_rm.vlm import base

    mod, tiny, recipe, examples, vlm = _oracle_perception_on(tiny_grid3)
    proc, cfg = vlm.processor, vlm.model.config
    gold = cell_targets(vlm, examples)
    for ex in examples:
        want, k = [], 0
        for i in proc.image_ids:
            if i != cfg.image_token_id:
                want.append(i)
                continue
            if k == 27:  # the count token (the demo recipe's): the number of objects
                want += cfg.count_word_ids[len(ex.meta["scene"]["objects"])]
                continue
            cell, slot = divmod(k, len(cfg.visual_words))
            k += 1
            word = int(gold[ex.image][cell, slot])
            want += cfg.visual_word_ids[slot][word - 1] if word else []
        want += proc.encode(base.answer_prompt(ex))
        with mod.answer_template(mod.BLOCK_TEMPLATE):
            got = proc.encode(base.answer_prompt(mod.as_text(ex, "block", recipe.model.cell_places,
                                                             recipe.model.count_token)))
            assert base.VLM.answer.__defaults__[-1] == mod.BLOCK_TEMPLATE  # the evaluation's prompts too
        assert got == want
    mod.main(["--layout", "block", "--steps", "1", *tiny])
    assert any(line.startswith("count ") for line in capsys.readouterr().out.splitlines())
    assert base.answer_prompt.__defaults__ == (base.ANSWER_TEMPLATE,)
    assert base.VLM.answer.__defaults__[-1] == base.ANSWER_TEMPLATE


def test_count_forms_diagnostic_splits_count_questions_by_form_and_reads_the_captions_number(tiny_grid3, capsys):
    """diagnostics/count_forms.py: every count question the generator writes falls in one of the three
    forms; a caption's number is its first word; a run on a model reports each form with its answers
    and the captions' numbers, and counts right what a model answering exactly the truth says."""
    from illume_rm.config import load_recipe
    from illume_rm.errors import UserError

    mod = load_diagnostic("count_forms")
    recipe = load_recipe("recipes/shapes-warmup.yaml", [])
    questions = [e.question for e in load_examples(recipe.data, "val") if e.meta.get("family") == "count"]
    forms = {q: mod.form(q) for q in questions}
    assert forms["How many objects are there?"] == "objects"
    assert all(f == "colour" for q, f in forms.items() if q.endswith(" objects are there?") and q != "How many objects are there?")
    assert all(f == "shape" for q, f in forms.items() if not q.endswith(" objects are there?"))
    assert {"objects", "colour", "shape"} == set(forms.values())
    assert mod.caption_number("three objects: a small red circle") == "three"
    assert mod.caption_number(" One object: a large gray square") == "one" and mod.caption_number("") == ""

    class Truthful:  # answers every question right and captions each image with its true count
        def __init__(self, examples):
            self.truth = {e.image: e for e in examples}

        def answer(self, examples):
            return [e.answer for e in examples]

        def generate(self, items, max_new_tokens=8):
            return [[f"{self.truth[img].answer} objects: ..."] for img, _, _ in items]

    examples = [e for e in load_examples(DataConfig(name="shapes", shapes=ShapesConfig(train=4, val=60, test=2,
                                                                                     image_size=64)), "val")
                if e.meta.get("family") == "count"]
    whole = [e for e in examples if mod.form(e.question) == "objects"]
    res = mod.measure(Truthful(whole), examples)
    assert res["objects"]["right"] == res["objects"]["n"] == len(whole) > 0
    assert res["objects"]["right_by_truth"] == res["objects"]["truth"]
    assert res["objects"]["caption_right"] == res["objects"]["caption_agrees"] == len(whole)
    assert sum(res[f]["n"] for f in mod.FORMS) == len(examples)
    tiny = ["--set", f"model.base={tiny_grid3}", "--set", "model.image_size=64",
            "--set", "data.shapes={train: 12, val: 20, test: 2, image_size: 64}"]
    mod.main([str(tiny_grid3), *tiny])
    out = capsys.readouterr().out
    assert "answers given" in out and any(line.startswith("objects ") for line in out.splitlines())
    assert "'How many objects' right by true answer: " in out
    with pytest.raises(UserError, match="needs shapes"):
        mod.main([str(tiny_grid3), "--recipe", "recipes/vqax-text-critic.yaml"])
