"""A user's scorer, in a module of its own: prefers rationales of about ten words."""


def ten_words(examples, candidates):
    return [1.0 / (1 + abs(len(c.rationale.split()) - 10)) for c in candidates]


def broken(examples, candidates):
    raise RuntimeError("boom")


def short(examples, candidates):
    return [1.0]


def alternate(examples, candidates):
    """Accepts every other candidate: a stand-in person with both verdicts, for tests."""
    return [float(i % 2 == 0) for i in range(len(candidates))]


alternate.people = True  # its verdicts stand for a person's: they count in the human budget


def not_a_number(examples, candidates):
    return [float("nan")] * len(candidates)
