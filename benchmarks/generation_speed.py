"""The built-in VLM's generation paths against their baselines, interleaved in one run, same model,
prompts and lengths:

1. greedy generation with each distinct image read once (`generate_scored`: one prefill per image,
   its KV cache shared by the prompts about it) against the language model's `generate` on
   left-padded prompts (`_generate_hf`: every prompt reads its image), for the val questions (3 an
   image, as evaluation asks them) and the warm-up's grounding questions (about 12 an image);
   and greedy rationales (the evaluation's second call, up to 24 new tokens);
2. the sampler (16 questions x 4 samples, up to 24 new tokens): Llama's eager attention with every
   row decoded to the last step (as before), grouped eager attention (no copy of the keys and
   values per query head), and grouped with rows that have ended leaving the batch (the default);
   training steps (loss and backward, 16 items; fp32 as fine-tuning runs, bf16 autocast as the warm-up
   runs) with Llama's eager attention and with the grouped products forced with gradients on
   (registered here as "grouped, with gradients");
3. the sampler's top-k draw among the k kept against a draw over the whole vocabulary with the
   rest masked (the same distribution), on a batch of real next-token logits.

    .venv/bin/python benchmarks/generation_speed.py [--checkpoint DIR] [--rounds 2]

Each pair alternates within a round, so a machine that slows down slows both. Also counts the
greedy texts both sides agree on (they compute the same thing; float summation order may differ).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from illume_rm.data import DataConfig, load_examples
from illume_rm.data.shapes import ShapesConfig
from illume_rm.evaluate.controls import grounding_items
from illume_rm.sampling import rationale_prompt
from illume_rm.train.steps import autocast
from illume_rm.vlm import load_vlm
from illume_rm.vlm.base import ANSWER_TEMPLATE, answer_prompt
from illume_rm.vlm.modeling import GROUPED_EAGER, grouped_attention_products
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.modeling_utils import AttentionInterface

GROUPED_WITH_GRADIENTS = "grouped, with gradients"
AttentionInterface.register(GROUPED_WITH_GRADIENTS, grouped_attention_products)
AttentionMaskInterface.register(GROUPED_WITH_GRADIENTS, eager_mask)


def batched(fn, items, size, max_new_tokens):
    return [row for s in range(0, len(items), size) for row in fn(items[s:s + size], max_new_tokens)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="builtin")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--questions", type=int, default=96, help="val questions answered (3 an image)")
    args = ap.parse_args()
    torch.manual_seed(0)
    vlm = load_vlm(args.checkpoint)
    lm = vlm.model.language_model
    data = DataConfig(shapes=ShapesConfig(train=40, val=max(1, args.questions // 3), test=1))
    val, train = load_examples(data, "val")[: args.questions], load_examples(data, "train")
    vlm.features.get(list(dict.fromkeys(e.image for e in val + train)))
    answers = [(e.image, answer_prompt(e), None) for e in val]
    explained = [(e.image, rationale_prompt(e, e.answer), None) for e in val]
    grounding = [(img, ANSWER_TEMPLATE.format(question=q), None) for img, q, _, _ in grounding_items(val, 8)][:96]
    rationales = [(e.image, rationale_prompt(e, e.answer), None) for e in train[:16]]
    training = [(e.image, rationale_prompt(e, e.answer), " it is a small red circle on the left") for e in train[16:32]]

    lm.requires_grad_(False)  # as under LoRA: no gradient for the language model's weights, only through them

    def train_steps(precision: str, n: int = 3):
        vlm.model.train()
        for _ in range(n):
            vlm.model.zero_grad()
            with autocast(vlm, precision):
                loss = vlm.loss(training)
            loss.backward()
        vlm.model.eval()

    times: dict[str, list[float]] = {}
    agree: dict[str, tuple[int, int]] = {}
    with torch.no_grad():
        logits = vlm.model(**vlm._inputs(rationales * 4, "left", False)).logits[:, -1].float()
    gen = torch.Generator().manual_seed(0)

    def draw_all():
        for _ in range(24):
            scaled = logits / 0.9
            kth = scaled.topk(50, dim=-1).values[:, -1:]
            torch.multinomial(scaled.masked_fill(scaled < kth, float("-inf")).softmax(-1), 1, generator=gen)

    def draw_top_k():
        for _ in range(24):
            kept, index = (logits / 0.9).topk(50, dim=-1)
            index.gather(1, torch.multinomial(kept.softmax(-1), 1, generator=gen))

    lm.set_attn_implementation(GROUPED_EAGER)
    vlm.generate_scored(answers[:4], 2)  # one-time costs count for neither side
    for _ in range(args.rounds):
        for name, items, n, size in (("answers", answers, 6, 32), ("grounding", grounding, 8, 32),
                                     ("rationales", explained, 24, 16)):
            t_hf, hf = timed(lambda: batched(vlm._generate_hf, items, size, n))
            t_sh, sh = timed(lambda: batched(vlm.generate_scored, items, size, n))
            times.setdefault(f"{name}: generate", []).append(len(items) / t_hf)
            times.setdefault(f"{name}: each image read once", []).append(len(items) / t_sh)
            agree[name] = (sum(a[0][0] == b[0][0] for a, b in zip(hf, sh)), len(items))
        for name, impl, drop in (("eager, every row to the end", "eager", False),
                                 ("grouped, every row to the end", GROUPED_EAGER, False),
                                 ("grouped, ended rows leave", GROUPED_EAGER, True)):
            lm.set_attn_implementation(impl)
            vlm.drop_finished_rows = drop
            t, _ = timed(lambda: vlm.sample_groups(rationales, [0.3, 0.9], 2, max_new_tokens=24, top_k=50, seed=0))
            times.setdefault(f"sampler: {name}", []).append(64 / t)
        vlm.drop_finished_rows = True
        for precision in ("fp32", "bf16"):
            for impl in ("eager", GROUPED_WITH_GRADIENTS):
                lm.set_attn_implementation(impl)
                t, _ = timed(lambda: train_steps(precision))
                times.setdefault(f"training step, {precision}: {impl}", []).append(3 / t)
        lm.set_attn_implementation(GROUPED_EAGER)
        t, _ = timed(draw_all)
        times.setdefault("top-k draw: over the vocabulary", []).append(24 / t)
        t, _ = timed(draw_top_k)
        times.setdefault("top-k draw: among the k", []).append(24 / t)

    print(f"model: {args.checkpoint}; {len(answers)} val questions on {len({i for i, _, _ in answers})} images, "
          f"{len(grounding)} grounding questions on {len({i for i, _, _ in grounding})}; {args.rounds} rounds; "
          f"torch threads {torch.get_num_threads()}")
    print("| what | per second (mean of rounds) | unit |\n|---|---|---|")
    units = {"answers": "questions", "grounding": "questions", "rationales": "questions", "sampler": "rationales",
             "training step": "steps",
             "top-k draw": "draws of 64 rows"}
    for name, rates in times.items():
        print(f"| {name} | {statistics.mean(rates):.2f} | {units[name.split(':')[0].split(',')[0]]} |")
    pairs = [("answers: each image read once", "answers: generate"),
             ("grounding: each image read once", "grounding: generate"),
             ("rationales: each image read once", "rationales: generate"),
             ("sampler: grouped, every row to the end", "sampler: eager, every row to the end"),
             ("sampler: grouped, ended rows leave", "sampler: grouped, every row to the end"),
             ("sampler: grouped, ended rows leave", "sampler: eager, every row to the end"),
             (f"training step, fp32: {GROUPED_WITH_GRADIENTS}", "training step, fp32: eager"),
             (f"training step, bf16: {GROUPED_WITH_GRADIENTS}", "training step, bf16: eager"),
             ("top-k draw: among the k", "top-k draw: over the vocabulary")]
    for new, old in pairs:
        ratios = [a / b for a, b in zip(times[new], times[old])]
        print(f"{new} / {old}: {statistics.mean(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    for name, (same, n) in agree.items():
        print(f"{name}: identical greedy texts {same}/{n}")


if __name__ == "__main__":
    main()
