"""Several processes (torchrun / accelerate launch, gloo on CPUs) give what one process gives.

Each test runs the same command once in one process and once in two (started as torchrun and
accelerate launch start them: each told its rank, the world size and where to meet), each with its
own cache, and compares what they wrote. Sampling and evaluation are shared out by batch (each batch
with its own seed), so their records are identical; training is data-parallel (each process takes
half of every batch, the gradients averaged), which changes only the order of float sums: losses
agree to 1e-4 (relative) and what the trained model then samples and answers is the same records.
"""
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from illume_rm.records import Candidate, read_jsonl

RECIPE = """
name: tiny-ddp
seed: 0
data:
  name: shapes
  shapes: {{train: 12, val: 4, test: 2, image_size: 64}}
model: {{base: "{base}", image_size: 64}}
warmup: {{steps: 3, batch_size: 4, align_steps: 2}}
sampling: {{samples_per_temperature: 2, max_new_tokens: 8, batch_size: 3, train_examples: 8, eval_examples: 6}}
selector:
  name: critic
  rule: {{kind: adaptive, threshold: 0.7, min_accept: 3, floor: 0.0}}
finetune: {{steps: 3, batch_size: 5, explanation_weight: 3.0}}
loop: {{max_iterations: 2, patience: 5}}
evaluation: {{scorer: python}}
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv, env: dict, processes: int) -> subprocess.CompletedProcess:
    """What torchrun / accelerate launch do on one machine: N copies, each told its rank."""
    env = {k: v for k, v in env.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    if processes == 1:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    port = str(_free_port())
    procs = [subprocess.Popen(argv, env={**env, "WORLD_SIZE": str(processes), "RANK": str(r), "LOCAL_RANK": str(r),
                                         "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1",
                                         "MASTER_PORT": port},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(processes)]
    outs = [p.communicate(timeout=600) for p in procs]
    code = next((p.returncode for p in procs if p.returncode), 0)
    return subprocess.CompletedProcess(argv, code, "".join(o for o, _ in outs), "".join(e for _, e in outs))


def _run(args, cache: Path, processes: int, check: bool = True) -> subprocess.CompletedProcess:
    r = _launch([sys.executable, "-m", "illume_rm.cli", *map(str, args)], {**os.environ, "ILLUME_RM_CACHE": str(cache)},
                processes)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vlm_path):
    """The tiny loop, warm-up included, in one process and in two."""
    root = tmp_path_factory.mktemp("ddp")
    recipe = root / "tiny.yaml"
    recipe.write_text(RECIPE.format(base=tiny_vlm_path))
    out = {}
    for n in (1, 2):
        r = _run(["iterate", recipe, "--run", root / f"run{n}"], root / f"cache{n}", n)
        assert ("illume-rm: 2 processes on cpu" in r.stderr) == (n == 2)
        out[n] = root / f"run{n}"
    out["recipe"], out["root"] = recipe, root
    return out


def _warmup_report(run: Path) -> dict:
    ckpt = Path((run / "warm-up.txt").read_text().strip())
    return json.loads((ckpt / "warmup.json").read_text())


def _same_records(a: Path, b: Path) -> None:
    ra, rb = read_jsonl(a, Candidate), read_jsonl(b, Candidate)
    assert [(c.id, c.rationale, c.answer) for c in ra] == [(c.id, c.rationale, c.answer) for c in rb], a.name
    assert all(abs(x.logprob - y.logprob) < 1e-3 for x, y in zip(ra, rb))


def test_the_warm_up_trains_data_parallel_to_the_same_losses(runs):
    one, two = _warmup_report(runs[1]), _warmup_report(runs[2])
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-4)
    assert one["after"] == two["after"]


def test_the_loop_writes_the_same_records_in_two_processes(runs):
    for name in ("base/val_candidates.jsonl", "iter-000/candidates.jsonl", "iter-000/val_candidates.jsonl",
                 "iter-001/candidates.jsonl", "iter-001/val_candidates.jsonl"):
        _same_records(runs[1] / name, runs[2] / name)
    for name in ("iter-000/judgements.jsonl", "iter-001/judgements.jsonl"):
        strip = [{k: v for k, v in j.items() if k != "time"} for j in map(json.loads, (runs[1] / name).open())]
        assert strip == [{k: v for k, v in j.items() if k != "time"} for j in map(json.loads, (runs[2] / name).open())]
    _same_records(runs[1] / "iter-001" / "train.jsonl", runs[2] / "iter-001" / "train.jsonl")
    m1 = json.loads((runs[1] / "iter-001" / "metrics.json").read_text())
    m2 = json.loads((runs[2] / "iter-001" / "metrics.json").read_text())
    assert m1["unfiltered"] == pytest.approx(m2["unfiltered"], abs=1e-9)
    # one process wrote the run folder: no second copy of anything, nothing half-written
    assert not list(runs[2].rglob(".*tmp*"))


def test_sample_and_evaluate_commands_write_what_one_process_writes(runs):
    root, recipe = runs["root"], runs["recipe"]
    ckpt = (runs[1] / "warm-up.txt").read_text().strip()
    adapter = runs[1] / "iter-000" / "adapter"
    for n in (1, 2):
        _run(["sample", recipe, "--checkpoint", ckpt, "--adapter", adapter, "--out", root / f"s{n}.jsonl",
              "--set", "sampling.train_examples=null"], root / "cache1", n)
        _run(["evaluate", recipe, "--checkpoint", ckpt, "--adapter", adapter, "--out", root / f"m{n}.json"],
             root / "cache1", n)
    _same_records(root / "s1.jsonl", root / "s2.jsonl")
    assert len(read_jsonl(root / "s1.jsonl", Candidate)) > 20
    m1, m2 = (json.loads((root / f"m{n}.json").read_text()) for n in (1, 2))
    assert m1["unfiltered"] == pytest.approx(m2["unfiltered"], abs=1e-9)


def test_processes_started_with_different_commands_are_refused_before_work(runs, tmp_path):
    """Each process is told its own --out (RANK differs): refused on every process, nothing written."""
    script = tmp_path / "differ.py"
    script.write_text(
        "import os, sys\nfrom illume_rm.cli import cli\n"
        f"sys.argv = ['illume-rm', 'sample', {str(runs['recipe'])!r}, '--out', "
        f"{str(tmp_path)!r} + '/c' + os.environ['RANK'] + '.jsonl']\ncli()\n")
    r = _launch([sys.executable, str(script)], {**os.environ, "ILLUME_RM_CACHE": str(runs["root"] / "cache1")}, 2)
    assert r.returncode != 0
    assert "processes were started with different commands" in r.stderr
    assert not list(tmp_path.glob("c*.jsonl"))


def test_every_process_tears_its_process_group_down_before_exit(runs, tmp_path):
    """Left to interpreter finalisation, gloo's threads can abort a process (SIGABRT) after its work
    is done. Each process, main or serving, must leave the command with no process group; a refused
    command too. (The script then ends as the `illume-rm` entry point ends a command run by several
    processes, with ``os._exit``: its own finalisation is not what is tested here.)"""
    script = tmp_path / "after.py"
    script.write_text(
        "import os, sys\nimport torch.distributed as dist\nfrom illume_rm.cli import cli\n"
        "try:\n    cli(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('rank', os.environ['RANK'], 'initialised', dist.is_initialized(), flush=True)\nos._exit(0)\n")
    env = {**os.environ, "ILLUME_RM_CACHE": str(runs["root"] / "cache1")}
    for args in (["sample", runs["recipe"], "--out", tmp_path / "c.jsonl", "--set", "sampling.train_examples=2"],
                 ["rl", runs["recipe"], "--adapter", tmp_path, "--reward", tmp_path, "--out", tmp_path / "o"]):
        r = _launch([sys.executable, str(script), *map(str, args)], env, 2)
        assert r.returncode == 0, r.stderr[-3000:]
        assert sorted(r.stdout.split("\n")[-3:]) == ["", "rank 0 initialised False", "rank 1 initialised False"], \
            r.stdout[-2000:]


@pytest.mark.parametrize("args, says", [
    (["rl", "{recipe}", "--adapter", "{tmp}", "--reward", "{tmp}", "--out", "{tmp}/o"], "runs in one process"),
    (["train-reward", "{recipe}", "--candidates", "{tmp}/c.jsonl", "--judgements", "{tmp}/j.jsonl", "--out", "{tmp}/r"],
     "runs in one process"),
    (["iterate", "{recipe}", "--run", "{tmp}/run", "--selector", "reward"], "trains with transformers' Trainer"),
    (["iterate", "{recipe}", "--run", "{tmp}/run", "--selector", "reward", "--set", "selector.reward.kind=vlm-likelihood",
      "--set", "rl.algorithm=grpo"], "RL through TRL runs in one process"),
])
def test_what_runs_in_one_process_is_refused_under_several(runs, tmp_path, args, says):
    args = [a.format(recipe=runs["recipe"], tmp=tmp_path) for a in args]
    r = _run(args, runs["root"] / "cache1", 2, check=False)
    assert r.returncode == 2 and says in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run" / "iter-000").exists() and not (tmp_path / "o").exists()


def test_the_shipped_accelerate_config_for_cpus_launches_two_processes(runs):
    """`accelerate launch --config_file recipes/accelerate/cpus.yaml -m illume_rm.cli sample ...`, as the
    README shows it, writes the one-process records."""
    root, recipe = runs["root"], runs["recipe"]
    ckpt = (runs[1] / "warm-up.txt").read_text().strip()
    config = Path(__file__).parents[1] / "recipes" / "accelerate" / "cpus.yaml"
    args = ["sample", recipe, "--checkpoint", ckpt, "--out"]
    _run([*args, root / "a1.jsonl"], root / "cache1", 1)
    accelerate = Path(sys.executable).parent / "accelerate"
    r = _launch([str(accelerate), "launch", "--config_file", str(config), "-m", "illume_rm.cli", *map(str, args),
                 str(root / "a2.jsonl")], {**os.environ, "ILLUME_RM_CACHE": str(root / "cache1")}, 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "illume-rm: 2 processes" in r.stderr
    _same_records(root / "a1.jsonl", root / "a2.jsonl")


def test_the_reward_loop_with_the_likelihood_judge_writes_the_same_records(runs, tmp_path):
    """The reward loop's seed judge, reward model (fitted in process 0) and its verdicts, under two
    processes: the records one process writes."""
    args = ["iterate", runs["recipe"], "--selector", "reward", "--set", "selector.reward.kind=vlm-likelihood",
            "--set", "selector.seed_selector=length_scorer:alternate", "--set", "selector.seed_judgements=16",
            "--set", "loop.max_iterations=1"]
    plugins = str(Path(__file__).parent / "plugins")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))}
    for n in (1, 2):
        r = _launch([sys.executable, "-m", "illume_rm.cli", *map(str, [*args, "--run", tmp_path / f"r{n}"])],
                    {**env, "ILLUME_RM_CACHE": str(runs["root"] / f"cache{n}")}, n)
        assert r.returncode == 0, r.stderr[-3000:]
    for name in ("iter-000/candidates.jsonl", "iter-000/val_candidates.jsonl"):
        _same_records(tmp_path / "r1" / name, tmp_path / "r2" / name)
    j1, j2 = ([{k: v for k, v in j.items() if k != "time"} for j in map(json.loads, (tmp_path / r / "iter-000" /
               "judgements.jsonl").open())] for r in ("r1", "r2"))
    assert [j["accepted"] for j in j1] == [j["accepted"] for j in j2]
    assert [j["score"] for j in j1] == pytest.approx([j["score"] for j in j2], abs=1e-3)


# batches that leave a process an empty share (fine-tuning's batch of 1), micro-batches of unequal
# count (5 items: shares of 3 and 2, in parts of 2), evaluation during training, and images shared
# by several items (the prefill one process would read once): each must keep FSDP's processes in step
LOCKSTEP = ["--set", "warmup.batch_size=5", "--set", "warmup.micro_batch=2", "--set", "warmup.eval_every=2",
            "--set", "warmup.items_per_image=2", "--set", "finetune.batch_size=1"]


def _one_against_launched(tmp_path, recipe, config: str, sets: list[str]) -> tuple[Path, Path, str]:
    """The loop in one process, and launched with a shipped accelerate config on two CPU processes;
    the two run folders and what the launch printed."""
    one = _launch([sys.executable, "-m", "illume_rm.cli", "iterate", str(recipe), "--run", str(tmp_path / "one"), *sets],
                  {**os.environ, "ILLUME_RM_CACHE": str(tmp_path / "cache1")}, 1)
    assert one.returncode == 0, one.stderr[-3000:]
    accelerate = Path(sys.executable).parent / "accelerate"
    r = _launch([str(accelerate), "launch", "--config_file", str(Path(__file__).parents[1] / "recipes" / "accelerate" /
                                                                   config), "--num_processes", "2", "-m",
                 "illume_rm.cli", "iterate", str(recipe), "--run", str(tmp_path / "two"), *sets],
                {**os.environ, "ILLUME_RM_CACHE": str(tmp_path / "cache2")}, 1)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp_path / "one", tmp_path / "two", r.stdout + r.stderr


def _same_loops(one: Path, two: Path) -> None:
    """The same warm-up losses (1e-4) and curve, samples, judgements and adapters (1e-5)."""
    from safetensors.torch import load_file

    a, b = _warmup_report(one), _warmup_report(two)
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-4)
    assert [c["step"] for c in b["curve"]] == [0, 2, 3] and a["curve"] == b["curve"]
    for name in ("base/val_candidates.jsonl", "iter-000/candidates.jsonl", "iter-001/candidates.jsonl",
                 "iter-001/val_candidates.jsonl"):
        _same_records(one / name, two / name)
    for name in ("iter-000/judgements.jsonl", "iter-001/judgements.jsonl"):
        strip = [{k: v for k, v in j.items() if k != "time"} for j in map(json.loads, (one / name).open())]
        assert strip == [{k: v for k, v in j.items() if k != "time"} for j in map(json.loads, (two / name).open())]
    for it in ("iter-000", "iter-001"):
        wa, wb = (load_file(r / it / "adapter" / "adapter_model.safetensors") for r in (one, two))
        assert wa.keys() == wb.keys() and wa
        assert all((wa[k] - wb[k]).abs().max() < 1e-5 for k in wa)


def test_the_shipped_fsdp_config_trains_sharded_to_the_one_process_records(runs, tmp_path):
    """`accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 2 -m illume_rm.cli
    iterate ...` shards the layers while they train (each process holds half of them) and writes the
    records one process writes."""
    one, two, said = _one_against_launched(tmp_path, runs["recipe"], "fsdp.yaml", LOCKSTEP)
    for stage in ("warm-up", "fine-tuning (illume)"):
        line = next(x for x in said.splitlines() if x.startswith(f"{stage}: FSDP shards"))
        whole, held = (int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:parameters|of them)", line))
        assert held == whole // 2, line
    _same_loops(one, two)


def test_the_shipped_deepspeed_zero2_config_trains_to_the_one_process_records(runs, tmp_path):
    """`accelerate launch --config_file recipes/accelerate/deepspeed-zero2.yaml --num_processes 2 ...`:
    DeepSpeed's ZeRO-2 engine reduces, clips and steps, and the loop writes the one-process records
    (the lockstep cases but micro-batches, which ZeRO refuses)."""
    sets = [a for a in LOCKSTEP if a != "warmup.micro_batch=2"]
    sets = [a for i, a in enumerate(sets) if not (a == "--set" and sets[i + 1] == "--set")]
    one, two, said = _one_against_launched(tmp_path, runs["recipe"], "deepspeed-zero2.yaml", sets)
    assert "warm-up: DeepSpeed ZeRO stage 2 over 2 processes" in said
    assert "fine-tuning (illume): DeepSpeed ZeRO stage 2 over 2 processes" in said
    _same_loops(one, two)


@pytest.mark.parametrize("env, says", [
    ({"FSDP_VERSION": "1"}, "FSDP version 1 is not used here"),
    ({"FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}, "fsdp_offload_params: true is not supported"),
    ({"FSDP_VERSION": "2", "FSDP_TRANSFORMER_CLS_TO_WRAP": "NoSuchLayer"}, "the model has no NoSuchLayer to shard"),
])
def test_fsdp_options_not_honoured_are_refused(runs, tmp_path, env, says):
    """One line, exit status 2 from every process, no run folder (the layer class is checked where
    the first training starts, before the run folder is written)."""
    r = _launch([sys.executable, "-m", "illume_rm.cli", "iterate", str(runs["recipe"]), "--run", str(tmp_path / "run")],
                {**os.environ, "ILLUME_RM_CACHE": str(tmp_path / "cache"), "ACCELERATE_USE_FSDP": "true", **env},
                2)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.count("illume-rm: error:") == 1 and says in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("env, says", [
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "ZeRO stage 3 is not used here"),
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu"},
     "offload_optimizer_device: cpu is not supported"),
    ({"ACCELERATE_DEEPSPEED_CONFIG_FILE": "ds.json"}, "a DeepSpeed config file (deepspeed_config_file) is not read"),
    ({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"}, "gradient_accumulation_steps must be 1"),
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2", "MICRO": "1"}, "micro_batch 2 under DeepSpeed ZeRO"),
])
def test_deepspeed_options_not_honoured_are_refused(runs, tmp_path, env, says):
    """One line, exit status 2, no run folder (micro-batches where the first training starts)."""
    sets = ["--set", "warmup.micro_batch=2"] if env.pop("MICRO", None) else []
    r = _launch([sys.executable, "-m", "illume_rm.cli", "iterate", str(runs["recipe"]), "--run", str(tmp_path / "run"),
                 *sets], {**os.environ, "ILLUME_RM_CACHE": str(tmp_path / "cache"), "ACCELERATE_USE_DEEPSPEED": "true",
                          **env}, 2)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.count("illume-rm: error:") == 1 and says in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("family, layer", [("idefics3", "LlamaDecoderLayer"), ("qwen2_vl", "Qwen2VLDecoderLayer")])
def test_fsdp_shards_a_pretrained_family_s_layers_to_the_one_process_records(tmp_path, family, layer):
    """A pretrained VLM of another family (no warm-up): under FSDP its language model's decoder
    layers are sharded (not its vision tower's), and the loop writes what one process writes."""
    import families
    from safetensors.torch import load_file
    from test_loop import RECIPE as LOOP

    folder = getattr(families, f"tiny_{family}")(tmp_path / family)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(LOOP.format(base=folder).replace("max_iterations: 2", "max_iterations: 1"))
    runs = {}
    for n, env in ((1, {}), (2, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"})):
        r = _launch([sys.executable, "-m", "illume_rm.cli", "iterate", str(recipe), "--run", str(tmp_path / f"r{n}")],
                    {**os.environ, "ILLUME_RM_CACHE": str(tmp_path / f"cache{n}"), **env}, n)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[n] = r.stdout + r.stderr
    assert f"fine-tuning (illume): FSDP shards 2 layers ({layer};" in runs[2]
    for name in ("base/val_candidates.jsonl", "iter-000/candidates.jsonl", "iter-000/val_candidates.jsonl"):
        _same_records(tmp_path / "r1" / name, tmp_path / "r2" / name)
    wa, wb = (load_file(tmp_path / r / "iter-000" / "adapter" / "adapter_model.safetensors") for r in ("r1", "r2"))
    assert wa.keys() == wb.keys() and wa
    assert all((wa[k] - wb[k]).abs().max() < 1e-5 for k in wa)


@pytest.mark.parametrize("env, says", [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false"}, "FSDP shards 2 layers"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "1"}, "DeepSpeed ZeRO stage 1 over 2"),
])
def test_the_other_honoured_settings_give_the_one_process_loop(runs, tmp_path, env, says):
    """FSDP keeping each layer gathered from its forward to its backward (fsdp_reshard_after_forward:
    false), and ZeRO stage 1 (the optimiser state partitioned, not the gradients)."""
    r = _launch([sys.executable, "-m", "illume_rm.cli", "iterate", str(runs["recipe"]), "--run", str(tmp_path / "two")],
                {**os.environ, "ILLUME_RM_CACHE": str(tmp_path / "cache"), **env}, 2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"warm-up: {says}" in r.stdout + r.stderr
    assert _warmup_report(runs[1])["losses"] == pytest.approx(_warmup_report(tmp_path / "two")["losses"], rel=1e-4)
    for name in ("iter-000/candidates.jsonl", "iter-001/candidates.jsonl", "iter-001/val_candidates.jsonl"):
        _same_records(runs[1] / name, tmp_path / "two" / name)
