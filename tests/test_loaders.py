import pytest
from PIL import Image

from illume_rm.data import DataConfig, load_examples
from illume_rm.data.scene import check_rationale
from illume_rm.errors import UserError
from illume_rm.records import Example, write_jsonl

from conftest import FIXTURES


def test_vqax_text_only_with_vqa_answers_first():
    examples = load_examples(DataConfig(name="vqa-x", path=str(FIXTURES / "nlx_vqa_small.json")), "train") + \
        load_examples(DataConfig(name="vqa-x", path=str(FIXTURES / "nlx_vqa_small.json")), "val") + \
        load_examples(DataConfig(name="vqa-x", path=str(FIXTURES / "nlx_vqa_small.json")), "test")
    by_id = {e.id: e for e in examples}
    assert set(by_id) == {"vqa-x-1001", "vqa-x-1002"}  # every entry lands in exactly one split
    giraffe = by_id["vqa-x-1001"]
    assert giraffe.image is None and giraffe.answer == "giraffe" and len(giraffe.answers) == 10
    assert giraffe.explanations[0] == "it has a long neck"
    assert by_id["vqa-x-1002"].answer == "no"


def test_vqax_images_attached_when_given(tmp_path):
    for name in ("img_1001.png", "img_1002.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    cfg = DataConfig(name="vqa-x", path=str(FIXTURES / "nlx_vqa_small.json"), images=str(tmp_path))
    examples = [e for s in ("train", "val", "test") for e in load_examples(cfg, s)]
    assert sorted(e.image for e in examples) == sorted(str(tmp_path / n) for n in ("img_1001.png", "img_1002.png"))
    (tmp_path / "img_1002.png").unlink()
    with pytest.raises(UserError, match="img_1002.png does not exist"):
        [load_examples(cfg, s) for s in ("train", "val", "test")]


def test_actx_and_esnlive_formats():
    act = [e for s in ("train", "val", "test")
           for e in load_examples(DataConfig(name="act-x", path=str(FIXTURES / "actx_small.json")), s)]
    assert act[0].question == "What is this person doing?" and act[0].answer == "climbing"
    nli = [e for s in ("train", "val", "test")
           for e in load_examples(DataConfig(name="esnlive", path=str(FIXTURES / "esnlive_small.json")), s)]
    assert nli[0].question == "A dog runs on the beach." and nli[0].answer == "entailment"


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_examples(DataConfig(name="vqa-x", path=str(tmp_path / "nope.json")), "val")
    with pytest.raises(UserError, match="needs a path"):
        load_examples(DataConfig(name="jsonl"), "val")
    with pytest.raises(UserError, match="unknown dataset"):
        load_examples(DataConfig(name="coco"), "val")


def test_jsonl_loader_and_missing_image(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    recs = [Example(id="a", question="q?", answers=["yes"], image=str(img)),
            Example(id="b", question="q2?", answers=["no"])]
    write_jsonl(tmp_path / "train.jsonl", recs)
    cfg = DataConfig(name="jsonl", path=str(tmp_path / "{split}.jsonl"))
    assert load_examples(cfg, "train") == recs
    img.unlink()
    with pytest.raises(UserError, match=r"example a: image .*a.png does not exist"):
        load_examples(cfg, "train")


def test_easy_vqa_references_are_true_of_the_image():
    examples = load_examples(DataConfig(name="easy-vqa", limit=300), "train")
    assert len(examples) == 300
    answers = {e.answer for e in examples}
    assert {"yes", "no"} <= answers
    for ex in examples:
        assert ex.image and ex.meta["scene"]["objects"][0]["shape"] in ("circle", "rectangle", "triangle")
        for ref in ex.explanations:
            assert check_rationale(ex.meta["scene"], ref).ok, (ex.question, ref)
    val = load_examples(DataConfig(name="easy-vqa", limit=50), "val")
    test = load_examples(DataConfig(name="easy-vqa", limit=50), "test")
    assert not {e.meta["image_id"] for e in val} & {e.meta["image_id"] for e in test}
