"""Does the loop's sampler draw what Hugging Face's ``generate`` draws?

The built-in VLM samples with its own decoding loop (`BuiltinVLM.sample_groups`: one prefill per
prompt, every temperature's samples decoded together from one KV cache, rows that have ended leaving
the batch, the top-k draw made among the k kept). The reference is the field's implementation:
``generate(do_sample=True, temperature=T, top_k=K, num_return_sequences=k)`` once per temperature
(`VLM.sample_groups`, the interface's default). Both sample iteration 0 of a recipe's loop (the same
questions, the gold answer in the prompt, the recipe's temperatures, k, top-k and length), for each
seed; the oracle judges every distinct rationale. Printed per seed and as mean ± standard error over
seeds, with the paired difference (the same questions at each seed): the oracle's acceptance, the
distinct rationales kept, their length in words, their log-probability under the model and, per
temperature, their ROUGE-L against the references (ILLUME's critic).

    .venv/bin/python diagnostics/sampler_draws.py recipes/shapes-critic.yaml --checkpoint WARMUP_DIR --seeds 0 1 2

The two draw from the same distribution if the code is right, with different random streams, so
the per-seed numbers differ; the mean difference over seeds should be within about two standard
errors of zero.
"""
from __future__ import annotations

import argparse
import math
import statistics

from illume_rm.checkpoints import base_vlm
from illume_rm.config import load_recipe
from illume_rm.data import load_examples
from illume_rm.evaluate.nlg import rouge_l
from illume_rm.sampling import pick_examples, sample_candidates
from illume_rm.selectors.oracle import oracle_accepts
from illume_rm.vlm.base import VLM


class GenerateSampler:
    """The VLM, sampling through ``generate`` (the interface's default ``sample_groups``)."""

    def __init__(self, vlm):
        self.vlm = vlm

    def sample_groups(self, *args, **kwargs):
        return VLM.sample_groups(self.vlm, *args, **kwargs)


def summary(cands, examples, temperatures) -> dict[str, float]:
    by_id = {e.id: e for e in examples}
    ok = [oracle_accepts(by_id[c.example_id], c.rationale, c.answer) for c in cands]
    out = {"oracle %": 100 * sum(ok) / len(cands), "distinct": len(cands),
           "words": statistics.mean(len(c.rationale.split()) for c in cands),
           "logprob": statistics.mean(c.logprob for c in cands)}
    for t in temperatures:  # ILLUME's critic: ROUGE-L against the references, by temperature
        at = [c for c in cands if c.temperature == t]
        out[f"ROUGE-L@{t:g}"] = statistics.mean(rouge_l(c.rationale, by_id[c.example_id].explanations) for c in at)
    return out


def mean_se(xs: list[float], signed: bool = False) -> str:
    m = f"{statistics.mean(xs):{'+' if signed else ''}.3f}"
    return f"{m} ± {statistics.stdev(xs) / math.sqrt(len(xs)):.3f}" if len(xs) > 1 else m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--checkpoint", required=True, help="the warm-up checkpoint the loop starts from")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override, as the CLI's --set (e.g. sampling.train_examples=32)")
    a = ap.parse_args(argv)
    r = load_recipe(a.recipe, a.overrides)
    vlm = base_vlm(r, a.checkpoint)
    train = load_examples(r.data, "train")
    samplers = {"sample_groups": vlm, "generate": GenerateSampler(vlm)}
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for seed in a.seeds:
        chosen = pick_examples(train, r.sampling.train_examples, seed)  # as the loop's iteration 0
        for name, sampler in samplers.items():
            rows[name, seed] = summary(sample_candidates(sampler, chosen, r.sampling, seed=seed), chosen,
                                       r.sampling.temperatures)
            print(f"seed {seed} {name:13s} " + "  ".join(f"{k} {v:.3f}" for k, v in rows[name, seed].items()),
                  flush=True)
    print(f"\n{len(a.seeds)} seeds: mean ± standard error")
    print(f"{'':16s}" + "".join(f"{k:>16s}" for k in rows[next(iter(rows))]))
    for name in samplers:
        print(f"{name:16s}" + "".join(f"{mean_se([rows[name, s][k] for s in a.seeds]):>16s}" for k in rows[name, a.seeds[0]]))
    print(f"{'difference':16s}" + "".join(
        f"{mean_se([rows['sample_groups', s][k] - rows['generate', s][k] for s in a.seeds], signed=True):>16s}"
        for k in rows["sample_groups", a.seeds[0]]))


if __name__ == "__main__":
    main()
