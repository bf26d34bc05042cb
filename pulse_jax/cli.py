"""The command-line contract shared by the entry points (`pulse_jax.run`, `pulse_jax.render`):
absl flag parsing with help on stdout and exit status 2 for a bad flag, and no INFO noise."""
from __future__ import annotations

import sys
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


def run_command(main: Callable[[list[str]], int], define: Callable[[], None],
                prog: str) -> None:
  """Defines the flags and runs `main(argv) -> exit status` as a command (`parse_flags`)."""
  from absl import app
  define()
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=lambda argv: parse_flags(argv, prog))
