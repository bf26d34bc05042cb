"""Regenerate the shipped sample inputs from scikit-image's public-domain astronaut photo.

    pip install scikit-image   # only for this script; not a dependency of pulse-jax
    python -m pulse_jax.samples.make_samples            # rewrite the PNGs
    python -m pulse_jax.samples.make_samples --check    # verify the shipped PNGs

Recipe (see README.md beside this file):
  1. ``skimage.data.astronaut()`` (512x512 RGB, Eileen Collins, NASA, public domain).
  2. Crop the square box ``CROP_BOX`` (left, upper, right, lower) = (172, 61, 278, 167): a
     106x106 tight face crop with the eye centres at ~40% of the height and the mouth centre at
     ~75% (dlib's 68-point landmarks on the photo: eyes (203.2, 101.5) and (246.5, 104.2), mouth
     corners' midpoint (223.5, 140.0)).
  3. Resize to 64x64 with Pillow's LANCZOS filter -> ``astronaut_64x64_source.png``.
  4. Down-sample that 64x64 image (float NCHW in [0, 1]) with the project's own
     ``pulse_jax.bicubic.downsample`` by factors 8 and 4, round to uint8 ->
     ``astronaut_8x8.png`` and ``astronaut_16x16.png``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image

CROP_BOX = (172, 61, 278, 167)
HR_SIZE = 64
LR_SIZES = (8, 16)
HERE = pathlib.Path(__file__).resolve().parent


def load_astronaut() -> Image.Image:
  """The astronaut photo from scikit-image (imported lazily: a dev-only requirement)."""
  try:
    from skimage import data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit(
        "make_samples needs scikit-image for the source photo: pip install scikit-image") from e
  return Image.fromarray(data.astronaut()).convert("RGB")


def to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_samples(photo: Image.Image) -> dict[str, Image.Image]:
  """All sample images, by file name."""
  from pulse_jax.bicubic import downsample  # pylint: disable=import-outside-toplevel

  hr = photo.crop(CROP_BOX).resize((HR_SIZE, HR_SIZE), Image.LANCZOS)
  out = {f"astronaut_{HR_SIZE}x{HR_SIZE}_source.png": hr}
  x = np.asarray(hr, np.float32).transpose(2, 0, 1)[None] / 255.0  # [1, 3, H, W]
  for size in LR_SIZES:
    lr = np.asarray(downsample(x, HR_SIZE // size))[0].transpose(1, 2, 0)
    out[f"astronaut_{size}x{size}.png"] = Image.fromarray(to_uint8(lr), "RGB")
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--check", action="store_true",
                 help="compare with the shipped files instead of writing them")
  p.add_argument("--out_dir", default=str(HERE))
  args = p.parse_args(argv)
  out_dir = pathlib.Path(args.out_dir)
  bad = 0
  for name, img in make_samples(load_astronaut()).items():
    path = out_dir / name
    if args.check:
      old = np.asarray(Image.open(path).convert("RGB"), np.int16)
      diff = int(np.abs(old - np.asarray(img, np.int16)).max())
      print(f"{path}: max abs diff {diff}")
      bad += diff > 1  # allow a 1-level rounding tie across backends
    else:
      img.save(path, optimize=True)
      print(f"wrote {path} ({path.stat().st_size} bytes)")
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main())
