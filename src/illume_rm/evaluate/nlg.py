"""BLEU-1..4, METEOR, ROUGE-L and CIDEr as the field reports them.

With Java present, the COCO caption evaluation (`pycocoevalcap`: PTB
tokenizer, BLEU, METEOR, ROUGE-L, CIDEr-D) computes the published numbers.
Without it, pure-Python BLEU, ROUGE-L and CIDEr-D written to the same
formulas are used, METEOR is left out, and a warning says so: never silently.
``rouge_l`` is the one ROUGE-L of the project: the critic uses it too.
"""
from __future__ import annotations

import atexit
import math
import re
import shutil
import warnings
from collections import Counter
from typing import Mapping, Sequence

# What pycocoevalcap's PTBTokenizer (Stanford PTBTokenizer, -lowerCase) leaves after it drops its
# punctuation tokens, written as rules and checked against it (tests/test_metrics.py):
# words keep inner hyphens, slashes and "@" ("long-necked", "and/or"); numbers keep "3.5" and "1,000";
# clitics split off ("is n't", "ca n't", "it 's", "they 're"); brackets become -lrb- -rrb- -lsb- -rsb-
# -lcb- -rcb-; other symbols ("%", "$", "&", "+", "=", "#", "*") are tokens; . , ? ! : ; quotes and
# dashes are dropped.
_PTB_TOKEN = re.compile(r"(?:[a-z]\.){2,}|\d+(?:[.,]\d+)+|[^\W_]+(?:[-/@'’][^\W_]+)*'?|@[^\W_]+|\S", re.UNICODE)
_DROPPED = set(".,?!:;'\"`-’‘“”…")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CLITIC = re.compile(r"^(.+?)('s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"], "gotta": ["got", "ta"]}


def _ptb_word(word: str) -> list[str]:
    word = word.replace("’", "'")
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    if word.endswith("'"):
        return [word[:-1]] if word[:-1] else []
    if word.endswith("n't") and len(word) > 3:
        return [word[:-3], "n't"]
    m = _CLITIC.match(word)
    if m:
        return [m.group(1), m.group(2)]
    return [word]


