#!/usr/bin/env bash
# One GPU session's measurements (experiments/README.md, "On a GPU"): installs the project
# without dependencies (the GPU machine has them and no network), then runs
# `python -m experiments.gpu_check` with the flags given here, within 8 minutes in all.
#   PULSE_REFERENCE_DIR  copy of github.com/adamian98/pulse (default .reference/pulse)
#   PYTHON               interpreter (default python3)
#   GPU_CHECK_LIMIT_S    hard limit of the whole script in seconds (default 480)
#   GPU_CHECK_NO_INSTALL 1: skip the pip install (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
limit=${GPU_CHECK_LIMIT_S:-480}
export PYTHONUNBUFFERED=1
if [[ "${GPU_CHECK_NO_INSTALL:-0}" != 1 ]]; then
  # --no-build-isolation: setuptools and wheel come from the environment (no network there)
  log=$(mktemp)
  if "$py" -m pip install -q --no-deps --no-build-isolation -e . >"$log" 2>&1; then
    echo "gpu_check.sh: installed $(pwd) (editable, no dependencies)" >&2
  else
    grep -m 3 "error:" "$log" >&2 || tail -n 3 "$log" >&2
    echo "gpu_check.sh: pip install -e . failed; using the checkout on PYTHONPATH" >&2
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  rm -f "$log"
fi
left=$((limit - SECONDS))
# The Python side keeps to its own --budget_s (420 s by default; less when the install was
# slow, leaving 45 s for the probe's start and the last writes); `timeout` is the last resort.
if ((left - 45 < 420)) && [[ " $* " != *" --budget_s"* ]]; then
  set -- "--budget_s=$((left > 90 ? left - 45 : 45))" "$@"
fi
exec timeout -k 10 "$left" "$py" -m experiments.gpu_check "$@"
