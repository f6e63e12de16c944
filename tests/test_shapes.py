from collections import Counter
import pytest

from PIL import Image

from illume_rm.data import load_examples
from illume_rm.data.scene import check_rationale
from illume_rm.data.shapes import FAMILIES, ShapesConfig, generate


def test_deterministic_for_a_seed():
    cfg = ShapesConfig(train=30)
    a = generate(cfg, "train", None)
    assert a == generate(cfg, "train", None)
    other = generate(ShapesConfig(train=30, seed=1), "train", None)
    assert [e.question for e in a] != [e.question for e in other]
    val = generate(cfg, "val", None)
    assert {e.meta["scene"]["objects"][0]["color"] for e in val} and [e.question for e in val] != [e.question for e in a[:len(val)]]


def test_every_reference_is_true_of_its_scene_and_all_families_appear():
    examples = generate(ShapesConfig(train=400), "train", None)
    families = Counter(e.meta["family"] for e in examples)
    assert set(families) == set(FAMILIES)
    for ex in examples:
        assert len(ex.explanations) == 3 and len(set(ex.explanations)) == 3, ex
        for ref in ex.explanations:
            verdict = check_rationale(ex.meta["scene"], ref)
            assert verdict.ok, (ex.question, ref, verdict.problems)


def test_captions_are_true_and_parse_as_claims():
    for ex in generate(ShapesConfig(train=100), "train", None)[::3]:
        verdict = check_rationale(ex.meta["scene"], ex.meta["caption"])
        assert verdict.ok and verdict.claims == len(ex.meta["scene"]["objects"]) + 2, ex.meta["caption"]


def test_false_claims_are_caught():
    scene = {"grid": 3, "objects": [
        {"shape": "square", "color": "green", "size": "large", "row": 1, "col": 2},
        {"shape": "circle", "color": "red", "size": "small", "row": 0, "col": 0},
    ]}
    assert check_rationale(scene, "the square on the right is green").ok
    assert check_rationale(scene, "the red circle is to the left of the green square").ok
    assert not check_rationale(scene, "the square on the right is gray").ok  # colour wrong
    assert not check_rationale(scene, "the red circle is below the green square").ok  # relation wrong
    assert not check_rationale(scene, "there are three objects").ok  # count wrong
    assert not check_rationale(scene, "there is a blue triangle").ok  # object absent
    assert not check_rationale(scene, "it has a long neck").ok  # unparsed is not acceptable
    assert not check_rationale(scene, "").ok  # no claim
    assert not check_rationale(scene, "three objects: a red circle, a green square and a blue circle").ok


def test_images_are_drawn_at_the_configured_size(shapes_small):
    examples = load_examples(shapes_small, "val")
    assert examples and all(e.image for e in examples)
    with Image.open(examples[0].image) as img:
        assert img.size == (64, 64)
    again = load_examples(shapes_small, "val")
    assert [e.id for e in again] == [e.id for e in examples]


def test_grounding_questions_are_true_of_their_scene():
    """Warm-up's grounding questions: one per grid cell (what is there) and one per object (where it is)."""
    for ex in generate(ShapesConfig(train=60), "train", None)[::3]:
        scene, pairs = ex.meta["scene"], ex.meta["grounding"]
        cells = [(q, a) for q, a in pairs if q.startswith("What is")]
        wheres = [(q, a) for q, a in pairs if q.startswith("Where is")]
        assert len(cells) == 9 and len(wheres) == len(scene["objects"])
        assert sum(a == "nothing" for _, a in cells) == 9 - len(scene["objects"])
        for q, a in cells:
            place = q[len("What is "):-1]
            if a != "nothing":
                assert check_rationale(scene, f"there is {a} {place}").ok, (q, a)
        for q, a in wheres:
            name = q[len("Where is "):-1]
            assert check_rationale(scene, f"{name} is {a}").ok, (q, a)
            others = [p for p in ("in the top left", "in the bottom right", "in the centre") if p != a]
            assert not check_rationale(scene, f"{name} is {others[0]}").ok, (q, others[0])


