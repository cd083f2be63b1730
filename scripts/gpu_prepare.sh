#!/usr/bin/env bash
# Before a lent-GPU call: put in .gpu/ (git-ignored) what scripts/gpu_session.sh needs there,
# and check that the working tree that travels stays under the device's 64 MiB.
#
# Usage: bash scripts/gpu_prepare.sh [GRID]      (GRID: the local grid folder, default runs/grid)
#   .gpu/commit           the commit of the code (the device's copy has no usable .git)
#   .gpu/data/*.txt.xz    the corpora from $VURN_DATA, xz-compressed (2 MiB instead of 9)
#   .gpu/grid-prev/       the grid's state: every run's record, each unfinished run whole
#                         (empty when the committed results/table1/state holds the same bytes)
#                         (GRID missing: first rebuilt from the committed results/table1 and its state/)
# Then the device call: carry [".gpu/data", ".gpu/commit", ".gpu/grid-prev"], command
#   bash scripts/gpu_session.sh $OUT 565
set -euo pipefail
GRID=${1:-runs/grid}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
: "${VURN_DATA:?set VURN_DATA to the folder holding war_and_peace.txt and linux_kernel.txt}"
mkdir -p .gpu/data
# the same rule as lab.checkpoint.code_commit: edits to tracked files, or new code files, make it +dirty
if [ -z "$(git status --porcelain --untracked-files=no)" ] && [ -z "$(git ls-files --others --exclude-standard -- lab widgets scripts bench)" ]; then
  git rev-parse HEAD > .gpu/commit
else
  echo "$(git rev-parse HEAD)+dirty" > .gpu/commit
  echo "gpu_prepare: uncommitted changes travel too: .gpu/commit says $(cat .gpu/commit)"
fi
for name in war_and_peace linux_kernel; do
  [ -s ".gpu/data/$name.txt.xz" ] || xz -9 -c "$VURN_DATA/$name.txt" > ".gpu/data/$name.txt.xz"
  rm -f ".gpu/data/$name.txt"
done
if [ ! -d "$GRID/runs" ]; then
  # a checkout without the grid folder (runs/ is git-ignored): rebuild its record from the committed
  # table, and the part-way runs from the committed state, so the device skips what has finished
  STATE=(); compgen -G "results/table1/state/*.tgz.part-*" > /dev/null && STATE=(results/table1/state)
  echo "gpu_prepare: no $GRID: restoring it from results/table1 ${STATE[*]}"
  "$PY" -m lab grid restore "$GRID" results/table1 "${STATE[@]}" > /dev/null
fi
if [ -d "$GRID/runs" ]; then
  rm -rf .gpu/grid-prev /tmp/vurn-gpu-pack && mkdir -p .gpu/grid-prev
  "$PY" -m lab grid pack "$GRID" /tmp/vurn-gpu-pack --state-only > /dev/null
  # the committed results/table1/state travels with the tree: when it is this very state (packs of
  # the same files are the same bytes), it is not sent a second time; gpu_grid.sh restores from it
  same=1
  for f in /tmp/vurn-gpu-pack/grid-state.tgz.part-* results/table1/state/grid-state.tgz.part-*; do
    [ -f "results/table1/state/${f##*/}" ] && [ -f "/tmp/vurn-gpu-pack/${f##*/}" ] \
      && cmp -s "results/table1/state/${f##*/}" "/tmp/vurn-gpu-pack/${f##*/}" || same=0
  done
  if [ "$same" = 1 ]; then
    echo "gpu_prepare: results/table1/state is the grid's state: it travels in the tree, not in .gpu/grid-prev"
  else
    mv /tmp/vurn-gpu-pack/grid-state.tgz.part-* .gpu/grid-prev/
  fi
  rm -rf /tmp/vurn-gpu-pack
fi
# what the device call sends: tracked and untracked-not-ignored files, and the carried paths
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
carried=$(du -sb .gpu/data .gpu/commit .gpu/grid-prev 2>/dev/null | awk '{s+=$1} END {print s+0}')
total=$(( (tree + carried) / 1048576 ))
echo "gpu_prepare: commit $(cut -c1-10 .gpu/commit); tree $(( tree / 1048576 )) MiB + carried $(( carried / 1048576 )) MiB = $total MiB of 64"
[ "$total" -lt 60 ] || { echo "gpu_prepare: over 60 MiB: the device refuses more than 64 MiB; lower --carry-mib" >&2; exit 1; }
