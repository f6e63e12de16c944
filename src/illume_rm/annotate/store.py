"""The annotation store: SQLite (WAL) in the run folder.

Tasks come in batches (``iter-000``, ``iter-000-seed``, ...): one task per question, showing the
question's distinct rationales. Each question is judged by ``k`` people; every submission
(one person, one question: a verdict per rationale, optionally a better rationale written
by the person) is one transaction, so killing the server loses nothing already submitted.
A question that ``k`` people skipped is closed without verdicts.

Verdicts go back to the pipeline as ordinary :class:`Judgement` records, one per candidate
(the majority of its people; a tie rejects), with ``selector`` ``human``.
"""
from __future__ import annotations

import json
import sqlite3
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import UserError
from ..records import Candidate, Example, Judgement, from_dict, to_dict
from .agreement import agreement_report

STORE_NAME = "annotations.sqlite"
LEASE_SECONDS = 600          # a question handed to one person is not handed to another for this long
MAX_NAME, MAX_WRITTEN = 64, 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (name TEXT PRIMARY KEY, k INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS examples (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY, batch TEXT NOT NULL REFERENCES batches(name), example_id TEXT NOT NULL,
    UNIQUE (batch, example_id));
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT NOT NULL, task INTEGER NOT NULL REFERENCES tasks(id), position INTEGER NOT NULL,
    rationale TEXT NOT NULL, record TEXT NOT NULL, suggestion REAL, PRIMARY KEY (task, id));
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY, task INTEGER NOT NULL REFERENCES tasks(id), annotator TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('judged', 'skipped')), written TEXT, suggestions_shown INTEGER,
    time REAL NOT NULL, UNIQUE (task, annotator));
CREATE TABLE IF NOT EXISTS votes (
    submission INTEGER NOT NULL REFERENCES submissions(id), task INTEGER NOT NULL, candidate_id TEXT NOT NULL,
    accepted INTEGER NOT NULL, PRIMARY KEY (submission, candidate_id));
