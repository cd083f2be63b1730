#!/usr/bin/env bash
# One lent-GPU call: the trace's GPU tests (and with BENCH=1 its benchmark, issue 3), then the Table 1
# grid (issue 5) for whatever time is left. What the 2026-11-26 session ran by hand, as one script.
#
# Usage (device run, timeout_s 600, carry [".gpu/data", ".gpu/commit", ".gpu/grid-prev"]):
#   bash scripts/gpu_session.sh $OUT 575        # OUT, then wall seconds for everything
# What is left of the session's 15 device minutes after it (~350 s on 2026-11-27) fits a second call
# on the still-warm machine, which goes back ~30 s after a call, so make it at once, with the first
# call's state as the carry (same carry list, timeout_s about budget_left_s - 40):
#   rm -rf .gpu/grid-prev && mkdir .gpu/grid-prev && cp FILES_AT/grid-state.tgz.part-* .gpu/grid-prev/
#   TAIL=60 bash scripts/gpu_grid.sh .gpu/data $OUT 290
# and give_back; then gpu_collect.sh on each call's files, oldest first.
# Before it, here: VURN_DATA=... bash scripts/gpu_prepare.sh   (fills .gpu/ and checks the size)
# After it, here:  VURN_DATA=... bash scripts/gpu_collect.sh FILES_AT   (restore, collect, map, prepare)
# BENCH=1 also runs the trace benchmark (~45 s; measured 2026-11-27: results/bench_trace_gpu.md);
# the GPU tests of the trace (~20 s) always run first, into $OUT/gpu_tests.txt.
set -uo pipefail
OUT=$1 BUDGET=$2
START=$(date +%s)
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export VURN_DATA=$PWD/.gpu/data PYTHONUNBUFFERED=1 VURN_COMMIT=${VURN_COMMIT:-$(cat .gpu/commit 2>/dev/null || echo unknown)}
mkdir -p "$OUT"
T=$OUT/gpu_tests.txt
{ date -u; echo "commit $VURN_COMMIT"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  timeout 90 "$PY" -m pytest -q -p no:cacheprovider -s tests/test_trace.py -k "gpu or on_a_device"
  if [ "${BENCH:-0}" = 1 ]; then
    timeout 150 "$PY" bench/trace.py --device cuda --repeat 3 --sweep
    timeout 100 "$PY" bench/trace.py --device cuda --checkpoint war_and_peace_lstm --repeat 3
  fi; } > "$T" 2>&1
echo "tests$( [ "${BENCH:-0}" = 1 ] && echo ' and bench') took $(( $(date +%s) - START )) s" >> "$T"
grep -E "passed|failed|^ours|^device" "$T"
LEFT=$(( BUDGET - ($(date +%s) - START) ))
MAX_PARTS=6 bash scripts/gpu_grid.sh .gpu/data "$OUT" "$LEFT" "${PARALLEL:-4}"
