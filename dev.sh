#!/usr/bin/env bash
# Developer entry point.
#   ./dev.sh lab  [jupyterlab args...]   open JupyterLab on the tour notebook
#   ./dev.sh test [pytest args...]       run the whole test suite
# Both first set up .venv (Python >= 3.10) when needed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

setup() {
  if [[ ! -x .venv/bin/python ]]; then
    python3 -c 'import sys; assert sys.version_info >= (3, 10), "vurn needs Python >= 3.10"'
    echo "dev.sh: creating .venv with $(python3 --version)"
    python3 -m venv .venv
  fi
  # torch first, pinned to the release the tests were run with (pyproject alone says
  # torch>=2.4). Any torch already importable is kept: on Linux PyPI's build is the CUDA
  # one, so a CPU-only machine installs the CPU build first (see the README).
  if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    .venv/bin/pip install torch==2.13.0
  fi
  # Re-install only when pyproject.toml changed since the last install.
  if [[ ! .venv/.vurn-installed -nt pyproject.toml ]]; then
    .venv/bin/pip install -e '.[test]'
    touch .venv/.vurn-installed
  fi
  export VIRTUAL_ENV=$ROOT/.venv PATH=$ROOT/.venv/bin:$PATH
}

cmd=${1:-}
shift || true
case $cmd in
  lab)
    setup
    open=(notebooks/00_tour.ipynb)
    [[ -f ${open[0]} ]] || open=()  # until the tour exists, open the file browser
    [[ $EUID -eq 0 ]] && open+=(--allow-root)  # Jupyter refuses root without it
    exec python -m jupyterlab "${open[@]}" "$@"
    ;;
  test)
    setup
    # Browser tests drive Debian's Chromium (never `playwright install`: it downloads).
    if [[ ! -x /usr/bin/chromium && $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "dev.sh: installing Chromium for the browser tests: apt-get update && apt-get install -y chromium"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    fi
    if [[ -z ${VURN_DATA:-} && -d ../shared/data ]]; then
      export VURN_DATA=$(cd ../shared/data && pwd)
    fi
    export VURN_CHROMIUM=${VURN_CHROMIUM:-/usr/bin/chromium}
    exec python -m pytest "$@"
    ;;
  *)
    echo "usage: ./dev.sh lab|test [args...]" >&2
    exit 2
    ;;
esac
