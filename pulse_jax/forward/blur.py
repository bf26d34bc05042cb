"""Blurs of the HR image before down-sampling: a Gaussian (`--blur_sigma`) and a user kernel.

Both use reflect boundary handling without edge repeat (`numpy.pad(mode="reflect")`,
`scipy.ndimage` mode "mirror"), the rule of the bicubic step (`pulse_jax.forward.bicubic`); a padding
wider than the axis reflects repeatedly, as numpy does. Both keep the shape
``[..., C, H, W]`` and dtype of the image, filter each channel on its own, and run at full
float32 precision (``Precision.HIGHEST``).

- Gaussian: separable, taps ``exp(-i**2 / (2 sigma**2))`` for ``i`` in ``[-r, r]``, radius
  ``r = ceil(3 sigma)`` HR pixels, normalised to sum 1 (float64 on the host); vertical pass
  first. ``sigma == 0`` is the identity.
- User kernel ``k: [kh, kw]``: a true 2-D convolution (as ``scipy.ndimage.convolve``):
  ``out[y, x] = sum_ij k[i, j] * in[y - i + kh // 2, x - j + kw // 2]``, so an odd kernel is
  centred on its middle tap, and an even one on tap ``(kh // 2, kw // 2)``. The kernel is a
  traced argument (never a compile-time constant): computed as a correlation with the flipped
  kernel.

Files: `load_kernel` reads a ``.npy`` 2-D array or a grayscale image (through
`pulse_jax.io.images`) and normalises it to sum 1; `KernelError` names the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.io import images as image_files
from pulse_jax.forward.limits import MAX_HR_SIDE
from pulse_jax.io import npy_files

GAUSSIAN_TRUNCATE = 3.0   # radius = ceil(GAUSSIAN_TRUNCATE * sigma)
_HI = jax.lax.Precision.HIGHEST


class KernelError(ValueError):
  """A `--blur_kernel` file that cannot be used; the message names the file."""


def gaussian_radius(sigma: float) -> int:
  """Half-width r of the Gaussian taps (``2 r + 1`` taps): ``ceil(3 sigma)``; 0 for sigma 0."""
  return int(math.ceil(GAUSSIAN_TRUNCATE * float(sigma)))


def max_sigma(side: int) -> float:
  """The largest sigma whose ``2 r + 1`` taps fit an HR side of `side` pixels."""
  return ((int(side) - 1) // 2) / GAUSSIAN_TRUNCATE


def check_sigma(sigma: float, side: int = MAX_HR_SIDE, what: str = "") -> None:
  """ValueError naming --blur_sigma when its ``2 r + 1`` taps exceed `side` (the HR size;
  default: the largest of any generator), as a --blur_kernel larger than the HR image is.
  A larger sigma would only flatten the image, and would cost a compile (and memory) that
  grows with r."""
  if sigma > max_sigma(side):
    r = gaussian_radius(sigma) if math.isfinite(sigma) else float("inf")
    raise ValueError(
        f"--blur_sigma={sigma:g} gives radius ceil(3 sigma) = {r:g}, {2 * r + 1:g} taps, more "
        f"than the {side}x{side} HR image{what}; --blur_sigma must be <= "
        f"{max_sigma(side):g} (2 r + 1 <= {side}), as a --blur_kernel may not be larger than "
        "the HR image either")


def gaussian_taps(sigma: float, radius: int | None = None) -> np.ndarray:
  """The 1-D Gaussian: ``[2 r + 1] float64`` ``exp(-i**2 / (2 sigma**2))`` for ``i`` in
  ``[-r, r]``, summing to 1 (``[1.]`` for r 0). radius: r, default `gaussian_radius(sigma)`
  (the forward model's ``ceil(3 sigma)``; `pulse_jax.job.align` passes FFHQ's)."""
  r = gaussian_radius(sigma) if radius is None else int(radius)
  if r == 0:
    return np.ones(1)
  i = np.arange(-r, r + 1, dtype=np.float64)
  k = np.exp(-0.5 * (i / float(sigma)) ** 2)
  return k / k.sum()


def _correlate_reflect(x: jax.Array, k: jax.Array, before: tuple[int, int]) -> jax.Array:
  """``out[y, x] = sum_ij k[i, j] * xpad[y + i, x + j]``, xpad reflect-padded by ``before``.

  x: [..., H, W] (any leading dims, each plane filtered on its own); k: [kh, kw] of x's dtype.
  The padding after is ``k.shape - 1 - before`` on each axis.
  """
  kh, kw = k.shape
  h, w = x.shape[-2:]
  lead = x.shape[:-2]
  pad = ((before[0], kh - 1 - before[0]), (before[1], kw - 1 - before[1]))
  planes = x.reshape((-1, 1, h, w))
  planes = jnp.pad(planes, ((0, 0), (0, 0)) + pad, mode="reflect")
  out = jax.lax.conv_general_dilated(
      planes, k[None, None], window_strides=(1, 1), padding="VALID",
      dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=_HI)
  return out.reshape(lead + (h, w))


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of ``images: [..., C, H, W]`` float; sigma (static) in pixels."""
  if sigma == 0:
    return images
  taps = gaussian_taps(sigma)
  r = gaussian_radius(sigma)
  k = jnp.asarray(taps, images.dtype)
  rows = _correlate_reflect(images, k[:, None], (r, 0))   # vertical (symmetric: no flip needed)
  return _correlate_reflect(rows, k[None, :], (0, r))     # then horizontal


