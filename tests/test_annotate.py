"""The annotation page: store, requests through Flask's test client, the server process, the human
selector in `iterate`, and (test_annotate_browser.py) a real browser."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from illume_rm.annotate.agreement import agreement_report, cohen_kappa, fleiss_kappa
from illume_rm.annotate.server import create_app, is_loopback
from illume_rm.annotate.store import Refused, Store
from illume_rm.cli import cli
from illume_rm.data import load_examples
from illume_rm.records import Candidate, Judgement, read_jsonl, write_jsonl

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def make_candidates(examples, n_examples=3):
    cands = []
    for ex in examples[:n_examples]:
        texts = [f"there is a thing in {ex.id}", f"the {ex.answer} is visible", f"there is a thing in {ex.id}", XSS]
        for k, t in enumerate(texts):
            cands.append(Candidate(f"{ex.id}-c{k}", ex.id, ex.answer, t, temperature=0.7))
    return cands


@pytest.fixture()
def world(tmp_path, shapes_small):
    examples = load_examples(shapes_small, "train")
    by_id = {ex.id: ex for ex in examples}
    cands = make_candidates(examples)
    store = Store.of_run(tmp_path)
    store.add_batch("iter-000", by_id, cands, k=1)
    return store, by_id, cands


def nxt(client, annotator, **kw):
    """Ask for the next question (a POST: handing one out changes state)."""
    return client.post("/api/next", json={"annotator": annotator}, **kw)


def rows(store, table):
    with store._tx() as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_tasks_hold_distinct_rationales_and_judgements_map_back(world):
    store, by_id, cands = world
    task = store.next_task("ann")
    assert len(task["candidates"]) == 3  # the duplicate rationale is shown once
    assert store.add_batch("iter-000", by_id, cands) == 3  # adding the batch again changes nothing
    first = task["candidates"][0]["id"]
    store.submit(task["task"], "ann", [first], written="a better reason")
    judgements, written = store.judgements("iter-000", cands)
    verdict = {j.candidate_id: j.accepted for j in judgements}
    ex = task["example_id"]
    # the duplicate (c2) shares c0's verdict; every candidate of the question has one
    assert verdict[f"{ex}-c0"] and verdict[f"{ex}-c2"] and not verdict[f"{ex}-c1"] and not verdict[f"{ex}-c3"]
    assert all(j.selector.startswith("human") for j in judgements)
    assert [c.rationale for c in written] == ["a better reason"] and written[0].model == "human:ann"
    assert any(j.candidate_id == written[0].id and j.accepted for j in judgements)


def test_k_people_per_question_leases_and_skips(tmp_path, shapes_small):
    examples = load_examples(shapes_small, "train")
    by_id = {ex.id: ex for ex in examples}
    store = Store.of_run(tmp_path)
    store.add_batch("b", by_id, make_candidates(examples, 2), k=2)
    (p,) = store.progress("b")
    assert (p.questions, p.pending, p.done) == (2, 4, 0)
    a, b = store.next_task("alice"), store.next_task("bob")
    assert a["task"] == b["task"]  # k = 2: both may hold the first question
    assert store.next_task("carol")["task"] != a["task"]  # but not a third person
    ids = [c["id"] for c in a["candidates"]]
    store.submit(a["task"], "alice", ids[:2])
    store.submit(b["task"], "bob", ids[:1])
    with pytest.raises(Refused) as e:
        store.submit(a["task"], "alice", ids[:1])
    assert e.value.status == 409
    second = store.next_task("alice")
    assert store.next_task("bob") is None  # carol and alice hold the second question: k = 2
    with pytest.raises(Refused) as e:
        store.skip(second["task"], "bob")  # not handed to bob: his skip cannot close it for them
    assert e.value.status == 409
    store.skip(second["task"], "alice")
    store.skip(second["task"], "carol")  # k skips close the question
    (p,) = store.progress("b")
    assert (p.done, p.pending, p.closed) == (2, 0, 1)
    assert store.next_task("dave") is None
    report = store.agreement("b")
    assert report["annotators"] == 2 and report["items_with_2_or_more"] == 3
    assert report["cohen_kappa"]["alice / bob"]["items"] == 3


def test_kappa_values():
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(0.5)
    assert fleiss_kappa([[True, True, False], [True, True, True], [False] * 3, [True, False, False]]) == pytest.approx(1 / 3)
    assert fleiss_kappa([[True, True], [False, False]]) == pytest.approx(1.0)
    report = agreement_report({"x": {"a": True, "b": True}, "y": {"a": False, "b": False}, "z": {"a": True}})
    assert report["items_with_2_or_more"] == 2 and report["unanimous"] == 1.0
    assert report["cohen_kappa"]["a / b"]["kappa"] == pytest.approx(1.0)


def test_page_requests_through_the_test_client(world):
    store, _, _ = world
    client = create_app(store).test_client()
    page, script = client.get("/"), client.get("/page.js")
    assert page.status_code == 200 and script.status_code == 200 and b"textContent" in script.data
    assert b"<script>" not in page.data and "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"].split("script-src")[1]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert b"window.__pwned" not in page.data  # model text never reaches the page as markup
    data = nxt(client, "ann").get_json()
    task = data["task"]
    assert data["progress"] == {"done": 0, "total": 3, "batches": data["progress"]["batches"]}
    assert any(c["rationale"] == XSS for c in task["candidates"])  # as data, for textContent
    img = client.get(task["image_url"])
    assert img.status_code == 200 and img.data[:8] == b"\x89PNG\r\n\x1a\n"
    r = client.post("/api/judge", json={"task": task["task"], "annotator": "ann",
                                        "accepted": [task["candidates"][1]["id"]], "suggestions_shown": False})
    assert r.status_code == 201
    assert nxt(client, "ann").get_json()["progress"]["done"] == 1
    assert client.post("/api/judge", json={"task": task["task"], "annotator": "ann", "none": True}).status_code == 409


def test_bad_requests_get_4xx_and_store_nothing(world):
    store, _, _ = world
    client = create_app(store).test_client()
    task = nxt(client, "ann").get_json()["task"]
    good = {"task": task["task"], "annotator": "ann", "accepted": [task["candidates"][0]["id"]]}
    bad = [
        ({**good, "accepted": ["no-such-candidate"]}, 404),
        ({**good, "task": 99999}, 404),
        ({**good, "task": "1"}, 400),
        ({**good, "accepted": "x"}, 400),
        ({**good, "annotator": ""}, 400),
        ({**good, "annotator": "x" * 200}, 400),
        ({**good, "none": True}, 400),                  # 'none acceptable' and a ticked rationale
        ({**good, "accepted": []}, 400),                # nothing ticked, nothing said
        ({**good, "written": "w" * 5000}, 400),
        ({k: v for k, v in good.items() if k != "task"}, 400),
    ]
    for payload, status in bad:
        r = client.post("/api/judge", json=payload)
        assert r.status_code == status, (payload, r.get_json())
        assert "error" in r.get_json()
    assert client.post("/api/judge", data="{not json", content_type="application/json").status_code == 400
    assert client.post("/api/judge", data=json.dumps(good), content_type="text/plain").status_code == 415
    assert client.post("/api/judge", json=[1, 2]).status_code == 400
    assert client.post("/api/skip", json={"task": 99999, "annotator": "ann"}).status_code == 404
    assert client.get("/api/judge").status_code == 405
    assert (rows(store, "submissions"), rows(store, "votes")) == (0, 0)
    assert client.post("/api/judge", json=good).status_code == 201
    assert (rows(store, "submissions"), rows(store, "votes")) == (1, 3)


def test_images_only_from_the_runs_dataset(world, tmp_path):
    store, _, _ = world
    client = create_app(store).test_client()
    url = nxt(client, "ann").get_json()["task"]["image_url"]
    folder = Path(next(iter(store.image_paths()))).parent
    (folder / "not-in-the-dataset.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    (tmp_path / "secret.txt").write_text("secret")
    assert client.get(url).status_code == 200
    for path in ["/images/../annotations.sqlite", "/images/%2e%2e/%2e%2e/secret.txt", "/images/..%2fsecret.txt",
                 "/images/" + url.split("/")[-1].replace(".png", "/../../secret.txt"),
                 "/images//etc/passwd", "/images/not-in-the-dataset.png",
                 "/images/" + "/".join(url.split("/")[2:-1] + ["not-in-the-dataset.png"])]:
        r = client.get(path)
        assert r.status_code in (404, 308) and b"secret" not in r.data, path


def test_a_batch_added_while_serving_has_its_images(tmp_path, shapes_small):
    examples = load_examples(shapes_small, "train")
    by_id = {ex.id: ex for ex in examples}
    store = Store.of_run(tmp_path)
    store.add_batch("iter-000", by_id, make_candidates(examples[:1]), k=1)
    client = create_app(store).test_client()
    task = nxt(client, "a").get_json()["task"]
    assert client.post("/api/judge", json={"task": task["task"], "annotator": "a", "none": True}).status_code == 201
    assert nxt(client, "a").get_json()["task"] is None
    store.add_batch("iter-001", by_id, make_candidates(examples[5:6]), k=1)  # iterate's next batch
    task = nxt(client, "a").get_json()["task"]
    assert task["example_id"] == examples[5].id and client.get(task["image_url"]).status_code == 200


def test_token_is_required_off_the_loopback(world):
    store, _, _ = world
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    client = create_app(store, token="s3cret").test_client()
    assert nxt(client, "a").status_code == 403
    assert client.get("/").status_code == 403
    assert nxt(client, "a", headers={"X-Annotate-Token": "wrong"}).status_code == 403
    r = nxt(client, "a", headers={"X-Annotate-Token": "s3cret"})
    assert r.status_code == 200 and "token=s3cret" in r.get_json()["task"]["image_url"]
    task = r.get_json()["task"]
    payload = {"task": task["task"], "annotator": "a", "none": True}
    assert client.post("/api/judge", json=payload).status_code == 403
    assert rows(store, "submissions") == 0
    assert client.post("/api/judge?token=s3cret", json=payload).status_code == 201
    # without a token, only requests addressed to localhost are answered
    local = create_app(store).test_client()
    assert local.get("/", headers={"Host": "evil.example:8765"}).status_code == 403
    assert local.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert local.get("/", headers={"Host": "[::1]:8765"}).status_code == 200


def test_the_page_rules_hold_when_work_comes_back(world):
    """A question is judged or skipped only by the person it was handed to, by at most k people,
    one row each; a name typed in two Unicode forms is one person."""
    store, _, _ = world
    client = create_app(store).test_client()
    task = nxt(client, "Zo\u00eb").get_json()["task"]
    first = task["candidates"][0]["id"]
    for stranger in [f"stranger{i}" for i in range(20)]:  # k = 1 and it is held: nobody else
        r = client.post("/api/judge", json={"task": task["task"], "annotator": stranger, "accepted": [first]})
        assert r.status_code == 409 and "not handed to" in r.get_json()["error"]
        assert client.post("/api/skip", json={"task": task["task"], "annotator": stranger}).status_code == 409
    assert client.post("/api/judge", json={"task": task["task"], "annotator": "Zoe\u0308",  # decomposed: same person
                                           "accepted": [first]}).status_code == 201
    again = client.post("/api/judge", json={"task": task["task"], "annotator": "Zo\u00eb", "none": True})
    assert again.status_code == 409
    assert rows(store, "submissions") == 1 and store.annotators() == {"Zo\u00eb": 1}
    bad_name = nxt(client, "eve\x1b[2J")
    assert bad_name.status_code == 400 and "printable" in bad_name.get_json()["error"]


def test_no_get_changes_state_and_no_other_site_may_post(world):
    store, _, _ = world
    client = create_app(store).test_client()
    assert client.get("/api/next?annotator=ann").status_code == 405  # an <img> cannot take a question
    assert rows(store, "leases") == 0
    assert nxt(client, "ann", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert nxt(client, "ann", headers={"Origin": "http://evil.example"}).status_code == 403
    assert rows(store, "leases") == 0
    assert nxt(client, "ann", headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}).status_code == 200
    assert rows(store, "leases") == 1


def test_malformed_requests_get_4xx_not_500(world):
    store, _, _ = world
    client = create_app(store).test_client()
    task = nxt(client, "ann").get_json()["task"]
    deep = "[" * 50000 + "]" * 50000
    cases = [
        client.post("/api/judge", data='{"task": ' + deep + "}", content_type="application/json"),
        client.post("/api/judge", json={"task": 2 ** 70, "annotator": "ann", "none": True}),
        client.post("/api/skip", json={"task": -(2 ** 64), "annotator": "ann"}),
        client.get("/images/a%00b.png"),
        client.get("/images/" + "x" * 5000 + ".png"),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.status_code, r.data[:200])
    assert rows(store, "submissions") == 0
    assert task is not None


def test_image_urls_are_percent_encoded(tmp_path, shapes_small):
    from PIL import Image

    examples = load_examples(shapes_small, "train")[:1]
    odd = tmp_path / "imgs" / "a #1 %20?.png"
    odd.parent.mkdir()
    Image.new("RGB", (8, 8)).save(odd)
    ex = examples[0]
    ex.image = str(odd)
    store = Store.of_run(tmp_path / "run")
    store.add_batch("b", {ex.id: ex}, make_candidates([ex], 1), k=1)
    client = create_app(store).test_client()
    url = nxt(client, "ann").get_json()["task"]["image_url"]
    assert "#" not in url and "?" not in url and "%2523" not in url
    assert client.get(url).status_code == 200


def test_an_empty_token_is_refused(world, tmp_path):
    from illume_rm.errors import UserError

    store, _, _ = world
    with pytest.raises(UserError, match="token is empty"):
        create_app(store, token="")
    r = CliRunner().invoke(cli, ["annotate", str(tmp_path), "--token", "", "--port", str(free_port())])
    assert r.exit_code == 2 and "token is empty" in r.output


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={"task": JSON | st.integers(), "annotator": JSON | st.text(max_size=70),
                                             "accepted": JSON, "none": JSON, "written": JSON,
                                             "suggestions_shown": JSON})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/next", "/api/judge", "/api/skip"]), payload=JSON | FIELDS)
def test_random_json_never_gets_a_5xx(world, path, payload):
    store, _, _ = world
    client = create_app(store).test_client()
    before = rows(store, "submissions")
    r = client.post(path, json=payload)
    assert r.status_code < 500, (path, payload, r.data[:200])
    if r.status_code >= 400:
        assert rows(store, "submissions") == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, *args: str):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "illume_rm.cli", "annotate", str(run), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "annotation page:" in line:
            return proc, lines
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


def call(url, payload=None, headers=None):
    req = urllib.request.Request(url, data=None if payload is None else json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_killing_the_server_loses_nothing_submitted(world, tmp_path):
    store, _, _ = world
    port = free_port()
    proc, _ = start_server(tmp_path, "--port", str(port))
    try:
        base = f"http://127.0.0.1:{port}"
        for name in ("ann", "bob"):
            status, data = call(f"{base}/api/next", {"annotator": name})
            task = data["task"]
            # the real server enforces the page's rules too: not handed to a stranger, not judged by one
            stranger = call(f"{base}/api/judge", {"task": task["task"], "annotator": "mallory", "none": True})
            assert stranger[0] == 409
            status, _ = call(f"{base}/api/judge", {"task": task["task"], "annotator": name,
                                                   "accepted": [task["candidates"][0]["id"]]})
            assert status == 201
    finally:
        proc.kill()  # SIGKILL: no chance to flush anything
        proc.wait()
    fresh = Store.of_run(tmp_path)
    assert fresh.annotators() == {"ann": 1, "bob": 1}
    assert sum(p.done for p in fresh.progress()) == 2


def test_another_address_prints_and_needs_a_token(world, tmp_path):
    port = free_port()
    proc, lines = start_server(tmp_path, "--host", "0.0.0.0", "--port", str(port))
    try:
        while not any("token (" in line for line in lines):
            lines.append(proc.stdout.readline())
        token = next(line for line in lines if "token (" in line).rsplit(" ", 1)[1].strip()
        assert f"?token={token}" in "".join(lines)
        assert call(f"http://127.0.0.1:{port}/api/next", {"annotator": "a"})[0] == 403
        assert call(f"http://127.0.0.1:{port}/api/next", {"annotator": "a"}, headers={"X-Annotate-Token": token})[0] == 200
    finally:
        proc.kill()
        proc.wait()


def test_annotate_bad_input_exits_2(tmp_path, world):
    r = CliRunner().invoke(cli, ["annotate", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(cli, ["annotate", str(empty)])
    assert r.exit_code == 2 and "no annotation tasks" in r.output
    assert not (empty / "annotations.sqlite").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"\n')
    r = CliRunner().invoke(cli, ["annotate", str(empty), "--candidates", str(bad)])
    assert r.exit_code == 2 and "recipe" in r.output
    r = CliRunner().invoke(cli, ["annotate", str(tmp_path), "--port", "99999"])
    assert r.exit_code == 2


HUMAN = """
name: tiny-human
seed: 0
data:
  name: shapes
  shapes: {{train: 12, val: 4, test: 2, image_size: 64}}
