"""Opening user image files safely: an allow-list of formats and a pixel cap, in one place.

Every entry point that reads a user's image (`pulse_jax.io.input_images` for `run`,
`pulse_jax.job.align` for photos) goes through `open_image` / `read_image`, so that:
  - only `ALLOWED_FORMATS` decoders are ever tried, whatever the file is called: an EPS or
    PostScript file named `face.png` never reaches Pillow's EPS plugin (Ghostscript), nor any
    other of Pillow's rarer decoders; a refused file gets an `ImageFileError` naming the file,
    the format its first bytes announce (checked without opening it) and the fix;
  - a header claiming more than `MAX_IMAGE_PIXELS` pixels is refused before any pixel is
    decoded (Pillow reads the size from the header; the pixels are decoded on `load()`).
`to_uint8` is the one conversion of float pixels to 8 bits (PNG files, PIL images).
`heat_map` draws a map of values ([H, W], e.g. a run's spread.png) with a fixed colour scale.
Nothing here imports JAX.
"""
from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np
from PIL import Image, ImageOps

# The only decoders tried. Everything else Pillow could read (EPS/PostScript via Ghostscript,
# PSD, ICO, PCX, TGA, FITS, ...) is refused: converting to PNG or JPEG is a one-line fix, and a
# smaller attack surface is worth more than the convenience.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
# Any header claiming more pixels is refused before decoding, for `run` and `align` alike.
# Search inputs are no larger than the generator (at most 1024 x 1024 for StyleGAN); photos to
# align come from cameras and phones (24-48 MP), so the cap is 8192 x 8192 = 67 MP (about 200 MB
# decoded as RGB), below Pillow's own bomb warning (89 MP). Larger photos must be down-scaled.
MAX_IMAGE_PIXELS = 8192 * 8192
EXIF_ORIENTATION = 0x0112
_CAP_NAME = "pulse_jax.io.images.MAX_IMAGE_PIXELS"
_PREFIX_BYTES = 16      # what Pillow's `accept` checks look at
# Formats Pillow cannot read (or must not be asked about), by their first bytes.
_MAGIC = ((b"%!PS", "EPS/PostScript"), (b"\xc5\xd0\xd3\xc6", "EPS/PostScript"),
          (b"%PDF", "PDF"))
_FIX = "convert it to PNG or JPEG first"


class ImageFileError(ValueError):
  """A user image file that cannot or must not be read; the message names the file."""


def accepted_formats() -> list[str]:
  """`ALLOWED_FORMATS` that this Pillow can open (WebP may be missing from a build)."""
  Image.init()
  return [f for f in ALLOWED_FORMATS if f in Image.OPEN]


def sniff_format(prefix: bytes) -> str | None:
  """The format `prefix` (a file's first bytes) announces, from magic numbers only, or None.

  Uses Pillow's `accept` checks (byte comparisons; no plugin opens anything) after a few magic
  numbers of formats Pillow must not or cannot decode.
  """
  for magic, name in _MAGIC:
    if prefix.startswith(magic):
      return name
  if prefix[4:8] == b"ftyp":
    return "HEIF/AVIF (ISO media)"
  Image.init()
  for fmt in Image.ID:
    accept = Image.OPEN[fmt][1]
    try:
      ok = accept and accept(prefix[:_PREFIX_BYTES])
    except Exception:  # pylint: disable=broad-except  # a too-short prefix, ...
      continue
    if ok and not isinstance(ok, str):   # a str: "known, but support not installed"
      return fmt
  return None


def _refusal(path: pathlib.Path, prefix: bytes) -> ImageFileError:
  fmt = sniff_format(prefix)
  only = f"only {', '.join(ALLOWED_FORMATS)} are read, whatever the file's name"
  if fmt in ALLOWED_FORMATS:   # the right magic number, but the header does not parse
    return ImageFileError(f"{path}: corrupt {fmt} image (its header cannot be read).")
  if fmt is None:
    return ImageFileError(f"{path}: not an image in an accepted format (unknown from its first "
                          f"bytes; {only}): {_FIX}.")
  return ImageFileError(f"{path}: refused: its first bytes say {fmt}, and {only} (other "
                        f"decoders are never tried): {_FIX}.")


