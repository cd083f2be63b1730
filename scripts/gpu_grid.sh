#!/usr/bin/env bash
# Train Table 1's grid (lab.grid, 72 models) on a lent GPU machine, resumably across short sessions.
#
# Usage: bash scripts/gpu_grid.sh DATA OUT BUDGET [PARALLEL]
#   DATA      folder holding war_and_peace.txt and linux_kernel.txt (or NAME.txt.xz)
#   OUT       where device_log.txt and the archive parts go (the device tool's $OUT)
#   BUDGET    wall seconds for this whole script; keep it under the command's limit (e.g. 540 of 600)
#   PARALLEL  training processes sharing the GPU (default 4); ROW512=N caps them while 512-row runs
#             start (default 4: each unfinished 512-row run is ~16 MB to carry to the next session, so
#             three fit the carry of 48 MiB; OVERCOMMIT=N more (default 1) start on condition that they
#             finish in this call, by their measured rate, or are dropped: `grid run --overcommit`).
#             Four at a time, a War and Peace run of row 512 took 113-291 s on an H100 (2026-11-27)
# Environment:
#   RESTORE   folder with the previous session's grid-*.tgz.part-* (default .gpu/grid-prev, or when that
#             is empty results/table1/state; neither: a fresh grid)
#   GRID      working grid folder (default runs/grid)     TAIL  seconds kept for scoring and packing (75)
#   VURN_COMMIT  commit of the code (default: .gpu/commit, else git)   GRID_ARGS  more `grid run` options
#   MAX_PARTS archive parts at most (default 7: device_log.txt is the 8th file; 6 if another file goes to OUT)
#   MPS=0     no CUDA Multi-Process Service (default: started when the tool is there, see step 2)
#   TINY=1    the same flow on the CPU at toy size (~1 minute): rows 64, LSTM and GRU, 1-2 layers, 2 short epochs
#
# A session: scripts/gpu_session.sh runs this after the trace benchmark; scripts/gpu_prepare.sh fills
# .gpu/ here before the call (commit, xz corpora, the state packed from the local runs/grid), and
# scripts/gpu_collect.sh FILES_AT folds the returned files into runs/grid after it. By hand:
#   device run, timeout_s 600, carry [".gpu/data", ".gpu/grid-prev", ".gpu/commit"]:
#     bash scripts/gpu_grid.sh .gpu/data $OUT 540 4
# Only grid-state parts need to travel to the next session; keep every session's files locally
# (runs/grid-sessions/NAME), then
#   python -m lab grid restore runs/grid runs/grid-sessions/NAME     (a run finished here is kept)
#   python -m lab grid collect runs/grid --results results/table1    (table1.csv, curves/, blocks)
set -uo pipefail
DATA=$1 OUT=$2 BUDGET=$3 PARALLEL=${4:-4}
START=$(date +%s)
GRID=${GRID:-runs/grid} TAIL=${TAIL:-75} ROW512=${ROW512:-4}
# gpu_prepare.sh leaves .gpu/grid-prev empty when the committed results/table1/state is the same state
RESTORE=${RESTORE:-$(compgen -G ".gpu/grid-prev/*.tgz.part-*" > /dev/null || ! compgen -G "results/table1/state/*.tgz.part-*" > /dev/null && echo .gpu/grid-prev || echo results/table1/state)}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONUNBUFFERED=1
export VURN_COMMIT=${VURN_COMMIT:-$(cat .gpu/commit 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)}
mkdir -p "$OUT" "$GRID"
LOG=$OUT/device_log.txt
# --retry-failed: a run that failed in an earlier session (a GPU fault under MPS takes its neighbours down
# too) gets another go; one that fails for good costs one quick failure a session
# --carry-mib: the unfinished runs' files travel to the next session inside its 64 MiB working tree
# (the repository ~9 MiB, the xz corpora 2 MiB): a new run starts only while they stay under CARRY_MIB,
# or, --overcommit, on condition that it finishes in this call (measured over its first 60 s of training)
DEV=cuda; RUN_ARGS=(--row-parallel 512=$ROW512 --retry-failed --carry-mib "${CARRY_MIB:-48}" --overcommit "${OVERCOMMIT:-1}")
SMOKE=(--width 32 --max-train-chars 100000)
if [ "${TINY:-0}" = 1 ]; then
  DEV=cpu; TAIL=${TINY_TAIL:-20}; COLLECT_S=${COLLECT_S:-90}
  RUN_ARGS=(--rows 64 --kinds lstm gru --layers 1 2 --epochs 2 --set max_train_chars=20000 --set batch=10
            --set width=16 --reserve 5 --min-seconds 2 --carry-mib 1.5 --overcommit 2 --probe-seconds 5)
  SMOKE=(--width 8 --max-train-chars 5000 --batch 10)
