"""The forward model D: HR image -> what the camera saw, composed from the `OPTIONS` registry.

``D(hr) = grayscale(downsample(convolve(gaussian_blur(hr))))`` for ``hr: [..., C, H, W]`` in
[0, 1], each step present only when its option asks for it; the result is
``[..., C', H / f, W / f]`` (C' = 1 with --grayscale, else C), same dtype. The options without
an image operator: ``mask`` (per-input known pixels, entering the loss as its ``mask``
argument: `pulse_jax.forward.mask`) and ``noise_sigma`` (the eps rule: `effective_eps`).

Adding an operator = its function in a module of this package, one `Option` in `OPTIONS`
(where its place in the list is its place in D) and the field of that name in `ForwardModel`.

`ForwardModel` is a frozen, hashable dataclass of static settings (a jit static argument).
Array data are never compile-time constants: the shared ones (the user kernel) come from
`ForwardModel.arrays()` and are passed to `ForwardModel.apply(hr, arrays)`; per-input masks
travel with the targets (rows of N), like the existing padding masks.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np

from pulse_jax.forward import blur, color, downsample as down


@dataclasses.dataclass(frozen=True)
class Option:
  """One forward-model option: flag ``--{name}``, the `ForwardModel` field of the same name.

  check: raw value (None: the default) -> the field's value; raises ValueError naming the flag.
  apply: ``(model, x, arrays) -> x``, the image operator (identity when inactive), or None.
  describe: field value -> JSON-able value for `ForwardModel.describe`.
  operator: ``model -> str | None``, the operator as it appears in D (None when inactive).
  """
  name: str
  kind: str              # flag type: "float", "string", "bool" or "enum"
  default: Any
  help: str
  check: Callable[[Any], Any]
  apply: Callable[..., jax.Array] | None = None
  describe: Callable[[Any], Any] = lambda v: v
  operator: Callable[..., str | None] = lambda m: None
  choices: tuple[str, ...] = ()


def _sigma(v) -> float:
  v = _number("blur_sigma")(v)
  blur.check_sigma(v, what=" (the largest of any generator here)")
  return v


def _number(name: str, upper: float | None = None) -> Callable[[Any], float]:
  def check(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
      raise ValueError(f"--{name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
      raise ValueError(f"--{name} must be finite, got {v}")
    if v < 0:
      raise ValueError(f"--{name} must be >= 0, got {v:g}")
    if upper is not None and v > upper:
      raise ValueError(f"--{name} must be <= {upper:g}, got {v:g}")
    return v + 0.0   # -0.0 -> 0.0 (one hash)
  return check


def _kernel(v):
  if v is None or v == "":
    return None
  if isinstance(v, blur.KernelSpec):
    return v
  if not isinstance(v, (str, os.PathLike)):
    raise ValueError(f"--blur_kernel must be a file name, got {v!r}")
  return blur.load_kernel(v)


def _choice(name: str, choices) -> Callable[[Any], str]:
  def check(v):
    if v not in choices:
      raise ValueError(f"--{name} must be one of {', '.join(choices)}, got {v!r}")
    return str(v)
  return check


def _bool(name: str) -> Callable[[Any], bool]:
  def check(v):
    if not isinstance(v, (bool, np.bool_)):
      raise ValueError(f"--{name} must be true or false, got {v!r}")
    return bool(v)
  return check


def _path(name: str) -> Callable[[Any], str | None]:
  def check(v):
    if v is None or v == "":
      return None
    if not isinstance(v, (str, os.PathLike)):
      raise ValueError(f"--{name} must be a file or folder name, got {v!r}")
    return os.fspath(v)
  return check


def _apply_kernel(m, x, arrays):
  if m.blur_kernel is None:
    return x
  if "kernel" not in arrays:
    raise ValueError("--blur_kernel is set but `arrays` has no 'kernel': pass model.arrays()")
  return blur.convolve(x, arrays["kernel"])


OPTIONS: tuple[Option, ...] = (
    Option("blur_sigma", "float", 0.0,
           "Gaussian blur of the HR image before down-sampling: sigma in HR pixels (radius "
           "ceil(3 sigma), reflect boundary); 0: none.",
           _sigma,
           apply=lambda m, x, a: blur.gaussian_blur(x, m.blur_sigma),
           operator=lambda m: (f"gaussian_blur(sigma={m.blur_sigma:g}, radius="
                               f"{blur.gaussian_radius(m.blur_sigma)}, reflect)"
                               if m.blur_sigma else None)),
    Option("blur_kernel", "string", None,
           "A blur kernel applied after --blur_sigma: a .npy 2-D array or a grayscale image, "
           "normalised to sum 1; true convolution, reflect boundary.",
           _kernel, apply=_apply_kernel,
           describe=lambda k: k.describe() if k else None,
           operator=lambda m: (f"convolve(kernel={m.blur_kernel.file}, "
                               f"{m.blur_kernel.shape[0]}x{m.blur_kernel.shape[1]}, reflect)"
                               if m.blur_kernel else None)),
    Option("downsample", "enum", "bicubic",
           "Down-sampler by the factor generator size / input size: bicubic (the reference's) "
           "or area (mean of each factor x factor block).",
           _choice("downsample", tuple(down.METHODS)),
           apply=lambda m, x, a: down.downsample(x, m.factor, m.downsample),
           operator=lambda m: f"{m.downsample}(factor={m.factor})" if m.factor > 1 else None,
           choices=tuple(down.METHODS)),
    Option("grayscale", "bool", False,
           "Compare luminance only (ITU-R BT.601 0.299 R + 0.587 G + 0.114 B): the model and "
           "the target have one channel.",
           _bool("grayscale"),
           apply=lambda m, x, a: color.luminance(x) if m.grayscale else x,
           operator=lambda m: "grayscale(BT.601)" if m.grayscale else None),
    Option("mask", "string", None,
           "Known-pixel masks (white = known, threshold 0.5), the size of the input: one file "
           "for every input, or a folder matched to the inputs by file stem. The loss and the "
           "eps test use only the known pixels.",
           _path("mask")),
    Option("noise_sigma", "float", 0.0,
           "Std of the noise the input carries, in [0, 1] units: the model is unchanged, the "
           "eps test uses max(eps, noise_sigma^2).",
           _number("noise_sigma", upper=1.0)),
)
OPTION_NAMES = tuple(o.name for o in OPTIONS)


@dataclasses.dataclass(frozen=True)
class ForwardModel:
  """Static settings of D (hashable; a jit static argument). Fields: ``factor`` + `OPTIONS`.

  Construct with `from_options`; every field is validated (ValueError naming its flag).
  """
  factor: int = 1
  blur_sigma: float = 0.0
  blur_kernel: blur.KernelSpec | None = None
  downsample: str = "bicubic"
  grayscale: bool = False
  mask: str | None = None
  noise_sigma: float = 0.0

  def __post_init__(self):
    if isinstance(self.factor, bool) or not isinstance(self.factor, (int, np.integer)) \
        or self.factor < 1:
      raise ValueError(f"factor must be an integer >= 1, got {self.factor!r}")
    object.__setattr__(self, "factor", int(self.factor))
    for opt in OPTIONS:
      object.__setattr__(self, opt.name, opt.check(getattr(self, opt.name)))

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
    """1 with --grayscale; None: the generator's channel count (D keeps C)."""
    return 1 if self.grayscale else None

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
    if self.blur_sigma:
      blur.check_sigma(self.blur_sigma, min(h, w), f" ({c}x{h}x{w} generator output)")
    k = self.blur_kernel
    if k is not None and (k.shape[0] > h or k.shape[1] > w):
      raise ValueError(f"--blur_kernel={k.file}: the kernel is {k.shape[0]}x{k.shape[1]}, larger "
                       f"than the {h}x{w} HR image")
    if self.grayscale and c not in (1, 3):
      raise ValueError(f"--grayscale needs a 1- or 3-channel (RGB) generator, got {c} channels")

  def lr_shape(self, hr_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of ``D(hr)`` for ``hr: hr_shape = [..., C, H, W]``: ``[..., C', H / f, W / f]``."""
    self.check_hr_shape(hr_shape)
    *lead, c, h, w = hr_shape
    return tuple(lead) + (1 if self.grayscale else c, h // self.factor, w // self.factor)

  def arrays(self, dtype=np.float32) -> dict:
    """The shared array inputs of `apply` (host numpy): ``{'kernel': [kh, kw]}`` or ``{}``."""
    if self.blur_kernel is None:
      return {}
    return {"kernel": np.asarray(self.blur_kernel.taps, dtype)}

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
    if self.grayscale:
      return color.gray_target(pixels)
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