def _too_big(path: pathlib.Path, size: tuple[int, int], cap: int) -> ImageFileError:
  w, h = size
  return ImageFileError(
      f"{path}: header claims {w}x{h} = {w * h:,} pixels, over the cap of {cap:,} pixels "
      f"({_CAP_NAME}); refused before decoding as a possible decompression bomb. Down-scale "
      "it first.")


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
  """Opens `path` lazily with the allow-list and checks its size; no pixel is decoded.

  Returns the open (not loaded) Pillow image: close it, or use it in a `with` block. Raises
  `ImageFileError` for a missing, empty, refused, corrupt or too large file.
  """
  path = pathlib.Path(path)
  cap = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
  if not path.is_file():
    raise ImageFileError(f"{path}: not a file.")
  if path.stat().st_size == 0:
    raise ImageFileError(f"{path}: empty file (0 bytes).")
  try:
    with warnings.catch_warnings():   # Pillow's own, laxer bomb warning: the cap below decides
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      im = Image.open(path, formats=accepted_formats())
  except Image.DecompressionBombError as e:   # over twice Pillow's own limit
    raise ImageFileError(f"{path}: over the cap of {cap:,} pixels ({_CAP_NAME}; {e}); refused "
                         "before decoding as a possible decompression bomb. Down-scale it "
                         "first.") from None
  except Image.UnidentifiedImageError:
    with path.open("rb") as f:
      raise _refusal(path, f.read(_PREFIX_BYTES)) from None
  except Exception as e:  # pylint: disable=broad-except  # unreadable, or a header too odd
    raise ImageFileError(f"{path}: cannot be read ({type(e).__name__}: {e}).") from None
  if im.size[0] * im.size[1] > cap:
    size = im.size
    im.close()
    raise _too_big(path, size, cap)
  return im


def read_image(path: str | os.PathLike,
               max_pixels: int | None = None) -> tuple[Image.Image, int | None]:
  """(decoded image with its EXIF orientation applied, the EXIF orientation tag or None).

  The image keeps its `format` (PNG, JPEG, ...). Raises `ImageFileError` as `open_image` does,
  and for truncated or corrupt pixel data.
  """
  path = pathlib.Path(path)
  with open_image(path, max_pixels) as im:
    fmt = im.format
    try:
      im.load()
      orientation = im.getexif().get(EXIF_ORIENTATION)
      out = ImageOps.exif_transpose(im)
    except Exception as e:  # truncated / corrupt data: OSError, SyntaxError, ValueError, ...
      raise ImageFileError(
          f"{path}: corrupt or truncated image ({type(e).__name__}: {e}).") from None
  out.format = fmt
  return out, (int(orientation) if orientation is not None else None)


def to_uint8(images01, *, channels_first: bool = False, dtype=np.float32) -> np.ndarray:
  """Float pixels in [0, 1] -> uint8 0..255: clamped to [0, 1], times 255, rounded half to
  even (`np.round`), the arithmetic done in `dtype` (float32, or float64 where a caller's
  values are float64).

  images01: [..., H, W, C] (any shape), or [..., C, H, W] with `channels_first`, returned as
  [..., H, W, C]. Returns a uint8 array.
  """
  x = np.clip(np.asarray(images01, dtype), 0.0, 1.0)
  if channels_first:
    x = np.moveaxis(x, -3, -1)
  return np.round(x * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- heat maps

# The fixed top of the spread maps' colour scale (`heat_map`'s vmax for spread.png): a
# per-pixel standard deviation of 0.25 in [0, 1] pixel units (half the largest possible, 0.5)
# and above is drawn brightest. Fixed, not per image, so that maps of different inputs and runs
# can be compared.
SPREAD_VMAX = 0.25
# The colour of a pixel without a value (NaN): a neutral grey, outside the colour ramp.
NAN_RGB = (128, 128, 128)
# A perceptually ordered ramp (dark -> bright, luminance increasing at every anchor): matplotlib's
# "inferno" sampled at 0, 0.1, ..., 1, interpolated linearly in between.
HEAT_ANCHORS = np.array([
    (0, 0, 4), (22, 11, 57), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
    (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164)],
                        np.float64)


def heat_map(values, vmax: float) -> np.ndarray:
  """values: [H, W] float -> uint8 [H, W, 3] RGB: 0 (and below) darkest, `vmax` and above
  brightest, linear in between along `HEAT_ANCHORS`; NaN drawn `NAN_RGB` (+inf: brightest)."""
  v = np.asarray(values, np.float64)
  if v.ndim != 2:
    raise ValueError(f"heat_map: values must be [H, W], got shape {v.shape}")
  if not (np.isfinite(vmax) and vmax > 0):
    raise ValueError(f"heat_map: vmax must be a positive number, got {vmax!r}")
  nan = np.isnan(v)
  t = np.clip(np.where(nan, 0.0, v) / vmax, 0.0, 1.0) * (len(HEAT_ANCHORS) - 1)
  lo = np.minimum(np.floor(t).astype(np.int64), len(HEAT_ANCHORS) - 2)
  frac = (t - lo)[..., None]
  rgb = HEAT_ANCHORS[lo] * (1.0 - frac) + HEAT_ANCHORS[lo + 1] * frac
  out = np.round(rgb).astype(np.uint8)
  out[nan] = NAN_RGB
  return out