fi
say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
{ date -u; echo "commit $VURN_COMMIT"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$LOG" 2>&1

# 1. the previous session's state, if any (unfinished runs resume exactly; finished ones are skipped)
if compgen -G "$RESTORE/*.tgz.part-*" > /dev/null; then
  "$PY" -m lab grid restore "$GRID" "$RESTORE" >> "$LOG" 2>&1 || { say "restore failed"; tail -20 "$LOG"; exit 3; }
  say "restored $(ls "$RESTORE" | wc -l) parts from $RESTORE"
fi
# 2. CUDA's Multi-Process Service (scripts/mps.sh): the training processes' kernels side by side
# instead of taking turns. MPS=0 leaves it off; a failed start or a failed smoke run under it turns it off.
source "$(dirname "$0")/mps.sh"
if [ "$DEV" = cuda ] && [ "${MPS:-1}" = 1 ]; then
  mps_on || true
fi
# 3. a smoke run: fail in seconds, not minutes, if something is off
smoke() {
  rm -rf /tmp/vurn-grid-smoke
  timeout -k 10 120 "$PY" -m lab train --corpus war_and_peace --data "$DATA" --epochs 1 --device $DEV \
    --run-dir /tmp/vurn-grid-smoke --quiet "${SMOKE[@]}" >> "$LOG" 2>&1
}
if ! smoke; then
  [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] || { say "smoke run failed"; tail -30 "$LOG"; exit 3; }
  mps_off; say "smoke run failed under MPS: MPS off, once more"
  smoke || { say "smoke run failed"; tail -30 "$LOG"; exit 3; }
fi
say "smoke run ok"
# 4. train until TAIL seconds before the budget's end
TRAIN=$(( BUDGET - ($(date +%s) - START) - TAIL ))
if [ "$TRAIN" -gt 0 ]; then
  say "grid run: $TRAIN s, $PARALLEL at a time"
  # shellcheck disable=SC2086
  "$PY" -m lab grid run "$GRID" --data "$DATA" --device $DEV --parallel "$PARALLEL" --budget "$TRAIN" \
    "${RUN_ARGS[@]}" ${GRID_ARGS:-} > "$OUT/grid_run.txt" 2>&1
  say "grid run exit $?"; grep -E '^grid: ' "$OUT/grid_run.txt" | tail -40 | tee -a "$LOG" > /dev/null
  mps_off  # scoring and packing without it: a broken MPS server must not stop the state going home
  cat "$OUT/grid_run.txt" >> "$LOG"; rm -f "$OUT/grid_run.txt"
else
  say "no time left to train (budget $BUDGET s)"
fi
# 5. score every new best checkpoint here (test loss + bootstrap SE, cached in score.json), then the table
timeout -k 10 "${COLLECT_S:-$(( TAIL * 2 / 3 ))}" "$PY" -m lab grid collect "$GRID" --results "$GRID/results" --device $DEV \
  --data "$DATA" >> "$LOG" 2>&1 || say "collect failed or ran out of time (the runs are packed all the same)"
# 6. pack: MAX_PARTS parts at most (device_log.txt is one more file), 60 MiB together
"$PY" -m lab grid pack "$GRID" "$OUT" --max-parts "${MAX_PARTS:-7}" --max-mib 60 > "$OUT/pack.json" 2>&1 || say "pack failed"
cat "$OUT/pack.json" >> "$LOG"; rm -f "$OUT/pack.json"
say "done"
grep -E '^\s*(war_and_peace|linux_kernel)-' "$LOG" | tail -80
ls -la "$OUT"
tail -c 1500 "$LOG"
