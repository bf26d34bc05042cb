"""python -m pulse_jax.evaluate --hr=DIR_OR_FILES --factor=F --output_dir=DIR [--configs=...]
    [every option of pulse_jax.run]

The quality harness: each ground-truth HR image (square; resized to the generator's size with
LANCZOS when it is not) is degraded by the forward model (factor F and the forward flags) into
an 8-bit LR input, searched with each configuration, and measured against the ground truth
beside nearest and bicubic up-sampling: OUTPUT_DIR/evaluation.json (every figure, per image
and in aggregate), evaluation.md (the table) and index.html (table, charts, pictures). See
docs/quality.md, "The harness".

--configs=NAME:flag=value;flag=value,NAME2:... runs several configurations in one go (e.g.
--configs=short:steps=50,long:steps=400), each into OUTPUT_DIR/NAME/; the other flags are
common to all. Without it: one configuration, 'pulse'.

Exit status: 0 when every configuration searched every input; 1 when an input failed (an
unreadable or non-square ground truth, named, before anything is searched; or a failed
search); 2 on a usage error (a bad flag or configuration, named); 128 + the signal when
stopped by one.

Everything but the flags lives in `pulse_jax.job.evaluation.evaluate`; the run's flags are the
option registry's (`pulse_jax.job.options`), and `pulse_jax.evaluate` is the same in Python.
"""
from __future__ import annotations

import sys

from pulse_jax.io.cli import quiet_logging, run_command
from pulse_jax.io.input_images import InputError
from pulse_jax.job import options
from pulse_jax.job.errors import UsageError
from pulse_jax.job.settings import RunOptions
from pulse_jax.runtime import stopping

PROG = "pulse_jax.evaluate"
# The registry's options this command takes: all but --input (the harness makes the inputs).
NAMES = [o.name for o in options.OPTIONS.values() if o.name != "input" and o.scope != "cli"]


def define_flags() -> None:
  """--hr, --factor, --configs and the registry's options (`NAMES`)."""
  from absl import flags
  flags.DEFINE_string("hr", None, "Ground-truth HR images: a folder, a file, or comma-separated "
                      "files and folders. Each must be square; resized (LANCZOS) to the "
                      "generator's size when it is not.")
  flags.DEFINE_integer("factor", None, "Down-sampling factor of the forward model: the LR "
                       "inputs are generator size / factor px.", lower_bound=1)
  flags.DEFINE_string("configs", "", "Configurations to compare, "
                      "'name:flag=value;flag=value,name2:...' (e.g. 'short:steps=50,"
                      "long:steps=400'); each runs into OUTPUT_DIR/name/. Default: one, 'pulse'.")
  options.define_flags(NAMES)
  flags.adopt_module_key_flags(options)


def main(argv) -> int:
  from absl import flags
  from pulse_jax.job import evaluation
  FLAGS = flags.FLAGS
  quiet_logging()
  if len(argv) > 1:
    print(f"{PROG}: error: unexpected arguments {' '.join(argv[1:])} (options are --name=value)",
          file=sys.stderr)
    return 2
  missing = [f"--{n}" for n in ("hr", "factor", "output_dir") if not FLAGS[n].present]
  if missing:
    print(f"{PROG}: error: {', '.join(missing)}: required", file=sys.stderr)
    return 2
  with stopping.handle_signals():
    try:
      result = evaluation.evaluate(
          FLAGS.hr, FLAGS.factor, RunOptions(**options.given_flags(FLAGS, NAMES)), FLAGS.configs)
    except UsageError as e:
      print(f"{PROG}: error: {e}", file=sys.stderr)
      return stopping.exit_status(stopping.requested()) if stopping.requested() else 2
    except InputError as e:
      print(f"{PROG}: error: {e}", file=sys.stderr)
      return 1
  signum = stopping.requested()
  if signum is not None:
    return stopping.exit_status(signum)
  return result["exit_code"]


if __name__ == "__main__":
  run_command(main, define_flags, PROG)
