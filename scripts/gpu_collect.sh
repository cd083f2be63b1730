#!/usr/bin/env bash
# After a lent-GPU call of scripts/gpu_session.sh: keep its files, fold them into the local
# grid, refresh Table 1's results and map, and prepare .gpu/ for the next call.
#
# Usage: bash scripts/gpu_collect.sh FILES_AT [NAME]
#   FILES_AT  the folder the device reply's files were copied to (its files_at)
#   NAME      the session's folder under runs/grid-sessions (default: s<next number>)
# Environment: GRID (default runs/grid), RESULTS (default results/table1), VURN_DATA (the corpora),
#   STATE_MAX_MIB (default 8: part-way runs packed bigger than this are not put in RESULTS/state)
# Then read results/table1/ (git diff; state/ holds the runs left part-way, if any), update
# results/table1/README.md's sessions table and commit; the GPU tests' output (gpu_tests.txt, with BENCH=1 the benchmark too) is read by hand
# (the benchmark's numbers go to results/bench_trace_gpu.md).
set -euo pipefail
SRC=$1
GRID=${GRID:-runs/grid} RESULTS=${RESULTS:-results/table1} STATE_MAX_MIB=${STATE_MAX_MIB:-8}
[[ $STATE_MAX_MIB =~ ^[0-9]+$ ]] || { echo "gpu_collect: STATE_MAX_MIB must be a whole number of MiB, got $STATE_MAX_MIB" >&2; exit 1; }
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
: "${VURN_DATA:?set VURN_DATA to the folder holding the corpora (scoring needs the test splits)}"
mkdir -p runs/grid-sessions
NAME=${2:-s$(( $(find runs/grid-sessions -mindepth 1 -maxdepth 1 -type d | wc -l) + 1 ))}
DEST=runs/grid-sessions/$NAME
[ ! -e "$DEST" ] || { echo "gpu_collect: $DEST exists already: name the session (second argument)" >&2; exit 1; }
mkdir -p "$DEST" && cp "$SRC"/* "$DEST"/
echo "gpu_collect: the session's files are in $DEST"
grep -E '^\[|MPS|grid: .*(finished|stopped|failed|killed) after' "$DEST/device_log.txt" | tail -40 || true
if compgen -G "$DEST/*.tgz.part-*" > /dev/null; then
  "$PY" -m lab grid restore "$GRID" "$DEST"        # a run finished here is kept over an unfinished copy
  "$PY" -m lab grid collect "$GRID" --results "$RESULTS" --device cpu --data "$VURN_DATA" > /dev/null
  # refused (and the committed map kept) when the grid lacks the weights of models the map places
  "$PY" scripts/table1_map.py --grid "$GRID" --results "$RESULTS" --device cpu || echo "gpu_collect: map not redrawn"
  # runs/ is not in git: the runs left part-way reach the next checkout as $RESULTS/state (commit it),
  # unless they are too big for the repository (STATE_MAX_MIB, default 8: one run of row 512 is ~14 MiB);
  # then they stay in $GRID, which gpu_prepare.sh sends, and a fresh checkout starts them again
  rm -rf "$RESULTS/state"
  if "$PY" -c 'import sys; from pathlib import Path; from lab.grid import run_state
sys.exit(0 if any(run_state(p) == "resumable" for p in Path(sys.argv[1], "runs").iterdir()) else 1)' "$GRID"; then
    "$PY" -m lab grid pack "$GRID" "$RESULTS/state" --state-only > /dev/null
    bytes=$(du -sb "$RESULTS/state" | cut -f1)   # what git would store, not disk blocks
    if [ "$bytes" -gt $(( STATE_MAX_MIB * 1048576 )) ]; then
      rm -rf "$RESULTS/state"
      echo "gpu_collect: the runs left part-way take $(( bytes / 1048576 )) MiB packed, over STATE_MAX_MIB=$STATE_MAX_MIB: not put in $RESULTS/state; they stay in $GRID (and $DEST)"
    else
      echo "gpu_collect: the runs left part-way are packed in $RESULTS/state ($(( bytes / 1048576 )) MiB): commit it"
    fi
  fi
fi
bash scripts/gpu_prepare.sh "$GRID"
