"""The least time a warm-up's training can take on this CPU: its arithmetic (the multiplies of every
step the recipe draws, counted from the real batches) at the rate torch reaches here on the model's
own matrix shapes, against what a run took (``warmup.json``'s ``train_seconds``) as a ratio.

    .venv/bin/python benchmarks/warmup_floor.py [--recipe recipes/shapes-warmup.yaml] [--set KEY=VALUE ...]
        [--warmup-json RUN/warmup.json] [--dtype fp32|bf16]

What is counted, a step: the language model's linear layers on every position of the padded batch
(forward, and the gradient to their input: the base weights are frozen under LoRA, but the image
tokens at the start of each row need the gradient through every layer), the LoRA adapters on every
position (forward, input gradient and their own weight gradient), attention's two products per head
(forward and backward), and the LM head on the labelled positions only (as ``_labelled_loss`` runs
it). Not counted: the projector and its per-cell loss (a 1,280-wide linear over 9 cells a row), the
norms, activations, softmax and the optimizer, so the floor is below what any implementation of
these steps could reach. The rate is timed here, on matrices of the sizes one step multiplies
(the mean padded positions of a step by the layer's widths, both directions), after an untimed call.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.errors import UserError, run_script
from illume_rm.train.lora import LORA_TARGETS
from illume_rm.train.warmup import warmup_draw, warmup_items


def layer_shapes(cfg) -> list[tuple[str, int, int]]:
    """(name, in, out) of one decoder layer's linear layers (a Llama-style layer)."""
    hd = cfg.hidden_size // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * hd
    h, inter = cfg.hidden_size, cfg.intermediate_size
    return [("q_proj", h, cfg.num_attention_heads * hd), ("k_proj", h, kv), ("v_proj", h, kv),
            ("o_proj", cfg.num_attention_heads * hd, h), ("gate_proj", h, inter), ("up_proj", h, inter),
            ("down_proj", inter, h)]


def step_flops(cfg, rows: int, width: int, labelled: int, lora_r: int) -> dict[str, float]:
    """Multiply-adds x 2 of one training step on ``rows`` x ``width`` padded positions."""
    tokens = rows * width
    shapes = layer_shapes(cfg)
    layers = cfg.num_hidden_layers
    hd = cfg.hidden_size // cfg.num_attention_heads
    base = sum(2 * i * o for _, i, o in shapes) * tokens * layers * 2  # forward + input gradient
    lora = sum(2 * (i * lora_r + lora_r * o) for n, i, o in shapes if n in LORA_TARGETS) * tokens * layers * 3
    attention = 2 * 2 * rows * width * width * hd * cfg.num_attention_heads * layers * 3
    head = 2 * labelled * cfg.hidden_size * cfg.vocab_size * 2
    return {"linear": base, "lora": lora, "attention": attention, "head": head}