def tokenize(text: str) -> list[str]:
    """Lower-case tokens as pycocoevalcap's PTB tokenizer gives them, less its punctuation."""
    out: list[str] = []
    for tok in _PTB_TOKEN.findall(text.lower()):
        if tok in _BRACKETS:
            out.append(_BRACKETS[tok])
        elif len(tok) == 1 and tok in _DROPPED:
            continue
        else:
            out.extend(_ptb_word(tok))
    return out


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str | Sequence[str], references: Sequence[str | Sequence[str]], beta: float = 1.2) -> float:
    """Sentence ROUGE-L as pycocoevalcap computes it: best precision and best recall over the
    references, combined with beta = 1.2."""
    cand = tokenize(candidate) if isinstance(candidate, str) else list(candidate)
    refs = [tokenize(r) if isinstance(r, str) else list(r) for r in references]
    if not cand or not refs:
        return 0.0
    precs, recs = [], []
    for ref in refs:
        lcs = _lcs(cand, ref)
        precs.append(lcs / len(cand))
        recs.append(lcs / len(ref) if ref else 0.0)
    p, r = max(precs), max(recs)
    if p == 0 or r == 0:
        return 0.0
    return ((1 + beta ** 2) * p * r) / (r + beta ** 2 * p)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(res: Mapping[str, list[str]], gts: Mapping[str, list[list[str]]], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1..max_n (closest reference length for the brevity penalty, as COCO)."""
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for key, hyp in res.items():
        refs = gts[key]
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            h = _ngrams(hyp, n)
            best: Counter = Counter()
            for r in refs:
                best |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, best[g]) for g, c in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    # pycocoevalcap's smoothing: an order with no n-grams at all has precision 1e-6, not 1
    tiny, small = 1e-15, 1e-9
    ratio = (hyp_len + tiny) / (ref_len + small)
    bp = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores, prod = [], 1.0
    for n in range(max_n):
        prod *= (matches[n] + tiny) / (totals[n] + small)
        scores.append(bp * prod ** (1 / (n + 1)))
    return scores


def cider_d(res: Mapping[str, list[str]], gts: Mapping[str, list[list[str]]], sigma: float = 6.0) -> float:
    """CIDEr-D as in pycocoevalcap (document frequencies from the references of this set)."""
    keys = list(res)
    df: Counter = Counter()
    for k in keys:
        for n in range(1, 5):
            df.update(set(g for r in gts[k] for g in _ngrams(r, n)))
    log_n = math.log(float(len(keys)))

    def vec(tokens):
        out = []
        for n in range(1, 5):
            counts = _ngrams(tokens, n)
            v = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in counts.items()}
            norm = math.sqrt(sum(x * x for x in v.values()))
            out.append((v, norm))
        return out, len(tokens)

    total = 0.0
    for k in keys:
        (hv, hl) = vec(res[k])
        score = [0.0] * 4
        for ref in gts[k]:
            rv, rl = vec(ref)
            for n in range(4):
                (a, na), (b, nb) = hv[n], rv[n]
                dot = sum(min(x, b.get(g, 0.0)) * b.get(g, 0.0) for g, x in a.items())
                if na and nb:
                    score[n] += dot / (na * nb) * math.exp(-((hl - rl) ** 2) / (2 * sigma ** 2))
        total += sum(s / len(gts[k]) for s in score) / 4 * 10.0
    return total / max(len(keys), 1)


def java_available() -> bool:
    return shutil.which("java") is not None


def nlg_scores(hyps: Mapping[str, str], refs: Mapping[str, Sequence[str]], use_coco: bool | None = None) -> dict[str, float]:
    """{'BLEU-1'..'BLEU-4', 'METEOR', 'ROUGE-L', 'CIDEr'} x 100, as papers print them."""
    keys = [k for k in hyps if refs.get(k)]
    if not keys:
        return {}
    if use_coco is None:
        use_coco = java_available()
        if not use_coco:
            warnings.warn("Java was not found: using the pure-Python BLEU/ROUGE-L/CIDEr; METEOR is left out")
    if use_coco:
        try:
            return _coco(hyps, refs, keys)
        except ImportError:
            warnings.warn("pycocoevalcap is not installed: using the pure-Python BLEU/ROUGE-L/CIDEr; METEOR is left out")
    res = {k: tokenize(hyps[k]) for k in keys}
    gts = {k: [tokenize(r) for r in refs[k]] for k in keys}
    b = bleu(res, gts)
    out = {f"BLEU-{n + 1}": 100 * b[n] for n in range(4)}
    out["ROUGE-L"] = 100 * sum(rouge_l(res[k], gts[k]) for k in keys) / len(keys)
    out["CIDEr"] = 100 * cider_d(res, gts)
    out["scorer"] = "python"
    return out


def _coco(hyps, refs, keys) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in refs[k]] for i, k in enumerate(keys)})
    res = tok.tokenize({i: [{"caption": hyps[k] or "."}] for i, k in enumerate(keys)})
    out: dict[str, float] = {}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"BLEU-{n + 1}": 100 * float(b[n]) for n in range(4)})
    out["METEOR"] = 100 * float(_meteor(Meteor).compute_score(gts, res)[0])
    out["ROUGE-L"] = 100 * float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = 100 * float(Cider().compute_score(gts, res)[0])
    out["scorer"] = "pycocoevalcap"
    return out


_METEOR = None


def _meteor(make):
    """One METEOR process for the life of this one: starting it (a JVM that loads METEOR's
    paraphrase table) takes about 7.5 s a call, scoring 150 rationales about 0.25 s, and the demo
    scores six times. Its scores do not depend on what it scored before (tests/test_metrics.py).
    A process that has died is replaced; the last one is closed when Python exits."""
    global _METEOR
    proc = getattr(_METEOR, "meteor_p", None)
    if _METEOR is None or proc is None or proc.poll() is not None:
        if _METEOR is None:
            atexit.register(lambda: _METEOR is not None and _close_meteor(_METEOR))
        _METEOR = make()
    return _METEOR


def _close_meteor(meteor) -> None:
    proc = getattr(meteor, "meteor_p", None)
    if proc is not None:
        try:
            with meteor.lock:
                proc.stdin.close()
                proc.kill()
                proc.wait()
        except Exception:  # noqa: BLE001 - best effort cleanup of the JVM
            pass
