"""python -m weights_convert --source=FILE [--source=FILE ...] --out=DIR

Converts official StyleGAN weights (the PULSE reference's synthesis.pt / mapping.pt /
gaussian_fit.pt, or NVIDIA's karras2019stylegan-ffhq-1024x1024.pkl), NVIDIA's StyleGAN2 /
2-ADA / 3 network pickles (PyTorch, e.g. stylegan2-ffhq-1024x1024.pkl, or TensorFlow
StyleGAN2, e.g. stylegan2-ffhq-config-f.pkl; one network, --network), rosinality's
stylegan2-pytorch checkpoints (*.pt with g_ema) or the gan-face-generate DCGAN's weights.tar into a pulse-jax weights directory (orbax
checkpoint + metadata.json). The kind of each file is detected from its content.
No code from any file is run: pickles are read with an allow-list unpickler (the source code
NVIDIA's pickles embed is never executed; only the chosen network's tensors are read). No file can
make the conversion allocate much more than its own size: tensors that do not fit their
storage, sizes the file's bytes cannot back and compressed torch records are refused with an
error naming the file and the tensor (see weights_convert/readers/limits.py).

--out must be a new or empty directory, or (with --overwrite) converted weights; that is
checked before any file is read. Output: the detected kinds, the steps and the written
directory, without absl / jax / orbax INFO lines (--verbosity=0 shows them). Exit status: 0
when written, 1 when a file cannot be converted or --out is refused, 2 on a bad flag.
"""
from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("source", None, "A weights file; repeat for several (e.g. synthesis.pt, "
                          "mapping.pt and gaussian_fit.pt make one checkpoint).")
flags.DEFINE_string("out", None, "Output weights directory.")
flags.DEFINE_boolean("overwrite", False, "Replace an existing weights directory at --out.")
flags.DEFINE_integer("gaussian_fit_samples", 1_000_000,
                     "Samples for the Gaussian fit when a mapping network but no gaussian_fit.pt "
                     "is given (0: skip); per class for a conditional NVIDIA model.")
flags.DEFINE_integer("gaussian_fit_seed", 0, "Seed of the Gaussian fit's samples.")
flags.DEFINE_float("instance_norm_eps", None, "Override the instance-norm epsilon (default 1e-5, "
                   "the PULSE reference's; NVIDIA's TF code uses 1e-8).")
flags.DEFINE_string("network", "G_ema", "For NVIDIA network pickles and rosinality checkpoints: "
                    "the network to convert (G_ema, the one to sample from; or G).")
flags.DEFINE_integer("resolution", None, "Override the detected resolution (checked against the "
                     "tensors).")


MAX_MESSAGE = 2000  # characters of an error message printed (the rest is cut)


def _error(message) -> str:
  message = str(message)
  if len(message) > MAX_MESSAGE:
    message = message[:MAX_MESSAGE] + f" ... ({len(message) - MAX_MESSAGE:,} characters cut)"
  return f"weights_convert: error: {message}"


def main(argv):
  from pulse_jax.io.cli import quiet_logging
  from weights_convert.convert import convert_and_save
  quiet_logging()  # no absl / jax / orbax INFO lines around the converter's own (--verbosity=0)
  if len(argv) > 1:
    print(_error(f"unexpected arguments {' '.join(argv[1:])} (options are --name=value)"),
          file=sys.stderr)
    return 2
  overrides = {}
  if FLAGS.instance_norm_eps is not None:
    overrides["instance_norm_eps"] = FLAGS.instance_norm_eps
  if FLAGS.resolution is not None:
    overrides["resolution"] = FLAGS.resolution
  try:
    convert_and_save(FLAGS.source, FLAGS.out, overrides=overrides, overwrite=FLAGS.overwrite,
                     gaussian_fit_samples=FLAGS.gaussian_fit_samples,
                     gaussian_fit_seed=FLAGS.gaussian_fit_seed, network=FLAGS.network)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(_error(e), file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  from pulse_jax.io.cli import parse_flags
  flags.mark_flags_as_required(["source", "out"])
  app.run(lambda argv: sys.exit(main(argv)),
          flags_parser=lambda argv: parse_flags(argv, "weights_convert"))