def matmul_rate(m: int, shapes: list[tuple[int, int]], dtype: torch.dtype, repeats: int = 5) -> tuple[float, float, float]:
    """FLOP/s of ``torch.nn.functional.linear`` over the (in, out) shapes at m rows, forward and the
    input gradient's product (m x out by out x in): the median of ``repeats`` timings, and the
    slowest and fastest."""
    torch.manual_seed(0)
    mats = [(torch.randn(m, i, dtype=dtype), torch.randn(o, i, dtype=dtype), torch.randn(m, o, dtype=dtype))
            for i, o in shapes]
    flops = sum(2 * 2 * m * i * o for i, o in shapes)

    def once() -> None:
        for x, w, g in mats:
            torch.nn.functional.linear(x, w)
            g @ w

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times), flops / max(times), flops / min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/shapes-warmup.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override")
    ap.add_argument("--warmup-json", type=Path, help="a run's warmup.json: its train_seconds against the floor")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="the precision the rate is timed in")
    a = ap.parse_args()
    if a.warmup_json and not a.warmup_json.is_file():
        raise UserError(f"warmup_floor: --warmup-json {a.warmup_json}: no such file")
    recipe = load_recipe(a.recipe, a.set)
    if recipe.warmup.items_per_image > 1:
        raise UserError("warmup_floor: warmup.items_per_image > 1 reads each image's block once for several rows; this count "
                        "takes every row whole, so it would overstate such a recipe's arithmetic")
    train = load_examples(recipe.data, "train")
    vlm = base_vlm(recipe)
    cfg = vlm.model.language_model.config
    draw = warmup_draw(train, recipe.warmup, recipe.seed)
    _, captions, grounded = warmup_items(train, recipe.warmup.balance_grounding, recipe.seed)
    captions, grounded = set(captions), set(grounded)
    r = recipe.warmup.lora.r
    steps: dict[str, list[dict]] = defaultdict(list)
    for step in range(recipe.warmup.steps):
        items, _ = draw(step)
        batch = vlm.processor.build([p for _, p, _ in items], [img is not None for img, _, _ in items],
                                    [t or "" for _, _, t in items], padding_side="right")
        rows, width = batch["input_ids"].shape
        labelled = int((batch["labels"][:, 1:] != -100).sum())
        lengths = batch["attention_mask"].sum(1).tolist()
        kind = "caption" if items[0] in captions else "grounding" if items[0] in grounded else "answer-only"
        padded = step_flops(cfg, rows, width, labelled, r)
        unpadded = [step_flops(cfg, 1, n, 0, r) for n in lengths]
        steps[kind].append({"positions": rows * width, "real": sum(lengths), "flops": padded,
                            "unpadded": {c: sum(u[c] for u in unpadded) for c in ("linear", "lora", "attention")}
                            | {"head": padded["head"]}})
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    positions = round(statistics.mean(s["positions"] for k in steps.values() for s in k))
    labelled_mean = round(statistics.mean(s["flops"]["head"] for k in steps.values() for s in k)
                          / (4 * cfg.hidden_size * cfg.vocab_size))
    rate, rate_low, rate_high = matmul_rate(positions, [(i, o) for _, i, o in layer_shapes(cfg)], dtype)
    head_rate, head_low, head_high = matmul_rate(max(1, labelled_mean), [(cfg.hidden_size, cfg.vocab_size)], dtype)

    def seconds(flops: dict[str, float]) -> float:
        return (flops["linear"] + flops["lora"] + flops["attention"]) / rate + flops["head"] / head_rate

    print(f"{a.recipe} ({', '.join(a.set) or 'as shipped'}): {recipe.warmup.steps} steps of "
          f"{recipe.warmup.batch_size}; torch threads {torch.get_num_threads()}, {a.dtype} multiplies")
    print(f"matrix-multiply rate here (median of 5 timings, slowest-fastest): {rate / 1e9:.1f} GFLOP/s "
          f"({rate_low / 1e9:.1f}-{rate_high / 1e9:.1f}) on a decoder layer's shapes at {positions} positions, "
          f"{head_rate / 1e9:.1f} ({head_low / 1e9:.1f}-{head_high / 1e9:.1f}) on the LM head's at "
          f"{labelled_mean} labelled positions")
    print("| step kind | steps | padded positions a step | of them real | TFLOP a step | floor, s a step |\n"
          "|---|---|---|---|---|---|")
    floor = floor_unpadded = total = 0.0
    for name in ("caption", "grounding", "answer-only"):
        k = steps.get(name)
        if not k:
            continue
        pos = statistics.mean(s["positions"] for s in k)
        real = statistics.mean(s["real"] for s in k)
        fl = statistics.mean(sum(s["flops"].values()) for s in k)
        step_floor = [seconds(s["flops"]) for s in k]
        floor += sum(step_floor)
        floor_unpadded += sum(seconds(s["unpadded"]) for s in k)
        total += sum(sum(s["flops"].values()) for s in k)
        print(f"| {name} | {len(k)} | {pos:.0f} | {real / pos:.0%} | {fl / 1e12:.2f} | "
              f"{statistics.mean(step_floor):.1f} |")
    print(f"\nall steps: {total / 1e12:.1f} TFLOP; floor **{floor / 60:.1f} min** at these rates "
          f"({floor_unpadded / 60:.1f} min without the padding)")
    if a.warmup_json:
        took = json.loads(a.warmup_json.read_text())["train_seconds"]
        print(f"the run's training: {took / 60:.1f} min, **{took / floor:.2f}x** the floor "
              "(train_seconds: without the curve's evaluations, with the projector's pre-alignment, "
              "which the floor does not count)")


if __name__ == "__main__":
    run_script(main)