def test_compare_questions_do_not_name_the_compared_attribute():
    # "Is the red circle the same color as the blue square?" answers itself from the text
    exs = generate(ShapesConfig(train=400), "train", None)
    compare = [e for e in exs if e.meta["family"] == "compare"]
    assert len(compare) > 30
    seen = Counter()
    for e in compare:
        attr = next(a for a in ("color", "shape", "size") if a in e.question)
        seen[attr] += 1
        a, b = (e.meta["scene"]["objects"][i] for i in e.meta["focus"])
        words = set(e.question.rstrip("?").split())
        assert not words & {a[attr], b[attr]}, e.question
        assert check_rationale(e.meta["scene"], e.explanations[0]).ok  # the referring expressions resolve
    assert set(seen) == {"color", "shape", "size"}


# A careful person's verdicts on rationales that name a grid cell as their subject, or say "it" of the
# question's one object (the phrasing the word-token VLM uses), written from the scene below by hand.
CELL_SCENE = {"grid": 3, "objects": [
    {"shape": "circle", "color": "red", "size": "small", "row": 0, "col": 0},
    {"shape": "triangle", "color": "blue", "size": "large", "row": 1, "col": 1},
    {"shape": "square", "color": "yellow", "size": "small", "row": 2, "col": 2},
]}
CELL_CASES = [
    ("the top left is a small red circle", [0], True),
    ("the top left has a small red circle", [0], True),
    ("the top left contains a red circle", [0], True),
    ("the top-left is a red circle", [0], True),        # the hyphenated spelling of the place
    ("the top left is a large red circle", [0], False),  # wrong size
    ("the top left is a small blue circle", [0], False),  # wrong colour
    ("the top right is a small red circle", [0], False),  # that cell is empty
    ("the top right is nothing", [0], True),
    ("the top right is empty", [0], True),
    ("the centre is nothing", [1], False),
    ("the center has a large blue triangle", [1], True),
    ("the bottom right is small yellow square", [2], True),  # article dropped, still a true claim
    ("the bottom right is a yellow square and the centre is a blue triangle", [2], True),
    ("the bottom right is a yellow square and the centre is a red triangle", [2], False),
    ("the top is a red circle", [0], False),             # not one cell: unparsed
    ("it's a small red circle", [0], True),
    ("it is red", [0], True),
    ("it is blue", [0], False),
    ("it is a large blue triangle", [1], True),
    ("it is red", [0, 1], False),                         # two objects in question: "it" names neither
    ("there's a blue triangle", [1], True),
    ("there's a green triangle", [1], False),
]


@pytest.mark.parametrize("text,focus,ok", CELL_CASES)
def test_cell_subjects_and_it_as_a_careful_person_reads_them(text, focus, ok):
    assert check_rationale(CELL_SCENE, text, focus).ok is ok


def test_more_questions_are_new_true_and_about_the_same_images():
    from illume_rm.data.shapes import more_questions

    train = generate(ShapesConfig(train=60), "train", None)
    more = more_questions(train, 6, seed=0)
    assert more == more_questions(train, 6, seed=0)
    assert [e.question for e in more] != [e.question for e in more_questions(train, 6, seed=1)]
    by_image = {e.meta["image_id"]: e for e in train}
    per_image = Counter(e.meta["image_id"] for e in more)
    assert set(per_image) == set(by_image) and max(per_image.values()) == 6
    assert sum(per_image.values()) > 0.9 * 6 * len(by_image)  # one-object scenes have fewer questions to ask
    asked = Counter((e.meta["image_id"], e.question) for e in train + more)
    assert max(asked.values()) == 1  # none asked twice of an image, the data's own included
    assert set(e.meta["family"] for e in more) == set(FAMILIES)
    for e in more:
        own = by_image[e.meta["image_id"]]
        assert e.image == own.image and e.meta["scene"] == own.meta["scene"] and e.id != own.id
        for ref in e.explanations:  # the answer's references are true of the image's scene
            assert check_rationale(e.meta["scene"], ref).ok, (e.question, ref)
