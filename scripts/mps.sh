# CUDA's Multi-Process Service for the grid's training processes; sourced by scripts/gpu_grid.sh.
#
# Without MPS the GPU time-slices between processes (one process's kernels at a time); with it
# their small, sequential RNN kernels can run side by side. A user-space daemon: it changes no
# setting of the GPU. mps_on starts it and checks that a client really goes through it (the
# probe's CUDA context starts the server; no server listed means the client went around it);
# on any failure it is off again and the processes time-share the GPU as before. mps_off is
# bounded: quitting waits for the clients, and a stuck one must not eat a short session.
# Needs: PY (a python with torch), LOG (a file), say (a function that logs one line).
# MPS_DIR (default /tmp/vurn-mps) holds the daemon's pipe and log folders.

mps_off() {
  if [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ]; then
    echo quit | timeout "${MPS_QUIT_S:-15}" nvidia-cuda-mps-control >> "$LOG" 2>&1 || say "MPS: quit did not answer in ${MPS_QUIT_S:-15} s"
    tail -5 "$CUDA_MPS_LOG_DIRECTORY/control.log" >> "$LOG" 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
}

mps_on() {
  if ! command -v nvidia-cuda-mps-control > /dev/null; then
    say "no nvidia-cuda-mps-control here: the processes time-share the GPU"
    return 1
  fi
  export CUDA_MPS_PIPE_DIRECTORY=${MPS_DIR:-/tmp/vurn-mps}/pipe CUDA_MPS_LOG_DIRECTORY=${MPS_DIR:-/tmp/vurn-mps}/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  trap mps_off EXIT
  local server
  if nvidia-cuda-mps-control -d >> "$LOG" 2>&1 && timeout -k 10 60 "$PY" -c \
      "import torch; x = torch.randn(512, 512, device='cuda'); assert torch.isfinite(x @ x).all()" >> "$LOG" 2>&1 \
      && server=$(echo get_server_list | timeout 10 nvidia-cuda-mps-control 2>> "$LOG") && [ -n "$server" ]; then
    say "MPS on (server $server, $CUDA_MPS_PIPE_DIRECTORY)"
    return 0
  fi
  mps_off
  say "MPS did not start: the processes time-share the GPU"
  return 1
}
