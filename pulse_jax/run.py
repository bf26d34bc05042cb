"""python -m pulse_jax.run --input=FILE_OR_DIR --output_dir=DIR [--weights=...] [options]

The PULSE job end to end: read the low-resolution inputs, search the generator's latent space
with many restarts per image (batched: --batch_size images of the same size per compiled
program), and write per input the best --duplicates HR images, their LR images, every
restart's latents (re-render with pulse_jax.render, or continue with --init) and a JSON report;
then print and write the run summary (OUTPUT_DIR/summary.json). See docs/run.md.

With no --weights the built-in 64x64 DCGAN face model is used; with no --input the shipped
samples (pulse_jax/samples/astronaut_8x8.png and hopper_4x4.png).

Run the same command again after an interruption: inputs whose outputs are complete are kept,
the others are searched again (from their newest checkpoint with --checkpoint_dir).

Exit status: 0 when every input was searched and saved (within eps or not: see the reports),
or on --help / -h / --helpfull; 1 when some input failed (unreadable, wrong size, failed
search); 2 on a usage or set-up error (a bad option, named in the message; weights missing;
outputs of another run without --overwrite; nothing to do); 128 + the signal (143 SIGTERM,
130 SIGINT) when stopped by one: the running batch is checkpointed (with --checkpoint_dir),
summary.json and the gallery list what is done, and the same command resumes
(`pulse_jax.runtime.stopping`).

Everything but the flags lives in importable functions: `run_job(RunOptions(...)) -> summary`
(`pulse_jax.job.pipeline`), and the flags are derived from the option registry (`pulse_jax.job.options`);
`pulse_jax.upsample` is the same job as a Python function.
"""
from __future__ import annotations

import importlib.util
import sys

from pulse_jax.io.cli import quiet_logging, run_command
from pulse_jax.job import options
from pulse_jax.job import result_files
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import is_writer, run_job
from pulse_jax.job.settings import RunOptions
from pulse_jax.runtime import stopping


def define_flags() -> None:
  """Every option of `pulse_jax.job.options` as a flag, listed by --help as this command's own."""
  from absl import flags
  options.define_flags()
  flags.adopt_module_key_flags(options)


def options_from_flags(FLAGS) -> RunOptions:
  """The job's options: the flags given (the others take the preset or the default)."""
  return RunOptions(**options.given_flags(FLAGS, [o.name for o in options.run_options()]))


def main(argv) -> int:
  from absl import flags
  FLAGS = flags.FLAGS
  quiet_logging()
  if len(argv) > 1:
    print(f"pulse_jax.run: error: unexpected arguments {' '.join(argv[1:])} (options are --name=value)",
          file=sys.stderr)
    return 2
  if importlib.util.find_spec("pulse_jax.runtime.distributed") is not None:
    from pulse_jax.runtime import distributed
    try:
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except (ValueError, RuntimeError) as e:
      print(f"pulse_jax.run: error: multi-process start-up failed: {e}", file=sys.stderr)
      return 2
  with stopping.handle_signals():  # SIGTERM / SIGINT: stop cleanly (restored after the job)
    try:
      summary = run_job(options_from_flags(FLAGS))
    except UsageError as e:
      print(f"pulse_jax.run: error: {e}", file=sys.stderr)
      return stopping.exit_status(stopping.requested()) if stopping.requested() else 2
  if is_writer():
    result_files.print_summary(summary)
  signum = stopping.requested()
  if signum is not None and summary.get("interrupted"):
    print(f"pulse_jax.run: stopped by {stopping.name(signum)}: {summary['interrupted']} "
          "input(s) interrupted; run the same command again to resume", file=sys.stderr)
  return summary["exit_code"]


if __name__ == "__main__":
  run_command(main, define_flags, "pulse_jax.run")
