"""The forward model D: HR image -> what the camera saw, composed from the forward-option table.

``D(hr) = grayscale(downsample(convolve(gaussian_blur(hr))))`` for ``hr: [..., C, H, W]`` in
[0, 1], each step present only when its option asks for it; the result is
``[..., C', H / f, W / f]`` (C' = 1 with --grayscale, else C), same dtype. The options without
an image operator: ``mask`` (per-input known pixels, entering the loss as its ``mask``
argument: `pulse_jax.forward.mask`) and ``noise_sigma`` (the eps rule: `effective_eps`).

The operators and their options are ONE table, `pulse_jax.forward.options.OPTIONS` (where an
entry's place is its place in D); `ForwardModel`'s fields (after ``factor``) are derived from
it. Adding an operator = its function in a module of this package and one entry there.

`ForwardModel` is a frozen, hashable dataclass of static settings (a jit static argument).
Array data are never compile-time constants: the shared ones (the user kernel) come from
`ForwardModel.arrays()` and are passed to `ForwardModel.apply(hr, arrays)`; per-input masks
travel with the targets (rows of N), like the existing padding masks.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import numpy as np

from pulse_jax.core.option import with_option_fields
from pulse_jax.forward import options as forward_options
from pulse_jax.forward.options import ForwardOption


# The forward-option table, as `ForwardModel`'s fields were made from it.
OPTIONS: tuple[ForwardOption, ...] = forward_options.OPTIONS
OPTION_NAMES = tuple(o.name for o in OPTIONS)


@with_option_fields(OPTIONS)
class ForwardModel:
  """Static settings of D (hashable; a jit static argument). Fields: ``factor``, then one per
  entry of the forward-option table (`pulse_jax.forward.options.OPTIONS`): ``blur_sigma``,
  ``blur_kernel`` (a `blur.KernelSpec` or None), ``downsample``, ``grayscale``, ``mask``,
  ``noise_sigma``.

  Construct with `from_options`; every field is validated (ValueError naming its flag).
  """
  factor: int = 1

  def __post_init__(self):
    if isinstance(self.factor, bool) or not isinstance(self.factor, (int, np.integer)) \
        or self.factor < 1:
      raise ValueError(f"factor must be an integer >= 1, got {self.factor!r}")
    object.__setattr__(self, "factor", int(self.factor))
    for opt in OPTIONS:
      object.__setattr__(self, opt.name, opt.value_of(getattr(self, opt.name)))

  @classmethod
  def from_options(cls, factor: int = 1, **options) -> ForwardModel:
    """From flag values ``{name: value}`` (None or absent: the default); loads --blur_kernel."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
      raise ValueError(f"unknown forward option(s) {', '.join('--' + u for u in unknown)}; "
                       f"known: {', '.join('--' + n for n in OPTION_NAMES)}")
    values = {o.name: o.default if options.get(o.name) is None else options[o.name]
              for o in OPTIONS}
    return cls(factor=factor, **values)

  def with_factor(self, factor: int) -> ForwardModel:
    return dataclasses.replace(self, factor=factor)

  @property
  def is_default(self) -> bool:
    """True when D is `pulse_jax.forward.bicubic.downsample` by ``factor`` alone (the reference's)."""
    return all(getattr(self, o.name) == o.default for o in OPTIONS if o.apply is not None)

  @property
  def target_channels(self) -> int | None:
    """1 with --grayscale; None: the generator's channel count (D keeps C). The last
    operator that sets the channels decides (`ForwardOption.channels`)."""
    out = None
    for opt in OPTIONS:
      if opt.channels is not None:
        c = opt.channels(self)
        out = out if c is None else c
    return out

  def operators(self) -> list[str]:
    """The active operators of D, in order (empty: the identity)."""
    return [s for s in (o.operator(self) for o in OPTIONS) if s]

  def check_hr_shape(self, hr_shape: tuple[int, ...]) -> None:
    """Raises ValueError (naming the option) when D cannot take ``hr_shape = [..., C, H, W]``."""
    if len(hr_shape) < 3:
      raise ValueError(f"HR images must be [..., C, H, W], got shape {tuple(hr_shape)}")
    c, h, w = hr_shape[-3:]
    if h % self.factor or w % self.factor:
      raise ValueError(f"HR size {h}x{w} is not a multiple of the factor {self.factor}")
    for opt in OPTIONS:
      if opt.check_hr is not None:
        opt.check_hr(self, (c, h, w))

  def lr_shape(self, hr_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of ``D(hr)`` for ``hr: hr_shape = [..., C, H, W]``: ``[..., C', H / f, W / f]``."""
    self.check_hr_shape(hr_shape)
    *lead, c, h, w = hr_shape
    channels = self.target_channels
    return tuple(lead) + (c if channels is None else channels, h // self.factor, w // self.factor)

  def arrays(self, dtype=np.float32) -> dict:
    """The shared array inputs of `apply` (host numpy): ``{'kernel': [kh, kw]}`` or ``{}``."""
    out = {}
    for opt in OPTIONS:
      if opt.arrays is not None:
        out.update(opt.arrays(self, dtype))
    return out

  def apply(self, hr: jax.Array, arrays: Mapping[str, jax.Array] | None = None) -> jax.Array:
    """D(hr): ``hr: [..., C, H, W]`` float -> ``[..., C', H / f, W / f]``, same dtype.

    arrays: `arrays()` (device or host arrays; needed only with --blur_kernel). Pure and
    differentiable; the default model is exactly ``bicubic.downsample(hr, factor)``.
    """
    self.check_hr_shape(hr.shape)
    x, arrays = hr, arrays or {}
    for opt in OPTIONS:
      if opt.apply is not None:
        x = opt.apply(self, x, arrays)
    return x

  __call__ = apply

  def prepare_target(self, pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A target ``[..., C, h, w]`` -> (what D's output is compared to, notes)."""
    for opt in OPTIONS:
      if opt.prepare_target is not None:
        prepared = opt.prepare_target(self, pixels)
        if prepared is not None:
          return prepared
    return np.asarray(pixels), []

  def effective_eps(self, eps: float) -> float:
    """The eps of the success test: ``max(eps, noise_sigma**2)`` (the noise's expected L2)."""
    return max(float(eps), self.noise_sigma ** 2)

  def eps_note(self, eps: float) -> str | None:
    """A line for the report when --noise_sigma changes eps, else None."""
    if not self.noise_sigma:
      return None
    e = self.effective_eps(eps)
    which = "noise_sigma^2" if e > eps else "--eps (already above noise_sigma^2)"
    return (f"--noise_sigma={self.noise_sigma:g}: the success test uses eps = max(--eps={eps:g}, "
            f"noise_sigma^2={self.noise_sigma ** 2:g}) = {e:g} ({which}), the expected L2 of "
            "the input's noise alone")

  def describe(self) -> dict:
    """JSON-able settings for report.json ("forward") and the resume check."""
    out = {"factor": self.factor, "operators": self.operators()}
    out.update({o.name: o.describe(getattr(self, o.name)) for o in OPTIONS})
    out["eps_rule"] = "max(eps, noise_sigma^2)"
    return out
