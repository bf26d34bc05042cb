"""Stopping a run cleanly on SIGTERM / SIGINT (what schedulers, pre-emption and Ctrl-C send).

`handle_signals()` (installed by `python -m pulse_jax.run` only, for the length of the job;
the Python API installs nothing) turns the first SIGTERM or SIGINT into a request: `requested()`
then returns its signal number. The search checks it between chunks (no host sync inside the
compiled step loop): it saves a checkpoint of the running batch at the current step (with
--checkpoint_dir) and raises `loop.Stopped`; the job marks the inputs not done as
'interrupted', writes the summary and the gallery, and the command exits 128 + the signal
number (143 for SIGTERM, 130 for SIGINT). Running the same command again resumes.
A second signal ends the process at once with the same status. Multi-process runs: each
process checks its own request; send the signal to every process (schedulers do).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: int | None = None


def requested() -> int | None:
  """The signal number of a pending stop request, or None."""
  return _requested


def request(signum: int) -> None:
  """Asks the running job to stop as if `signum` had been received (tests, embedding code)."""
  global _requested
  _requested = int(signum)


def clear() -> None:
  global _requested
  _requested = None


def name(signum: int) -> str:
  try:
    return signal.Signals(signum).name
  except ValueError:
    return f"signal {signum}"


def exit_status(signum: int) -> int:
  """The shell's status for a process ended by `signum`: 128 + its number."""
  return 128 + int(signum)


def _handler(signum, frame) -> None:  # pylint: disable=unused-argument
  if _requested is not None:  # the second signal: stop now
    try:
      sys.stderr.write(f"\n{name(signum)} again: exiting now without saving\n")
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(exit_status(signum))
  request(signum)
  sys.stderr.write(f"\n{name(signum)} received: stopping after the current chunk (a checkpoint "
                   "is saved with --checkpoint_dir; send it again to exit at once)\n")
  sys.stderr.flush()


@contextlib.contextmanager
def handle_signals():
  """SIGTERM and SIGINT request a stop (see the module docstring) inside the block; the
  previous handlers are restored after it. Outside the main thread (where Python cannot set
  handlers) nothing is installed."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  clear()
  previous = {s: signal.getsignal(s) for s in SIGNALS}
  for s in SIGNALS:
    signal.signal(s, _handler)
  try:
    yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h if h is not None else signal.SIG_DFL)
