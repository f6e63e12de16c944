#!/usr/bin/env bash
# The full-size warm-up (and a longer demo-size one, for its learning curve) on a GPU
# machine that has PyTorch but no network and none of our other packages: how the
# README's GPU warm-up numbers were measured on this workplace's lent H100.
#
# Expects the shipped-weights packages as an xz tar split in parts, named in order by PARTS
# (e.g. PARTS="part-a part-b"), and wheels in .whl/ (transformers, gguf, regex at the
# versions pinned here). Everything it writes stays under the repository (or $OUT). With the packages installed the normal way
# (`make` does that), the same runs are just:
#   illume-rm warmup recipes/shapes-warmup-full.yaml --set warmup.eval_every=400
#   illume-rm warmup recipes/shapes-warmup.yaml --set warmup.steps=800 --set warmup.eval_every=100
# EXTRA (optional) is appended to each warmup command (used to dry-run this script on a CPU).
set -u -o pipefail
OUT=${OUT:-device-out}
PY=${PY:-python3}
SITE=${SITE:-$PWD/.device-site}
mkdir -p "$OUT" "$SITE"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20 PYTHONPATH="$SITE:$PWD/src" ILLUME_RM_CACHE=${ILLUME_RM_CACHE:-$PWD/.device-cache}
EXTRA=${EXTRA:-}

t0=$(date +%s)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" ${WHEELS:-.whl/*.whl} || exit 1
cat ${PARTS:?set PARTS to the shipped-weights tar parts, in order} | "$PY" -c "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall('$SITE')" || exit 1
echo "set-up took $(( $(date +%s) - t0 )) s"
"$PY" - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import torch, transformers, peft, huggingface_hub, tokenizers
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__,
      "hub", huggingface_hub.__version__, "tokenizers", tokenizers.__version__)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
EOF

warmup() {  # name, timeout, recipe and options
    local name=$1 limit=$2; shift 2
    local t=$(date +%s)
    timeout "$limit" "$PY" -c "from illume_rm.cli import cli; cli()" warmup "$@" $EXTRA 2>&1 \
        | tr '\r' '\n' | tee "$OUT/$name.log"
    echo "$name: exit ${PIPESTATUS[0]}, $(( $(date +%s) - t )) s wall" | tee -a "$OUT/$name.log"
    local newest
    newest=$(ls -td "$ILLUME_RM_CACHE"/warmup/*/ 2>/dev/null | head -1)
    [ -n "$newest" ] && [ -f "$newest/warmup.json" ] && cp "$newest/warmup.json" "$OUT/$name-warmup.json"
}
warmup full "${FULL_LIMIT:-330}" recipes/shapes-warmup-full.yaml --set warmup.eval_every=400
warmup demo800 "${DEMO_LIMIT:-150}" recipes/shapes-warmup.yaml --set warmup.steps=800 --set warmup.eval_every=100
echo "all done in $(( $(date +%s) - t0 )) s"
