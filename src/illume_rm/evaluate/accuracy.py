"""Answer accuracy as the field computes it.

VQA accuracy (ten human answers) is the official VQA evaluation (``vqaEval.py`` of the VQA
challenge): the prediction is normalised (punctuation, number words, articles, contractions), the
human answers only have their punctuation normalised and only when they disagree, and the score
is min(#matching others / 3, 1) averaged over the ten ways of leaving one human out, so one, two
and three matching people give 0.3, 0.6 and 0.9. With fewer than ten answers (shapes, e-SNLI-VE,
ACT-X) it is exact match of the normalised prediction and the normalised first answer.

Which questions count as *correctly answered* (the filtered protocol's subset) is a named protocol:
``nlx-gpt`` (NLX-GPT's: the prediction equals the most common human answer after its answer
processing; the default) or ``e-vil`` (e-ViL's VQA-X evaluator: the answer is in the set any
human gave, i.e. VQA accuracy above 0).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from itertools import combinations
from typing import Sequence

from ..errors import UserError
from ..records import Example

# -- the official normalisation ---------------------------------------------------------------
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
# the official pattern, kept as written there: "(?!<=" is a look-ahead, so every full stop not
# followed by a digit goes ("3.5" keeps its point, "dog." loses it)
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
# contractions written without their apostrophes ("isnt", "couldnt've") are given them back
_CONTRACTED = ("ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't "
               "haven't he'd he'd've he's how'd how'll how's I'd've I'm I've isn't it'd it'd've it'll let's ma'am "
               "mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't "
               "she'd've she's should've shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd "
               "someone'd've someone'll someone's something'd something'd've something'll that's there'd "
               "there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've "
               "weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll "
               "who's who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've "
               "you'd you'd've you'll you're you've").split()


def _contractions() -> dict[str, str]:
    table: dict[str, str] = {}
    for full in _CONTRACTED:
        marks = [i for i, ch in enumerate(full) if ch == "'"]
        for k in range(1, len(marks) + 1):
            for dropped in combinations(marks, k):
                key = "".join(ch for i, ch in enumerate(full) if i not in dropped)
                table.setdefault(key, full)
    return table


_CONTRACTIONS = _contractions()


def process_punctuation(text: str) -> str:
    """The official punctuation step: a mark next to a space (or any mark in a text with a
    thousands comma) is removed, any other is replaced by a space; full stops not before a digit go."""
    out = text
    glued = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCT:
        if glued or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def process_digit_article(text: str) -> str:
    """The official word step: lower case, number words to digits, articles dropped, contractions
    given their apostrophes."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize(text: str) -> str:
    """A prediction as the official VQA evaluation compares it."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction against its human answers."""
    res = normalize(pred)
    gts = [process_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    matches = sum(g == res for g in gts)
    # leaving out a matching answer leaves matches - 1 others that match; any other leaves all of them
    total = sum(min(1.0, (matches - (g == res)) / 3.0) for g in gts)
    return total / len(gts)


def answer_score(pred: str, answers: Sequence[str]) -> float:
    """VQA accuracy with ten (or more) human answers, else exact match with the first after normalising."""
    if len(answers) >= 10:
        return vqa_accuracy(pred, answers)
    return float(normalize(pred) == normalize(answers[0]))


# -- which answers count as correct (the filtered protocol) -----------------------------------------
PROTOCOLS = ("nlx-gpt", "e-vil")


def nlx_answer(text: str) -> str:
    """NLX-GPT's answer processing (punctuation, digits and articles, then commas dropped)."""
    return process_digit_article(process_punctuation(text)).replace(",", "")


def most_common_answer(answers: Sequence[str]) -> str:
    """NLX-GPT's main answer: the most frequent after its processing, the first seen on a tie."""
    counts = Counter(nlx_answer(a) for a in answers)
    return max(counts, key=counts.get)


def is_correct(pred: str, answers: Sequence[str], protocol: str = "nlx-gpt") -> bool:
    """Whether a prediction counts as correctly answered under ``protocol``."""
    if protocol == "nlx-gpt":
        return nlx_answer(pred) == most_common_answer(answers)
    if protocol == "e-vil":
        return answer_score(pred, answers) > 0
    raise UserError(f"unknown answer protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")


def family(ex: Example) -> str:
    return ex.meta.get("family", "all")


def accuracy_by_family(examples: Sequence[Example], preds: Sequence[str]) -> dict[str, float]:
    """{'all': .., family: ..} answer accuracy."""
    scores: dict[str, list[float]] = defaultdict(list)
    for ex, p in zip(examples, preds):
        s = answer_score(p, ex.answers)
        scores["all"].append(s)
        scores[family(ex)].append(s)
    return {k: sum(v) / len(v) for k, v in scores.items()}


def chance_by_family(train: Sequence[Example], val: Sequence[Example]) -> dict[str, float]:
    """What always giving each family's most common *training* answer scores on val."""
    common: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for ex in train:
        common[family(ex)][normalize(ex.answer)] += 1
        overall[normalize(ex.answer)] += 1
    preds = [(common.get(family(ex)) or overall).most_common(1)[0][0] for ex in val]
    return accuracy_by_family(val, preds)