CREATE TABLE IF NOT EXISTS leases (task INTEGER NOT NULL, annotator TEXT NOT NULL, until REAL NOT NULL,
    PRIMARY KEY (task, annotator));
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Refused(Exception):
    """A request the store refuses (the server answers it with ``status``); nothing was stored."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class BatchProgress:
    name: str
    k: int
    questions: int
    rationales: int
    done: int                # submissions that count (at most k per question)
    pending: int             # submissions still needed
    closed: int              # questions closed by k skips

    @property
    def needed(self) -> int:
        return self.done + self.pending


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._tx() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                conn.execute("SELECT COUNT(*) FROM batches").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a readable annotation store ({exc}); "
                            "move it aside to start afresh") from None

    @classmethod
    def of_run(cls, run_dir: str | Path, must_exist: bool = False) -> "Store":
        path = Path(run_dir) / STORE_NAME
        if must_exist and not path.exists():
            raise UserError(f"{run_dir} has no annotation tasks ({STORE_NAME} is missing): "
                            "run `illume-rm iterate --selector human` (or `annotate --candidates`) first")
        return cls(path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit BEGIN below
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _tx(self, write: bool = False):
        """A connection; with ``write``, one transaction that commits at the end or rolls back whole."""
        conn = self._connect()
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    # -- creating tasks -----------------------------------------------------------------
    def add_batch(self, name: str, examples: dict[str, Example], cands: Sequence[Candidate], k: int = 1) -> int:
        """One task per question with its distinct rationales; idempotent (a batch is added once).
        Returns the number of tasks in the batch."""
        if k < 1:
            raise UserError(f"judges per candidate must be at least 1 (got {k})")
        with self._tx(write=True) as conn:
            row = conn.execute("SELECT k FROM batches WHERE name = ?", (name,)).fetchone()
            if row is not None:  # the same batch again is a no-op; another file under the same name is not
                stored = {r[0] for r in conn.execute(
                    "SELECT c.id FROM candidates c JOIN tasks t ON t.id = c.task WHERE t.batch = ?", (name,))}
                missing = stored - {c.id for c in cands}
                if missing:
                    raise UserError(f"a batch named '{name}' already holds other candidates (e.g. {sorted(missing)[0]}): "
                                    "give the file another name")
            if row is None:
                conn.execute("INSERT INTO batches VALUES (?, ?, ?)", (name, k, time.time()))
                by_example: dict[str, list[Candidate]] = {}
                for c in cands:
                    if c.example_id not in examples:
                        raise UserError(f"candidate {c.id} is about example {c.example_id}, which the data lacks")
                    seen = {x.rationale.strip().lower() for x in by_example.get(c.example_id, [])}
                    if c.rationale.strip() and c.rationale.strip().lower() not in seen:
                        by_example.setdefault(c.example_id, []).append(c)
                for ex_id, group in by_example.items():
                    conn.execute("INSERT OR IGNORE INTO examples VALUES (?, ?)",
                                 (ex_id, json.dumps(to_dict(examples[ex_id]))))
                    task = conn.execute("INSERT INTO tasks (batch, example_id) VALUES (?, ?)",
                                        (name, ex_id)).lastrowid
                    conn.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, NULL)",
                                     [(c.id, task, n, c.rationale, json.dumps(to_dict(c))) for n, c in enumerate(group)])
            return conn.execute("SELECT COUNT(*) FROM tasks WHERE batch = ?", (name,)).fetchone()[0]

    def set_suggestions(self, scores: dict[tuple[int, str], float], threshold: float) -> None:
        with self._tx(write=True) as conn:
            conn.executemany("UPDATE candidates SET suggestion = ? WHERE task = ? AND id = ?",
                             [(s, task, cid) for (task, cid), s in scores.items()])
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('suggestion_threshold', ?)", (str(threshold),))

    def unscored(self) -> list[tuple[int, Example, Candidate]]:
        """Candidates of open tasks without a suggestion yet."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT c.task, c.record, e.record AS ex FROM candidates c JOIN tasks t ON t.id = c.task "
                "JOIN examples e ON e.id = t.example_id WHERE c.suggestion IS NULL").fetchall()
        return [(r["task"], from_dict(Example, json.loads(r["ex"])), from_dict(Candidate, json.loads(r["record"])))
                for r in rows]

    # -- serving ------------------------------------------------------------------------
    def batches(self) -> list[str]:
        with self._tx() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM batches ORDER BY created, name")]

    def progress(self, batch: str | None = None) -> list[BatchProgress]:
        out = []
        with self._tx() as conn:
            for b in conn.execute("SELECT name, k FROM batches ORDER BY created, name").fetchall():
                if batch is not None and b["name"] != batch:
                    continue
                rows = conn.execute(
                    "SELECT t.id, (SELECT COUNT(*) FROM submissions s WHERE s.task = t.id AND s.kind = 'judged') AS j, "
                    "(SELECT COUNT(*) FROM submissions s WHERE s.task = t.id AND s.kind = 'skipped') AS sk, "
                    "(SELECT COUNT(*) FROM candidates c WHERE c.task = t.id) AS n FROM tasks t WHERE t.batch = ?",
                    (b["name"],)).fetchall()
                k = b["k"]
                closed = sum(1 for r in rows if r["j"] < k and r["sk"] >= k)
                done = sum(min(r["j"], k) for r in rows)
                pending = sum(k - r["j"] for r in rows if r["j"] < k and r["sk"] < k)
                out.append(BatchProgress(b["name"], k, len(rows), sum(r["n"] for r in rows), done, pending, closed))
        return out

    def next_task(self, annotator: str, show_suggestions: bool = True) -> dict | None:
        """The next question for this person (leased to them for a while), or None when nothing is left."""
        annotator = check_name(annotator)
        now = time.time()
        with self._tx(write=True) as conn:
            conn.execute("DELETE FROM leases WHERE until < ?", (now,))
            row = conn.execute(
                """SELECT t.id, t.batch, t.example_id FROM tasks t JOIN batches b ON b.name = t.batch
                   WHERE NOT EXISTS (SELECT 1 FROM submissions s WHERE s.task = t.id AND s.annotator = ?)
                     AND (SELECT COUNT(*) FROM submissions s WHERE s.task = t.id AND s.kind = 'skipped') < b.k
                     AND (SELECT COUNT(*) FROM submissions s WHERE s.task = t.id AND s.kind = 'judged')
                       + (SELECT COUNT(*) FROM leases l WHERE l.task = t.id AND l.annotator != ?) < b.k
                   ORDER BY EXISTS (SELECT 1 FROM leases l WHERE l.task = t.id AND l.annotator = ?) DESC,
                            b.created, t.id LIMIT 1""", (annotator, annotator, annotator)).fetchone()
            if row is None:
                return None
            conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (row["id"], annotator, now + LEASE_SECONDS))
            ex = from_dict(Example, json.loads(conn.execute("SELECT record FROM examples WHERE id = ?",
                                                            (row["example_id"],)).fetchone()[0]))
            cands = conn.execute("SELECT id, rationale, suggestion FROM candidates WHERE task = ? ORDER BY position",
                                 (row["id"],)).fetchall()
            threshold = conn.execute("SELECT value FROM settings WHERE key = 'suggestion_threshold'").fetchone()
            mine = conn.execute("SELECT COUNT(*) FROM submissions WHERE annotator = ?", (annotator,)).fetchone()[0]
        suggest = show_suggestions and threshold is not None
        return {
            "task": row["id"], "batch": row["batch"], "example_id": ex.id, "question": ex.question,
            "answer": ex.answer, "image": ex.image,
            "candidates": [{"id": c["id"], "rationale": c["rationale"],
                            "suggestion": c["suggestion"] if suggest else None,
                            "suggested": bool(suggest and c["suggestion"] is not None
                                              and c["suggestion"] >= float(threshold[0]))} for c in cands],
            "yours": mine,
        }

    def submit(self, task: int, annotator: str, accepted: Iterable[str], none: bool = False,
               written: str = "", suggestions_shown: bool | None = None) -> int:
        """Store one person's verdicts on one question, in one transaction. Refused (nothing stored)
        for an unknown task or candidate, a contradiction, or a second submission by the same person."""
        annotator = check_name(annotator)
        accepted = set(accepted)
        written = (written or "").strip()
        if len(written) > MAX_WRITTEN:
            raise Refused(f"the written rationale is longer than {MAX_WRITTEN} characters")
        if none and accepted:
            raise Refused("'none acceptable' was sent together with accepted rationales")
        if not none and not accepted and not written:
            raise Refused("tick the acceptable rationales, or 'none acceptable'")
        with self._tx(write=True) as conn:
            _check_open(conn, task, annotator)
            ids = [r[0] for r in conn.execute("SELECT id FROM candidates WHERE task = ? ORDER BY position", (task,))]
            unknown = sorted(accepted - set(ids))
            if unknown:
                raise Refused(f"task {task} has no candidate {unknown[0]}", 404)
            sub = conn.execute(
                "INSERT INTO submissions (task, annotator, kind, written, suggestions_shown, time) "
                "VALUES (?, ?, 'judged', ?, ?, ?)",
                (task, annotator, written or None, None if suggestions_shown is None else int(suggestions_shown),
                 time.time())).lastrowid
            conn.executemany("INSERT INTO votes VALUES (?, ?, ?, ?)",
                             [(sub, task, cid, int(cid in accepted)) for cid in ids])
            conn.execute("DELETE FROM leases WHERE task = ? AND annotator = ?", (task, annotator))
            return sub

    def skip(self, task: int, annotator: str) -> None:
        annotator = check_name(annotator)
        with self._tx(write=True) as conn:
            _check_open(conn, task, annotator)
            conn.execute("INSERT INTO submissions (task, annotator, kind, time) VALUES (?, ?, 'skipped', ?)",
                         (task, annotator, time.time()))
            conn.execute("DELETE FROM leases WHERE task = ? AND annotator = ?", (task, annotator))

    def image_paths(self) -> set[str]:
        with self._tx() as conn:
            rows = conn.execute("SELECT e.record FROM examples e").fetchall()
        return {p for p in (json.loads(r[0]).get("image") for r in rows) if p}

    # -- reading results back -----------------------------------------------------------
    def votes(self, batch: str) -> dict[str, dict[str, bool]]:
        """candidate id -> {annotator: accepted} for a batch."""
        out: dict[str, dict[str, bool]] = {}
        with self._tx() as conn:
            for r in conn.execute(
                    "SELECT v.candidate_id, s.annotator, v.accepted FROM votes v JOIN submissions s ON s.id = v.submission "
                    "JOIN tasks t ON t.id = v.task WHERE t.batch = ?", (batch,)):
                out.setdefault(r[0], {})[r[1]] = bool(r[2])
        return out

    def candidates(self, batch: str) -> list[Candidate]:
        """The candidates shown in a batch (one per distinct rationale of a question)."""
        with self._tx() as conn:
            rows = conn.execute("SELECT c.record FROM candidates c JOIN tasks t ON t.id = c.task WHERE t.batch = ? "
                                "ORDER BY t.id, c.position", (batch,)).fetchall()
        return [from_dict(Candidate, json.loads(r[0])) for r in rows]

    def judgements(self, batch: str, cands: Sequence[Candidate]) -> tuple[list[Judgement], list[Candidate]]:
        """Verdicts for the batch's candidates (duplicates of a judged rationale share its verdict), and the
        rationales people wrote themselves, as accepted candidates (with their judgements appended)."""
        votes = self.votes(batch)
        with self._tx() as conn:
            rows = conn.execute("SELECT c.id, t.example_id, c.rationale FROM candidates c JOIN tasks t ON t.id = c.task "
                                "WHERE t.batch = ?", (batch,)).fetchall()
            written = conn.execute(
                "SELECT s.id, s.annotator, s.written, s.time, t.example_id FROM submissions s JOIN tasks t ON t.id = s.task "
                "WHERE t.batch = ? AND s.written IS NOT NULL ORDER BY s.id", (batch,)).fetchall()
            examples = {r[0]: from_dict(Example, json.loads(r[1])) for r in conn.execute(
                "SELECT e.id, e.record FROM examples e JOIN tasks t ON t.example_id = e.id WHERE t.batch = ?", (batch,))}
        shown = {(ex, rat.strip().lower()): cid for cid, ex, rat in rows}
        judgements = []
        for c in cands:
            cid = shown.get((c.example_id, c.rationale.strip().lower()))
            v = votes.get(cid or "")
            if not v:
                continue
            score = sum(v.values()) / len(v)
            judgements.append(Judgement(c.id, score > 0.5, score, f"human(k={len(v)})"))
        extra = []
        iteration = cands[0].iteration if cands else 0
        for r in written:
            ex = examples[r["example_id"]]
            c = Candidate(f"{batch}-written-{r['id']}", ex.id, ex.answer, r["written"], iteration=iteration,
                          model=f"human:{r['annotator']}")
            extra.append(c)
            judgements.append(Judgement(c.id, True, 1.0, "human(written)", time=r["time"]))
        return judgements, extra

    def agreement(self, batch: str | None = None) -> dict:
        batches = [batch] if batch else self.batches()
        votes: dict[str, dict[str, bool]] = {}
        for b in batches:
            votes.update({f"{b}/{cid}": v for cid, v in self.votes(b).items()})
        return agreement_report(votes)

    def annotators(self) -> dict[str, int]:
        with self._tx() as conn:
            return {r[0]: r[1] for r in conn.execute(
                "SELECT annotator, COUNT(*) FROM submissions WHERE kind = 'judged' GROUP BY annotator ORDER BY 1")}


