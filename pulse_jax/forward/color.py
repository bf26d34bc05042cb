"""`--grayscale`: compare luminance only (ITU-R BT.601: Y = 0.299 R + 0.587 G + 0.114 B).

`luminance` is the forward operator (on the model's output, differentiable); `gray_target`
converts a search target on the host, with the same weights.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)   # ITU-R BT.601, R, G, B


def _check_channels(c: int) -> None:
  if c not in (1, 3):
    raise ValueError(f"--grayscale needs a 1- or 3-channel (RGB) image, got {c} channels")


def luminance(images: jax.Array) -> jax.Array:
  """``[..., 3, h, w]`` RGB -> ``[..., 1, h, w]`` luminance (same dtype); 1 channel: unchanged."""
  images = jnp.asarray(images)
  _check_channels(images.shape[-3])
  if images.shape[-3] == 1:
    return images
  wts = jnp.asarray(LUMA_WEIGHTS, images.dtype)
  return jnp.einsum("c,...chw->...hw", wts, images,
                    precision=jax.lax.Precision.HIGHEST)[..., None, :, :]


def gray_target(pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
  """A target ``[..., C, h, w]`` (C = 1 or 3) -> ``([..., 1, h, w] float32, notes)``.

  One channel, or three equal channels (a gray picture that `pulse_jax.io.input_images` expanded to
  RGB), is kept exactly as its first channel; a colour target is converted with
  `LUMA_WEIGHTS` (float64, then float32), with a note.
  """
  pixels = np.asarray(pixels)
  _check_channels(pixels.shape[-3])
  first = pixels[..., :1, :, :]
  if pixels.shape[-3] == 1 or (np.array_equal(first, pixels[..., 1:2, :, :])
                               and np.array_equal(first, pixels[..., 2:3, :, :])):
    return first.astype(np.float32), []
  y = np.tensordot(np.asarray(LUMA_WEIGHTS), pixels.astype(np.float64), axes=([0], [-3]))
  note = ("colour input converted to luminance (--grayscale; ITU-R BT.601: "
          "0.299 R + 0.587 G + 0.114 B)")
  return y[..., None, :, :].astype(np.float32), [note]
