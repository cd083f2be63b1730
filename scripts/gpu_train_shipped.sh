#!/usr/bin/env bash
# Train the shipped models (and the 64-row War and Peace LSTM) on a lent GPU machine.
# Usage: bash scripts/gpu_train_shipped.sh DATA_DIR OUT_DIR [TRAIN_SECONDS]
#   TINY=1 runs the same steps at toy size on the CPU, to check the script before a GPU run.
# Every run is resumable: `python -m lab train --run-dir runs/NAME --resume` continues it.
set -uo pipefail
DATA=$1 OUT=$2 BUDGET=${3:-360}
export PYTHONUNBUFFERED=1
LOG=$OUT/device_log.txt
DEV=cuda; EXTRA=(); BENCH=(--steps 20 --rounds 5)
if [ "${TINY:-0}" = 1 ]; then DEV=cpu; EXTRA=(--max-train-chars 30000 --epochs 1 --batch 10); BENCH=(--steps 1 --rounds 1); fi
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  echo "commit ${VURN_COMMIT:-unknown}"; } > "$LOG" 2>&1
# a smoke run first: fail in seconds, not minutes, if something is off
python3 -m lab train --corpus war_and_peace --data "$DATA" --width 32 --epochs 1 --max-train-chars 100000 \
  --device $DEV --run-dir /tmp/vurn-smoke --quiet >> "$LOG" 2>&1 || { echo "smoke run failed"; tail -30 "$LOG"; exit 3; }
[ "${RUNSET:-1}" = 1 ] && for layers in 1 2; do python3 bench/train_throughput.py --layers $layers --row 512 --device $DEV "${BENCH[@]}" >> "$LOG" 2>&1; done
(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$OUT/gpu_util.csv" 2>/dev/null &
 echo $! > /tmp/vurn-smi.pid)
mkdir -p runs
train() { local name=$1; shift
  python3 -m lab train --data "$DATA" --device $DEV --run-dir runs/$name --max-seconds "$BUDGET" --quiet \
    "$@" "${EXTRA[@]}" > runs/$name.log 2>&1 & }
if [ "${RUNSET:-1}" = 1 ]; then   # first session: dropout 0.1 / 0.25 on the 512 row, and the 64 row
  train wp-lstm2-512-d25 --corpus war_and_peace --kind lstm --layers 2 --row 512 --dropout 0.25
  train wp-lstm2-512-d10 --corpus war_and_peace --kind lstm --layers 2 --row 512 --dropout 0.1
  train lk-lstm2-512-d10 --corpus linux_kernel --kind lstm --layers 2 --row 512 --dropout 0.1
  train wp-lstm1-64-d0 --corpus war_and_peace --kind lstm --layers 1 --row 64
else                              # second: Linux overfit at 0.1, so more dropout on both
  train lk-lstm2-512-d30 --corpus linux_kernel --kind lstm --layers 2 --row 512 --dropout 0.3
  train lk-lstm2-512-d50 --corpus linux_kernel --kind lstm --layers 2 --row 512 --dropout 0.5
  train wp-lstm2-512-d50 --corpus war_and_peace --kind lstm --layers 2 --row 512 --dropout 0.5
fi
wait $(jobs -p | grep -v "$(cat /tmp/vurn-smi.pid)") 2>/dev/null; wait
kill "$(cat /tmp/vurn-smi.pid)" 2>/dev/null
{ date -u; for f in runs/*.log; do echo "== $f"; tail -c 1500 "$f"; done; } >> "$LOG"
tar czf - runs | split -b 15M - "$OUT/runs.tgz.part-"
ls -la "$OUT"