def _check_open(conn: sqlite3.Connection, task: int, annotator: str) -> None:
    """Refuse a submission (a verdict or a skip) for an unknown task, a second one by the same
    person, one for a question that has its k people, or one by someone it was not handed to: the
    page's rules hold when work comes back, not only when it is handed out."""
    row = conn.execute("SELECT b.k FROM tasks t JOIN batches b ON b.name = t.batch WHERE t.id = ?",
                       (task,)).fetchone()
    if row is None:
        raise Refused(f"unknown task {task}", 404)
    if conn.execute("SELECT 1 FROM submissions WHERE task = ? AND annotator = ?", (task, annotator)).fetchone():
        raise Refused(f"{annotator} has already answered task {task}", 409)
    judged, skipped = conn.execute(
        "SELECT COALESCE(SUM(kind = 'judged'), 0), COALESCE(SUM(kind = 'skipped'), 0) FROM submissions "
        "WHERE task = ?", (task,)).fetchone()
    if judged >= row["k"] or skipped >= row["k"]:
        raise Refused(f"task {task} is closed: it has its {row['k']} {'judgements' if judged >= row['k'] else 'skips'}",
                      409)
    # the lease holder, or, once a lease has run out unclaimed, whoever holds it still
    if conn.execute("SELECT 1 FROM leases WHERE task = ? AND annotator = ?", (task, annotator)).fetchone() is None:
        raise Refused(f"task {task} was not handed to {annotator}: ask for the next question first", 409)


def check_name(annotator) -> str:
    """One person's name: one line of at most MAX_NAME printable characters, compared in Unicode NFC
    (so "Zoë" typed either way is one person)."""
    if not isinstance(annotator, str) or not annotator.strip():
        raise Refused("the annotator's name is missing")
    annotator = unicodedata.normalize("NFC", annotator.strip())
    if len(annotator) > MAX_NAME or any(unicodedata.category(ch)[0] == "C" for ch in annotator):
        raise Refused(f"the annotator's name must be one line of at most {MAX_NAME} printable characters")
    return annotator
