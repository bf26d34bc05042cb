"""Down-samplers of the forward model (`--downsample`): the reference's bicubic, or area.

Both map ``[..., C, H, W]`` float to ``[..., C, H / f, W / f]`` (same dtype) for a static
integer factor f >= 1 dividing H and W; factor 1 is the identity.
- ``bicubic``: exactly `pulse_jax.forward.bicubic.downsample` (the reference's filter; same numerics).
- ``area``: the mean of each f x f block (a box filter with stride f; no padding needed).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pulse_jax.forward import bicubic


def area(images: jax.Array, factor: int) -> jax.Array:
  """Box average of each ``factor x factor`` block of ``images: [..., C, H, W]``."""
  factor = bicubic._check_factor(factor)  # pylint: disable=protected-access  # same rule
  images = jnp.asarray(images)
  if factor == 1:
    return images
  h, w = images.shape[-2:]
  if h % factor or w % factor:
    raise ValueError(f"H, W = {h}, {w} must be multiples of factor {factor}")
  blocks = images.reshape(images.shape[:-2] + (h // factor, factor, w // factor, factor))
  return jnp.mean(blocks, axis=(-3, -1))


METHODS = {"bicubic": bicubic.downsample, "area": area}


def downsample(images: jax.Array, factor: int, method: str = "bicubic") -> jax.Array:
  """``METHODS[method](images, factor)``; see the module docstring."""
  if method not in METHODS:
    raise ValueError(f"--downsample must be one of {', '.join(METHODS)}, got {method!r}")
  return METHODS[method](images, factor)
