"""A user's scorer, in a module of its own: prefers rationales of about ten words."""


def ten_words(examples, candidates):
    return [1.0 / (1 + abs(len(c.rationale.split()) - 10)) for c in candidates]


def broken(examples, candidates):
    raise RuntimeError("boom")


def short(examples, candidates):
    return [1.0]