def convolve(images: jax.Array, kernel: jax.Array) -> jax.Array:
  """True 2-D convolution of ``images: [..., C, H, W]`` with ``kernel: [kh, kw]``, reflect.

  Same shape and dtype as ``images`` (the kernel is cast to it). kh <= H and kw <= W.
  """
  kernel = jnp.asarray(kernel, images.dtype)
  if kernel.ndim != 2:
    raise ValueError(f"kernel must be [kh, kw], got shape {kernel.shape}")
  kh, kw = kernel.shape
  # Convolution = correlation with the flipped kernel; centre tap (kh // 2, kw // 2) of the
  # unflipped kernel sits at (kh - 1 - kh // 2, kw - 1 - kw // 2) of the flipped one.
  return _correlate_reflect(images, kernel[::-1, ::-1], (kh - 1 - kh // 2, kw - 1 - kw // 2))


@dataclasses.dataclass(frozen=True)
class KernelSpec:
  """A loaded `--blur_kernel`: static and hashable (file, sha256 of the taps, shape).

  ``taps`` (``[kh, kw] float64``, read-only, summing to 1) is the host copy that
  `ForwardModel.arrays` passes to the compiled program; it takes no part in equality or
  hashing (the sha256 does).
  """
  file: str
  sha256: str
  shape: tuple[int, int]
  taps: np.ndarray = dataclasses.field(compare=False, hash=False, repr=False)

  def describe(self) -> dict:
    return {"file": self.file, "sha256": self.sha256, "shape": list(self.shape)}


def _too_large(path, h: int, w: int, side: int) -> KernelError:
  return KernelError(f"--blur_kernel={path}: {h}x{w} taps, larger than the largest HR image "
                     f"({side}x{side}) a kernel may blur; refused before reading its values.")


def _read_image_kernel(path: pathlib.Path, side: int) -> np.ndarray:
  from pulse_jax.io.input_images import to_rgb   # numpy/Pillow only; the shared mode conversions
  try:
    with image_files.open_image(path) as im:   # the size from the header: nothing decoded
      w, h = im.size
    if max(w, h) > side:
      raise _too_large(path, h, w, side)
    im = image_files.read_image(path)[0]
  except image_files.ImageFileError as e:
    raise KernelError(f"--blur_kernel={path}: {e}") from None
  mode = im.mode
  if mode in ("I", "F", "I;16", "I;16L", "I;16B", "I;16N"):   # full precision; any scale
    return np.asarray(im, np.float64)                          # (normalised to sum 1 after)
  if mode in ("1", "L"):   # gray already: no RGB copy
    return np.asarray(im.convert("L"), np.float64) / 255.0
  rgb, _ = to_rgb(im)
  if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
    raise KernelError(f"--blur_kernel={path}: a {mode} colour image; a kernel image must be "
                      "grayscale (or give a .npy 2-D array).")
  return rgb[..., 0].astype(np.float64) / 255.0


def _read_npy_kernel(path: pathlib.Path, side: int) -> np.ndarray:
  def check(header: npy_files.Header) -> None:
    if len(header.shape) != 2:
      raise KernelError(f"--blur_kernel={path}: must be a 2-D array, got shape "
                        f"{header.shape}.")
    if max(header.shape) > side:
      raise _too_large(path, *header.shape, side)
    if header.dtype.kind not in "iuf":
      raise KernelError(f"--blur_kernel={path}: must hold real numbers, got dtype "
                        f"{header.dtype}.")
  try:
    return npy_files.load_npy(path, check).astype(np.float64)
  except npy_files.NpyError as e:
    raise KernelError(f"--blur_kernel={e}") from None   # e names the file


def load_kernel(path: str | os.PathLike, max_side: int = MAX_HR_SIDE) -> KernelSpec:
  """Reads a `--blur_kernel` file: ``.npy`` (2-D real array) or a grayscale image.

  Negative taps are allowed; the kernel is normalised to sum 1. Raises `KernelError` naming
  the file for a missing or unreadable file (a zip archive named .npy included), a colour
  image, a non-2-D array, a kernel with a side over `max_side` (checked from the header,
  before its values are read), NaN or inf taps, taps summing to <= 0 or to inf, or taps that
  are not finite once normalised. (Larger than the generator's HR image:
  `ForwardModel.check_hr_shape`.)
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise KernelError(f"--blur_kernel={path}: no such file.")
  k = (_read_npy_kernel(path, max_side) if path.suffix.lower() == ".npy"
       else _read_image_kernel(path, max_side))
  if k.ndim != 2 or 0 in k.shape:
    raise KernelError(f"--blur_kernel={path}: must be a non-empty 2-D array, got shape {k.shape}.")
  if not np.all(np.isfinite(k)):
    raise KernelError(f"--blur_kernel={path}: contains NaN or inf.")
  with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    total = k.sum()
    if not math.isfinite(total):   # finite taps whose sum overflows: scale them down first
      k = k / np.abs(k).max()
      total = k.sum()
    if not (math.isfinite(total) and total > 0):
      raise KernelError(f"--blur_kernel={path}: its taps sum to {total:g}; they must sum to a "
                        "finite number > 0 (the kernel is normalised to sum 1).")
    k = np.ascontiguousarray(k / total)
  if not np.all(np.isfinite(k)) or not math.isclose(k.sum(), 1.0, rel_tol=1e-6):
    raise KernelError(f"--blur_kernel={path}: normalised to sum 1, its taps are not finite or "
                      "do not sum to 1 (taps of very different magnitudes that cancel, e.g. "
                      "1e300 and -1e300); scale the kernel to moderate values.")
  k.setflags(write=False)
  digest = hashlib.sha256(k.tobytes()).hexdigest()
  return KernelSpec(file=str(path), sha256=digest, shape=(int(k.shape[0]), int(k.shape[1])),
                    taps=k)