model: {{base: "{base}", image_size: 64}}
warmup: {{steps: 2, batch_size: 4}}
sampling: {{samples_per_temperature: 1, max_new_tokens: 8, batch_size: 4, train_examples: 4, eval_examples: 4}}
selector: {{name: critic, judges: 2}}
finetune: {{steps: 2, batch_size: 4}}
loop: {{max_iterations: 1, patience: 5}}
evaluation: {{scorer: python}}
"""


def judge_everything(store, people=("ann", "bob"), written=None):
    """Each person, question by question: accept the first rationale, then 'none acceptable', alternating."""
    for person in people:
        n = 0
        while (task := store.next_task(person)) is not None:
            ids = [c["id"] for c in task["candidates"]]
            store.submit(task["task"], person, ids[:1] if n % 2 == 0 else [], none=n % 2 == 1,
                         written=written if person == people[0] and n == 0 else "")
            n += 1


def test_iterate_with_people_stops_then_continues(tmp_path, tiny_vlm_path):
    recipe = tmp_path / "h.yaml"
    recipe.write_text(HUMAN.format(base=tiny_vlm_path))
    run = tmp_path / "run"
    args = ["iterate", str(recipe), "--run", str(run), "--selector", "human"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "pending in batch iter-000" in r.output and f"illume-rm annotate {run}" in r.output
    assert not (run / "iter-000" / "judgements.jsonl").exists()
    # nothing new is asked when rerun before people are done
    assert "pending" in CliRunner().invoke(cli, args).output
    store = Store.of_run(run)
    judge_everything(store, written="the thing is there, as you can see")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    judgements = read_jsonl(run / "iter-000" / "judgements.jsonl", Judgement)
    cands = read_jsonl(run / "iter-000" / "candidates.jsonl", Candidate)
    assert len([j for j in judgements if j.selector == "human(k=2)"]) == len(cands)
    train = read_jsonl(run / "iter-000" / "train.jsonl", Candidate)
    assert "the thing is there, as you can see" in [c.rationale for c in train]
    selection = json.loads((run / "iter-000" / "selection.json").read_text())
    assert selection["judgements_by_kind"] == {"human": len(cands) + 1}
    assert selection["sampled"] == len(cands) and selection["written"] == 1
    report = (run / "report.md").read_text()
    assert "## People (annotation page)" in report and "| iter-000 |" in report
    agreement = json.loads((run / "agreement-iter-000.json").read_text())
    assert agreement["annotators"] == 2 and agreement["fleiss_kappa"] == pytest.approx(1.0)
    # export for train-reward: every judgement's candidate is in the exported candidates
    r = CliRunner().invoke(cli, ["annotate", str(run), "--export", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    exported = {c.id for c in read_jsonl(tmp_path / "out" / "candidates.jsonl", Candidate)}
    assert {j.candidate_id for j in read_jsonl(tmp_path / "out" / "judgements.jsonl", Judgement)} <= exported
    # `select` with people, in this run's folder, gives the verdicts iterate took from the page
    r = CliRunner().invoke(cli, ["select", str(run / "iter-000" / "candidates.jsonl"), "--selector", "human",
                                 "--run", str(run), "--out", str(tmp_path / "x.jsonl"), str(recipe)])
    assert r.exit_code == 0 and "human judgements" in r.output, r.output
    again = read_jsonl(tmp_path / "x.jsonl", Judgement)
    assert {(j.candidate_id, j.accepted) for j in again} == {(j.candidate_id, j.accepted) for j in judgements}


def test_reward_loop_takes_its_seed_judgements_from_the_page(tmp_path, tiny_vlm_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(HUMAN.format(base=tiny_vlm_path).replace(
        "selector: {name: critic, judges: 2}",
        "selector: {name: reward, seed_judgements: 3, reward: {epochs: 1, batch_size: 8, heldout_fraction: 0.0}}"))
    run = tmp_path / "run"
    args = ["iterate", str(recipe), "--run", str(run)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "pending in batch iter-000-seed" in r.output, r.output
    store = Store.of_run(run)
    (p,) = store.progress("iter-000-seed")
    assert p.rationales <= 3
    judge_everything(store, people=("ann",))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (run / "reward-model" / "reward.json").exists()
    selection = json.loads((run / "iter-000" / "selection.json").read_text())
    assert selection["judgements_by_kind"]["human"] == 3
    # its reward model can then pre-tick suggestions in the page
    r = CliRunner().invoke(cli, ["annotate", str(run), "--reward", str(run / "reward-model"), "--status"])
    assert r.exit_code == 0 and "suggestions for" in r.output, r.output
    assert store.unscored() == [] and "| iter-000-seed |" in r.output


def test_reward_suggestions_can_be_withheld(world):
    store, _, _ = world
    store.set_suggestions({(task, c.id): 0.8 for task, _, c in store.unscored()}, threshold=0.5)
    assert store.unscored() == []
    shown = nxt(create_app(store).test_client(), "a").get_json()
    assert shown["suggestions_available"] and all(c["suggested"] and c["suggestion"] == 0.8
                                                  for c in shown["task"]["candidates"])
    hidden = nxt(create_app(store, show_suggestions=False).test_client(), "b").get_json()
    assert not hidden["suggestions_available"]
    assert all(c["suggestion"] is None and not c["suggested"] for c in hidden["task"]["candidates"])


def test_any_candidates_file_can_be_annotated(tmp_path, shapes_small):
    examples = load_examples(shapes_small, "train")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  name: shapes\n  shapes: {train: 40, val: 10, test: 10, image_size: 64}\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "example_id": "y"\n')
    new = tmp_path / "new"
    r = CliRunner().invoke(cli, ["annotate", str(new), "--candidates", str(bad), "--recipe", str(recipe)])
    assert r.exit_code == 2 and "bad.jsonl:1" in r.output and not new.exists()
    write_jsonl(tmp_path / "mine.jsonl", make_candidates(examples))
    r = CliRunner().invoke(cli, ["annotate", str(new), "--candidates", str(tmp_path / "mine.jsonl"),
                                 "--recipe", str(recipe), "--judges", "2", "--status"])
    assert r.exit_code == 0, r.output
    assert "batch mine: 3 questions" in r.output and "| mine | 3 | 9 | 2 | 0 | 6 |" in r.output


def test_status_prints_names_as_data(world, tmp_path):
    """A name with a terminal escape (stored before names were checked) is printed escaped, not run."""
    store, _, _ = world
    with store._tx(write=True) as conn:
        task = conn.execute("SELECT id FROM tasks LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO submissions (task, annotator, kind, time) VALUES (?, ?, 'judged', 0)",
                     (task, "eve\x1b[2J"))
    r = CliRunner().invoke(cli, ["annotate", str(store.path.parent), "--status"])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "eve\\x1b[2J (1)" in r.output
