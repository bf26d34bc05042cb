"""python -m pulse_jax.render --latents=FILE.npz --out=PATH [--weights=DIR] [--rows=kept]

Renders latents with a converted generator (default: the built-in DCGAN, as pulse_jax.run),
to compare pulse-jax with the reference (or NVIDIA's code) on the same weights, or to re-render
a saved search result (a run's OUTPUT_DIR/<stem>/latents.npz).

Latents npz keys (exactly one of dlatents, latent, z; the rendering: `pulse_jax.job.render`):
  dlatents   [B, L, D] W+ vectors fed to the synthesis network as they are, or
  latent     [B, l, D] the search's standard-normal variable (l = L, or 1 when tiled), mapped
             through the prior first (the Gaussian fit for StyleGAN; the DCGAN's z as is), or
  z          [B, z_dim] mapped through the model's mapping network (NVIDIA's G.mapping), with
             --truncation_psi / --truncation_cutoff (rows below the cutoff; default all) and,
             for a conditional model, --class_index (which also picks the class's prior for
             'latent');
  noise_<i>  [B, 1, r, r] the unit noise map of noise layer i (models with noise inputs). When
             the npz has noise maps (a run's latents.npz), layers without one are zero, as the
             search zeroed them; when it has none, --noise_mode decides: 'const' (default) the
             model's own constant maps (NVIDIA's noise_mode='const'; zeros for a model without
             them, e.g. StyleGAN v1), 'none' zeros (NVIDIA's noise_mode='none');
  kept, rank a run's latents.npz: the restarts of its hr_<k>.png, best first, and each row's
             rank. --rows=kept (the default) renders the kept rows in that order (so PATH_<k>.png
             is hr_<k>.png), --rows=all every row, --rows=3,0 the rows given.
Output: PNG images ((x + 1) / 2, clamped, one file per row: PATH, or PATH_<b>.png when B > 1),
or, when PATH ends in .npz, the raw float output under key 'image' [B, C, H, W], unclamped,
as the reference returns it.

Exit status: 0 when the images were written or on --help / -h / --helpfull, 1 when the latents
cannot be used, 2 on a bad flag, --weights that cannot be used or output files that exist
without --overwrite (as for pulse_jax.run).
"""
from __future__ import annotations

import sys

from absl import flags

from pulse_jax.job import options
from pulse_jax.job import render

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The entry point's flags (defined only when run as a script, so importing is side-effect
  free): --weights from the option registry (as pulse_jax.run's), the others its own."""
  options.define_flags(["weights"])
  flags.adopt_module_key_flags(options)
  flags.DEFINE_string("latents", None, "npz with 'dlatents' or 'latent' (+ optional noise_<i>); "
                      "e.g. a run's OUTPUT_DIR/<stem>/latents.npz.")
  flags.DEFINE_string("out", None, "Output .png path (PATH_<b>.png for several rows) or .npz.")
  flags.DEFINE_string("rows", "kept", "Rows to render: 'kept' (a run's saved outputs, best "
                      "first; every row when the npz has no 'kept'), 'all', or row indices "
                      "joined by ',' (e.g. '3,0').")
  flags.DEFINE_boolean("overwrite", False, "Replace existing output files.")
  flags.DEFINE_enum("noise_mode", "const", list(render.NOISE_MODES), "Noise when the npz has no "
                    "noise_<i> arrays: const (the model's own constant noise maps, NVIDIA's "
                    "noise_mode='const') or none (no noise).")
  flags.DEFINE_float("truncation_psi", 1.0, "With 'z': truncation towards the average w "
                     "(NVIDIA's truncation_psi; 1: none).")
  flags.DEFINE_integer("truncation_cutoff", None, "With 'z' and --truncation_psi: truncate "
                       "the W+ rows below this index only (NVIDIA's truncation_cutoff; "
                       "default: every row).", lower_bound=0)
  flags.DEFINE_integer("class_index", None, "A conditional model's class (0..classes - 1): "
                       "with 'z' fed to the mapping network as a one-hot label, with 'latent' "
                       "the class's prior (the --class_index of the run).", lower_bound=0)


def main(argv):
  from pulse_jax.runtime import compile_cache
  from pulse_jax.io.weights_dir import WeightsError
  from pulse_jax.io.cli import quiet_logging
  quiet_logging()
  compile_cache.enable()
  if len(argv) > 1:
    print(f"pulse_jax.render: error: unexpected arguments {' '.join(argv[1:])} (options are "
          "--name=value)", file=sys.stderr)
    return 2
  missing = [f"--{n}" for n in ("latents", "out") if not FLAGS[n].value]
  if missing:
    print(f"pulse_jax.render: error: {' and '.join(missing)} must be given.", file=sys.stderr)
    return 2
  try:
    render.parse_rows(FLAGS.rows)
  except ValueError as e:
    print(f"pulse_jax.render: error: {e}", file=sys.stderr)
    return 2
  try:
    for p in render.render_file(FLAGS.weights, FLAGS.latents, FLAGS.out, FLAGS.overwrite,
                                FLAGS.rows, noise_mode=FLAGS.noise_mode,
                                truncation_psi=FLAGS.truncation_psi,
                                truncation_cutoff=FLAGS.truncation_cutoff,
                                class_index=FLAGS.class_index):
      print(f"wrote {p}")
  except (WeightsError, FileExistsError) as e:  # --weights cannot be used, or --out exists
    print(f"pulse_jax.render: error: {e}", file=sys.stderr)  # without --overwrite: usage
    return 2                                                   # errors, as for run (status 2)
  except (ValueError, FileNotFoundError) as e:
    print(f"pulse_jax.render: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  from pulse_jax.io.cli import run_command
  run_command(main, define_flags, "pulse_jax.render")
