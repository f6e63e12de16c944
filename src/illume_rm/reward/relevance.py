"""Does a rationale speak to its question and answer? Two lexical features for the reward model.

A rationale can be true of the image and still no reason for the answer ("What size is the blue
circle? large, seeing that it's in the top left"); people and the oracle reject it. The VLM's
likelihood of a rationale says how much the model believes it, not whether it bears on the
question, so the vlm-likelihood reward model also reads:

- the share of the question's content words that the rationale uses ("blue", "circle" above: none);
- the share of the answer's content words that it uses ("large": none).

Content words are what is left of a text's lower-case words after English function words and the
words that frame a VQA question ("what colour is the ...", "is there a ...", "yes", "no"), with a
plural "s" taken off ("circles" reads as "circle"). Nothing here knows a dataset's vocabulary.
"""
from __future__ import annotations

import re

FRAME_WORDS = frozenset("""
a an the this that these those it its there here
is are was were be been being am do does did has have had can could would should will
what which who whom whose where when why how many much
of in on at to from by with for about as than and or not
same other any some all each
object objects thing things kind type color colour size shape
yes no s
""".split())
# in a question "one" is a pronoun ("the one on the left"); in an answer, a count
QUESTION_FRAME_WORDS = FRAME_WORDS | {"one"}

_WORD = re.compile(r"[a-z0-9]+")


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str, frame: frozenset[str] = FRAME_WORDS) -> set[str]:
    """The text's lower-case words less function and question-frame words (``frame``), plural "s" off."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in frame}


def overlap(source: str, rationale: str, frame: frozenset[str] = FRAME_WORDS) -> float:
    """The share of ``source``'s content words that ``rationale`` uses; 0 when it has none
    (a yes/no answer)."""
    wanted = content_words(source, frame)
    if not wanted:
        return 0.0
    return len(wanted & content_words(rationale, frozenset())) / len(wanted)  # every word of the rationale


def relevance(question: str, answer: str, rationale: str) -> tuple[float, float]:
    """(question words in the rationale, answer words in the rationale), each in [0, 1]."""
    return overlap(question, rationale, QUESTION_FRAME_WORDS), overlap(answer, rationale)
