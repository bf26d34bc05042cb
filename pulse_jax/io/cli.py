"""The command-line contract shared by the entry points (`pulse_jax.run`, `pulse_jax.render`):
absl flag parsing with help on stdout and exit status 2 for a bad flag, and no INFO noise."""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

HELP_ARGS = {"-h": True, "-?": True, "-help": True, "--help": True, "-helpshort": True,
             "--helpshort": True, "-helpfull": False, "--helpfull": False}  # arg -> short help


def quiet_logging() -> None:
  """No absl / jax / orbax INFO lines (they drown the progress) unless --verbosity is given
  (e.g. --verbosity=0 shows them)."""
  import logging as py_logging
  from absl import flags, logging
  if flags.FLAGS["verbosity"].present:
    return
  logging.set_verbosity(logging.WARNING)
  for name in ("jax", "jax._src.xla_bridge", "orbax"):
    py_logging.getLogger(name).setLevel(py_logging.WARNING)


def parse_flags(argv: list[str], prog: str) -> list[str]:
  """absl flag parsing with this contract: -h, --help, --helpshort and --helpfull print the
  help on stdout and exit 0; a bad flag (unknown, malformed, out of bounds) prints absl's
  message, which names the flag, and exits 2."""
  from absl import app, flags
  options = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  for a in options:
    if a in HELP_ARGS:
      app.usage(shorthelp=HELP_ARGS[a], writeto_stdout=True)
      sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"{prog}: error: {e}\nPass --help for the options, --helpfull for every flag.",
          file=sys.stderr)
    sys.exit(2)


# After main returns, threads left running (an abandoned checkpoint save) may delay the
# exit by at most this many seconds; then the process ends with main's status.
EXIT_GRACE_S = 10.0


def exit_with(code: int, grace_s: float | None = None) -> None:
  """Ends the process with `code`, also when threads that are not daemons are still running
  (orbax's, after a failed or hung save): a daemon watchdog ends it with `code` if the normal
  shutdown (which waits for such threads) has not finished `grace_s` seconds later."""
  for f in (sys.stdout, sys.stderr):
    try:
      f.flush()
    except Exception:  # pylint: disable=broad-except
      pass
  _watchdog(code, EXIT_GRACE_S if grace_s is None else grace_s)
  sys.exit(code)


def _watchdog(code: int, grace_s: float) -> None:
  """Starts the exit watchdog of `exit_with` when threads that are not daemons run."""
  others = [t for t in threading.enumerate()
            if t is not threading.current_thread() and t.is_alive() and not t.daemon]
  if not others:
    return

  def watchdog():
    time.sleep(grace_s)
    try:
      sys.stderr.write(f"note: exiting although {len(others)} background thread(s) did not "
                       "finish (an abandoned checkpoint save)\n")
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(code)
  threading.Thread(target=watchdog, name="pulse_jax-exit-watchdog", daemon=True).start()


def _call(main: Callable[[list[str]], int], argv: list[str]) -> None:
  try:
    code = main(argv)
  except SystemExit:
    raise
  except BaseException:  # absl prints it and exits 1: the watchdog keeps that bounded
    _watchdog(1, EXIT_GRACE_S)
    raise
  exit_with(code)


def run_command(main: Callable[[list[str]], int], define: Callable[[], None],
                prog: str) -> None:
  """Defines the flags and runs `main(argv) -> exit status` as a command (`parse_flags`);
  the process ends with that status (`exit_with`)."""
  from absl import app
  define()
  app.run(lambda argv: _call(main, argv), flags_parser=lambda argv: parse_flags(argv, prog))
