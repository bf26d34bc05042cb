"""Regenerate the shipped sample inputs from two public-domain photos.

    pip install scikit-image matplotlib   # only for this script; not dependencies of pulse-jax
    python -m pulse_jax.samples.make_samples            # rewrite the PNGs
    python -m pulse_jax.samples.make_samples --check    # verify the shipped PNGs

The astronaut (scikit-image) gives astronaut_*.png; Grace Hopper (matplotlib's sample data,
read from the installed package's files, matplotlib is not imported) gives hopper_*.png
(``--hopper_photo=PATH`` reads that JPEG from elsewhere, e.g. unzipped from the wheel).

Recipe (see README.md beside this file):
  1. ``skimage.data.astronaut()`` (512x512 RGB, Eileen Collins, NASA, public domain).
  2. Crop the square box ``CROP_BOX`` (left, upper, right, lower) = (172, 61, 278, 167): a
     106x106 tight face crop with the eye centres at ~40% of the height and the mouth centre at
     ~75% (dlib's 68-point landmarks on the photo: eyes (203.2, 101.5) and (246.5, 104.2), mouth
     corners' midpoint (223.5, 140.0)).
  3. Resize to 64x64 with Pillow's LANCZOS filter -> ``astronaut_64x64_source.png``.
  4. Down-sample that 64x64 image (float NCHW in [0, 1]) with the project's own
     ``pulse_jax.forward.bicubic.downsample`` by factors 8 and 4, round to uint8 ->
     ``astronaut_8x8.png`` and ``astronaut_16x16.png``.

Grace Hopper, the same recipe (see README.md beside this file): matplotlib's
``mpl-data/sample_data/grace_hopper.jpg`` (512x600 RGB, US Navy photograph, public domain),
box ``HOPPER_CROP_BOX`` = (139, 90, 391, 342) (252x252; dlib's landmarks on the photo: eyes
(223.7, 192.3) and (305.3, 189.2), mouth corners' midpoint (266.5, 279.0)), LANCZOS to 64x64
-> ``hopper_64x64_source.png``, bicubic down-sampling by 8 and 16 -> ``hopper_8x8.png`` and
``hopper_4x4.png``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image

from pulse_jax.io.images import to_uint8

CROP_BOX = (172, 61, 278, 167)
HOPPER_CROP_BOX = (139, 90, 391, 342)
HR_SIZE = 64
LR_SIZES = (8, 16)
HOPPER_LR_SIZES = (8, 4)
HERE = pathlib.Path(__file__).resolve().parent


def load_astronaut() -> Image.Image:
  """The astronaut photo from scikit-image (imported lazily: a dev-only requirement)."""
  try:
    from skimage import data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit(
        "make_samples needs scikit-image for the source photo: pip install scikit-image") from e
  return Image.fromarray(data.astronaut()).convert("RGB")


def hopper_path() -> pathlib.Path:
  """matplotlib's sample photo grace_hopper.jpg, found without importing matplotlib."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.find_spec("matplotlib")
  if spec is None or not spec.submodule_search_locations:
    raise SystemExit("make_samples needs matplotlib's sample photo grace_hopper.jpg: "
                     "pip install matplotlib (or pass --hopper_photo=PATH)")
  path = (pathlib.Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "sample_data"
          / "grace_hopper.jpg")
  if not path.is_file():
    raise SystemExit(f"{path} is missing (pass --hopper_photo=PATH)")
  return path


def make_samples(photo: Image.Image, name: str = "astronaut", box=CROP_BOX,
                 sizes=LR_SIZES) -> dict[str, Image.Image]:
  """The sample images of one photo, by file name."""
  from pulse_jax.forward.bicubic import downsample  # pylint: disable=import-outside-toplevel

  hr = photo.crop(box).resize((HR_SIZE, HR_SIZE), Image.LANCZOS)
  out = {f"{name}_{HR_SIZE}x{HR_SIZE}_source.png": hr}
  x = np.asarray(hr, np.float32).transpose(2, 0, 1)[None] / 255.0  # [1, 3, H, W]
  for size in sizes:
    lr = np.asarray(downsample(x, HR_SIZE // size))[0].transpose(1, 2, 0)
    out[f"{name}_{size}x{size}.png"] = Image.fromarray(to_uint8(lr, dtype=np.float64), "RGB")
  return out


def all_samples(hopper_photo: str | None = None) -> dict[str, Image.Image]:
  """Every shipped sample image, by file name."""
  out = make_samples(load_astronaut())
  hopper = Image.open(hopper_photo or hopper_path()).convert("RGB")
  out.update(make_samples(hopper, "hopper", HOPPER_CROP_BOX, HOPPER_LR_SIZES))
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--check", action="store_true",
                 help="compare with the shipped files instead of writing them")
  p.add_argument("--out_dir", default=str(HERE))
  p.add_argument("--hopper_photo", default=None,
                 help="grace_hopper.jpg (default: the installed matplotlib's sample data)")
  args = p.parse_args(argv)
  out_dir = pathlib.Path(args.out_dir)
  bad = 0
  for name, img in all_samples(args.hopper_photo).items():
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
