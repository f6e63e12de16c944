"""User scorers: ``package.module:name`` or an entry point in the group ``illume_rm.scorers``."""
from __future__ import annotations

import importlib
import os
import re
import sys
from importlib.metadata import entry_points

from ..errors import UserError

GROUP = "illume_rm.scorers"


class _FunctionScorer:
    """A function as a scorer; ``fn.people = True`` says its verdicts stand for a person's (counted in the
    human budget), as the critic's and the oracle's do."""

    kind = "plugin"

    def __init__(self, fn, name: str):
        self.fn, self.name = fn, name
        self.people = bool(getattr(fn, "people", False))

    def score(self, examples, candidates):
        return self.fn(examples, candidates)


_SPEC = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def _wrap(obj, label: str):
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:  # a plugin's bug is named, with where it is
            raise UserError(f"scorer {label}: {obj.__name__}() failed: {type(exc).__name__}: {exc}") from None
    if hasattr(obj, "score") and callable(obj.score):
        if not getattr(obj, "name", None):
            try:
                obj.name = label
            except AttributeError:
                pass
        return obj
    if callable(obj):
        return _FunctionScorer(obj, label)
    raise UserError(f"scorer {label} is neither a function nor an object with score(examples, candidates)")


def load_plugin(spec: str):
    label = f"plugin:{spec}"
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if spec in eps:
        try:
            obj = eps[spec].load()
        except Exception as exc:
            raise UserError(f"scorer {spec} (entry point {eps[spec].value}) failed to load: "
                            f"{type(exc).__name__}: {exc}") from None
        return _wrap(obj, label)
    if ":" not in spec:
        known = ", ".join(["critic", "oracle", *sorted(eps)])
        raise UserError(f"unknown scorer '{spec}' (known: {known}; or package.module:name)")
    if not _SPEC.fullmatch(spec):
        raise UserError(f"malformed scorer name '{spec}': expected package.module:name (Python names, "
                        "dots between modules, one colon)")
    module, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:  # a console script does not see the current folder; a user's module is there
        sys.path.append(os.getcwd())
    try:
        mod = importlib.import_module(module)
    except SyntaxError as exc:
        raise UserError(f"scorer {spec}: {exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ImportError as exc:
        raise UserError(f"scorer {spec}: cannot import {module}: {exc}") from None
    except Exception as exc:  # the module raised while it was imported
        raise UserError(f"scorer {spec}: importing {module} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(mod, attr):
        raise UserError(f"scorer {spec}: {module} has no '{attr}'")
    return _wrap(getattr(mod, attr), label)
