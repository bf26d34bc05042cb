"""The forward-model options: the one table (`OPTIONS`) of the operators of D and their flags.

Each entry is a `ForwardOption`: an `Option` (name, type, default, help, check, choices: the
flag `--name`, the `RunOptions` field and the `upsample` keyword, composed by
`pulse_jax.job.options` as its "forward" group) and what `pulse_jax.forward.model.ForwardModel`
does with it (`convert` to the field's value, `apply` the image operator, `operator` and
`describe` for the reports, and the hooks `check_hr`, `channels`, `prepare_target`, `arrays`).
`ForwardModel`'s fields are derived from this table.

Adding an operator = its function in a module of this package and ONE `ForwardOption` here,
where its place in the table is its place in D.

Nothing here imports jax at import time (the operators' modules are imported when used):
`pulse_jax.job.options` stays cheap to import.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import numpy as np

from pulse_jax.core.option import Option, finite
from pulse_jax.forward.limits import MAX_HR_SIDE

# = the keys of pulse_jax.forward.downsample.METHODS (tests/forward/test_forward.py checks it).
DOWNSAMPLERS = ("bicubic", "area")


@dataclasses.dataclass(frozen=True)
class ForwardOption(Option):
  """One forward-model option: an `Option` (scope "job", group "forward"; `check` raises
  'must be ...' for the job's messages) and the `ForwardModel` field of the same name.

  convert: raw value (None: the default) -> the field's value; raises ValueError naming the flag
    ('--blur_sigma must be >= 0, got -1'); None: the value as given.
  apply: ``(model, x, arrays) -> x``, the image operator (identity when inactive), or None
    (an option without an image operator: it does not change D).
  describe: field value -> JSON-able value for `ForwardModel.describe`.
  operator: ``model -> str | None``, the operator as it appears in D (None when inactive).
  check_hr: ``(model, (C, H, W)) -> None``, raises ValueError (naming the flag) when D cannot
    take such HR images, or None.
  channels: ``model -> int | None``, the channels of D's output (None: keeps C), or None.
  prepare_target: ``(model, pixels) -> (target, notes) | None``, what D's output is compared
    to, or None.
  arrays: ``(model, dtype) -> {name: host array}``, the shared arrays `apply` reads, or None.
  """
  group: str = "forward"
  convert: Callable[[Any], Any] | None = None
  apply: Callable[..., Any] | None = None
  describe: Callable[[Any], Any] = lambda v: v
  operator: Callable[..., str | None] = lambda m: None
  check_hr: Callable[..., None] | None = None
  channels: Callable[..., int | None] | None = None
  prepare_target: Callable[..., Any] | None = None
  arrays: Callable[..., dict] | None = None

  @property
  def kind(self) -> str:
    """The flag type: "bool", "enum", "float" or "string"."""
    if self.type is bool:
      return "bool"
    if self.choices:
      return "enum"
    return "float" if self.type is float else "string"

  @property
  def annotation(self):
    return Any   # the field holds `convert`'s value (e.g. a blur.KernelSpec)

  def value_of(self, raw):
    """The `ForwardModel` field's value of `raw` (ValueError naming the flag)."""
    return raw if self.convert is None else self.convert(raw)


# ----------------------------------------------------------------------------- the job's checks
# Raise ValueError('must be ...') (the job writes '--name: ...'); their return values are not
# used: a job's options stay the raw values given.

def _blur_sigma_bound(v):
  """A finite sigma >= 0 whose 2 r + 1 taps (r = ceil(3 sigma)) fit the largest HR image of
  any generator (the job checks the generator's own size before compiling)."""
  finite(0.0)(v)
  bound = ((MAX_HR_SIDE - 1) // 2) / 3
  if v > bound:
    raise ValueError(f"must be <= {bound:g}: its radius ceil(3 sigma) would give more than "
                     f"{MAX_HR_SIDE} taps, larger than the largest HR image of any generator "
                     f"({MAX_HR_SIDE}x{MAX_HR_SIDE}); the bound for a generator of size G is "
                     f"(G - 1) // 2 / 3, e.g. 10.3333 for 64 (got {v!r})")


def _kernel_file(v):
  """Reads the kernel (once more when the job builds its forward model: small files), so that
  a bad kernel is a usage error before anything is loaded."""
  if v == "":
    return
  from pulse_jax.forward.blur import KernelError, load_kernel  # jax: only when given
  try:
    load_kernel(v)
  except KernelError as e:
    m = str(e)
    head = f"--blur_kernel={v}: "
    raise ValueError(f"{v}: {m[len(head):]}" if m.startswith(head) else m) from None


def _existing_or_empty(v):
  if v != "" and not os.path.exists(v):
    raise ValueError(f"no such file or folder: {v}")


def _unit_interval(v):
  if not (math.isfinite(v) and 0.0 <= v <= 1.0):
    raise ValueError(f"must be a finite number in [0, 1] (got {v!r})")


# ----------------------------------------------------------------------------- ForwardModel's values
# Raw value -> the field's value; ValueError naming the flag.

def _number(name: str, upper: float | None = None) -> Callable[[Any], float]:
  def convert(v):
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
  return convert


def _sigma(v) -> float:
  from pulse_jax.forward import blur
  v = _number("blur_sigma")(v)
  blur.check_sigma(v, what=" (the largest of any generator here)")
  return v


def _kernel(v):
  from pulse_jax.forward import blur
  if v is None or v == "":
    return None
  if isinstance(v, blur.KernelSpec):
    return v
  if not isinstance(v, (str, os.PathLike)):
    raise ValueError(f"--blur_kernel must be a file name, got {v!r}")
  return blur.load_kernel(v)


def _choice(name: str, choices) -> Callable[[Any], str]:
  def convert(v):
    if v not in choices:
      raise ValueError(f"--{name} must be one of {', '.join(choices)}, got {v!r}")
    return str(v)
  return convert


def _bool(name: str) -> Callable[[Any], bool]:
  def convert(v):
    if not isinstance(v, (bool, np.bool_)):
      raise ValueError(f"--{name} must be true or false, got {v!r}")
    return bool(v)
  return convert


def _path(name: str) -> Callable[[Any], str | None]:
  def convert(v):
    if v is None or v == "":
      return None
    if not isinstance(v, (str, os.PathLike)):
      raise ValueError(f"--{name} must be a file or folder name, got {v!r}")
    return os.fspath(v)
  return convert


# ----------------------------------------------------------------------------- the operators

def _gaussian_blur(m, x, arrays):
  from pulse_jax.forward import blur
  return blur.gaussian_blur(x, m.blur_sigma)


def _gaussian_operator(m) -> str | None:
  from pulse_jax.forward import blur
  return (f"gaussian_blur(sigma={m.blur_sigma:g}, radius={blur.gaussian_radius(m.blur_sigma)}, "
          "reflect)" if m.blur_sigma else None)


def _gaussian_fits(m, chw) -> None:
  from pulse_jax.forward import blur
  c, h, w = chw
  if m.blur_sigma:
    blur.check_sigma(m.blur_sigma, min(h, w), f" ({c}x{h}x{w} generator output)")


def _convolve(m, x, arrays):
  from pulse_jax.forward import blur
  if m.blur_kernel is None:
    return x
  if "kernel" not in arrays:
    raise ValueError("--blur_kernel is set but `arrays` has no 'kernel': pass model.arrays()")
  return blur.convolve(x, arrays["kernel"])


def _kernel_fits(m, chw) -> None:
  _, h, w = chw
  k = m.blur_kernel
  if k is not None and (k.shape[0] > h or k.shape[1] > w):
    raise ValueError(f"--blur_kernel={k.file}: the kernel is {k.shape[0]}x{k.shape[1]}, larger "
                     f"than the {h}x{w} HR image")


def _kernel_arrays(m, dtype) -> dict:
  if m.blur_kernel is None:
    return {}
  return {"kernel": np.asarray(m.blur_kernel.taps, dtype)}


def _downsample(m, x, arrays):
  from pulse_jax.forward import downsample
  return downsample.downsample(x, m.factor, m.downsample)


def _luminance(m, x, arrays):
  from pulse_jax.forward import color
  return color.luminance(x) if m.grayscale else x


def _gray_channels_fit(m, chw) -> None:
  if m.grayscale and chw[0] not in (1, 3):
    raise ValueError(f"--grayscale needs a 1- or 3-channel (RGB) generator, got {chw[0]} channels")


def _gray_target(m, pixels):
  from pulse_jax.forward import color
  return color.gray_target(pixels) if m.grayscale else None


# ----------------------------------------------------------------------------- the table

OPTIONS: tuple[ForwardOption, ...] = (
    ForwardOption(
        "blur_sigma", float, 0.0,
        "Gaussian blur of the HR image before down-sampling: sigma in HR pixels (radius "
        "ceil(3 sigma), reflect boundary); 0: none.",
        check=_blur_sigma_bound, convert=_sigma, apply=_gaussian_blur,
        operator=_gaussian_operator, check_hr=_gaussian_fits),
    ForwardOption(
        "blur_kernel", os.PathLike, None,
        "A blur kernel applied after --blur_sigma: a .npy 2-D array or a grayscale image, "
        "normalised to sum 1; true convolution, reflect boundary.",
        check=_kernel_file, optional=True, convert=_kernel, apply=_convolve,
        describe=lambda k: k.describe() if k else None,
        operator=lambda m: (f"convolve(kernel={m.blur_kernel.file}, "
                            f"{m.blur_kernel.shape[0]}x{m.blur_kernel.shape[1]}, reflect)"
                            if m.blur_kernel else None),
        check_hr=_kernel_fits, arrays=_kernel_arrays),
    ForwardOption(
        "downsample", str, "bicubic",
        "Down-sampler by the factor generator size / input size: bicubic (the reference's) "
        "or area (mean of each factor x factor block).",
        choices=DOWNSAMPLERS, convert=_choice("downsample", DOWNSAMPLERS), apply=_downsample,
        operator=lambda m: f"{m.downsample}(factor={m.factor})" if m.factor > 1 else None),
    ForwardOption(
        "grayscale", bool, False,
        "Compare luminance only (ITU-R BT.601 0.299 R + 0.587 G + 0.114 B): the model and "
        "the target have one channel.",
        convert=_bool("grayscale"), apply=_luminance,
        operator=lambda m: "grayscale(BT.601)" if m.grayscale else None,
        check_hr=_gray_channels_fit, channels=lambda m: 1 if m.grayscale else None,
        prepare_target=_gray_target),
    ForwardOption(
        "mask", os.PathLike, None,
        "Known-pixel masks (white = known, threshold 0.5), the size of the input: one file "
        "for every input, or a folder matched to the inputs by file stem. The loss and the "
        "eps test use only the known pixels.",
        check=_existing_or_empty, optional=True, convert=_path("mask")),
    ForwardOption(
        "noise_sigma", float, 0.0,
        "Std of the noise the input carries, in [0, 1] units: the model is unchanged, the "
        "eps test uses max(eps, noise_sigma^2).",
        check=_unit_interval, convert=_number("noise_sigma", upper=1.0)),
)
