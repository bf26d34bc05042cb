"""`--mask`: per-input known-pixel masks (white = known), used by the loss and the eps test.

A mask has the size of its input file (width x height as stored, after the EXIF orientation)
and is binary: a pixel is known iff its value is >= 0.5 (of white), so JPEG noise or
anti-aliased edges do not make soft weights. It is returned in the loss-mask format of
`pulse_jax.search.losses`: ``[1, h, w] float32`` in {0, 1}; the L2/L1 terms and the eps test are then
means over the known pixels only.

Files: an image in an accepted format (`pulse_jax.io.images`; colour is reduced with the
`--grayscale` luminance weights, transparency is composited on black, i.e. unknown), or a
``.npy`` 2-D real array (`load_mask`). Which file is an input's mask (``--mask`` a file or a
folder) is the job's matter: `pulse_jax.job.inputs.mask_files`. Every problem is a `MaskError`
naming the file, per input, so that a caller can skip only that input.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image

from pulse_jax.io import images as image_files
from pulse_jax.io import npy_files
from pulse_jax.forward.color import LUMA_WEIGHTS

THRESHOLD = 0.5


class MaskError(ValueError):
  """A mask that cannot be used for one input; the message names the file."""


def _wrong_size(path, w: int, h: int, size) -> MaskError:
  return MaskError(f"--mask {path}: is {w}x{h}, but its input is {size[0]}x{size[1]}; a mask "
                   "must have the size of its input (white = known).")


def _read(path: pathlib.Path, size: tuple[int, int] | None = None) -> np.ndarray:
  """[h, w] float64 values in [0, 1] (images) or as stored (.npy). With `size` (the input's
  (width, height)), a file of another size is refused from its header, before its pixels
  are read."""
  if path.suffix.lower() == ".npy":
    def check(header: npy_files.Header) -> None:
      shape = header.shape
      if len(shape) != 2:
        raise MaskError(f"--mask {path}: must be a 2-D array (h, w), got shape {shape}.")
      if size is not None and (shape[1], shape[0]) != tuple(size):
        raise _wrong_size(path, shape[1], shape[0], size)
      if math.prod(shape) > image_files.MAX_IMAGE_PIXELS:
        raise MaskError(f"--mask {path}: {shape[1]}x{shape[0]} is over the cap of "
                        f"{image_files.MAX_IMAGE_PIXELS:,} pixels.")
    try:
      a = npy_files.load_npy(path, check).astype(np.float64)
    except npy_files.NpyError as e:
      raise MaskError(f"--mask {e}") from None   # e names the file
    if not np.all(np.isfinite(a)):
      raise MaskError(f"--mask {path}: contains NaN or inf.")
    return a
  from pulse_jax.io.input_images import to_rgb   # numpy/Pillow only; the shared mode conversions
  try:
    if size is not None:   # the size from the header (nothing decoded yet); the EXIF
      with image_files.open_image(path) as im:   # orientation may swap the two sides
        w, h = im.size
      if sorted((w, h)) != sorted(size):
        raise _wrong_size(path, w, h, size)
    im = image_files.read_image(path)[0]
  except image_files.ImageFileError as e:
    raise MaskError(f"--mask {e}") from None   # e names the file
  rgb, _ = to_rgb(im, background="black")
  return np.tensordot(rgb.astype(np.float64) / 255.0, np.asarray(LUMA_WEIGHTS), axes=([-1], [0]))


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
  """Reads one mask file: ``[1, h, w] float32``, 1 where known (value >= 0.5), else 0.

  size: the input's ``(width, height)`` (as stored), checked when given (from the file's
  header first, so that a mask of another size is refused before it is decoded). Raises
  `MaskError` for a missing or unreadable file (a zip archive named .npy included), a wrong
  size, or a mask without a known pixel.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise MaskError(f"--mask {path}: no such file.")
  known = _read(path, size) >= THRESHOLD
  h, w = known.shape
  if size is not None and (w, h) != tuple(size):
    raise _wrong_size(path, w, h, size)
  if not known.any():
    raise MaskError(f"--mask {path}: no known pixel (nothing >= {THRESHOLD} of white); white "
                    "marks the pixels the search must match.")
  return known[None].astype(np.float32)


def fit_to_input(mask: np.ndarray, image, source: str = "--mask") -> tuple[np.ndarray, list[str]]:
  """A mask ``[1, h0, w0]`` at the input file's size -> the target's ``[1, h, w]`` loss mask.

  image: a `pulse_jax.io.input_images.InputImage`. Follows what `load_image` did: with --fit=resize the
  mask is resized the same way (nearest neighbour), with --fit=pad it is padded (the padding
  unknown); it is multiplied by the image's own padding mask. Returns (mask, notes); raises
  `MaskError` (naming `source`) for a wrong size or no known pixel left.
  """
  mask = np.asarray(mask, np.float32)
  w0, h0 = image.original_size
  if mask.shape != (1, h0, w0):
    raise MaskError(f"{source}: mask is {mask.shape[-1]}x{mask.shape[-2]}, but input "
                    f"{image.path} is {w0}x{h0}; a mask must have the size of its input.")
  side_h, side_w = image.pixels.shape[-2:]
  notes = []
  if image.resized_from is not None:
    im = Image.fromarray((mask[0] > 0).astype(np.uint8) * 255, "L")
    im = im.resize((side_w, side_h), Image.Resampling.NEAREST)
    mask = (np.asarray(im) > 127)[None].astype(np.float32)
    notes.append("mask resized with the input (nearest neighbour, --fit=resize)")
  elif image.padding is not None:
    left, top, _, _ = image.padding
    canvas = np.zeros((1, side_h, side_w), np.float32)
    canvas[:, top:top + h0, left:left + w0] = mask
    mask = canvas
  if image.mask is not None:
    mask = mask * np.asarray(image.mask, np.float32)
  known = int(mask.sum())
  if known == 0:
    raise MaskError(f"{source}: no known pixel left for input {image.path} after fitting it.")
  notes.append(f"mask {source}: {known} of {mask.size} pixels known; the loss and the eps test "
               "use only those")
  return mask, notes


def batch_masks(masks: Sequence[np.ndarray | None]) -> np.ndarray | None:
  """Per-input ``[1, h, w]`` masks (None: every pixel known) -> ``[B, 1, h, w]`` or None.

  None when no input has a mask; the loss-mask format of `pulse_jax.search.losses` and
  `pulse_jax.search.program.run_chunk`.
  """
  if all(m is None for m in masks):
    return None
  shape = next(np.shape(m) for m in masks if m is not None)
  return np.stack([np.ones(shape, np.float32) if m is None else np.asarray(m, np.float32)
                   for m in masks])
