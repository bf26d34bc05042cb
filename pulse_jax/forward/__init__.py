"""The forward model: the degradation D from the HR image to what the camera saw.

`ForwardModel` (model.py) composes the operators of the forward-option table (options.py, the
one definition of the operators and their flags): Gaussian blur (blur.py), user kernel
(blur.py), bicubic or area down-sampling (downsample.py), grayscale (color.py); masks (mask.py)
and the noise eps rule do not change D. See docs/forward.md.

The names below are imported on first use (PEP 562): `pulse_jax.forward.options` is read by
the job's option registry without importing jax.
"""

# name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "ForwardModel": "pulse_jax.forward.model",
    "OPTIONS": "pulse_jax.forward.options",
    "OPTION_NAMES": "pulse_jax.forward.model",
    "ForwardOption": "pulse_jax.forward.options",
    "KernelError": "pulse_jax.forward.blur",
    "KernelSpec": "pulse_jax.forward.blur",
    "load_kernel": "pulse_jax.forward.blur",
    "LUMA_WEIGHTS": "pulse_jax.forward.color",
    "MaskError": "pulse_jax.forward.mask",
    "batch_masks": "pulse_jax.forward.mask",
    "fit_to_input": "pulse_jax.forward.mask",
    "load_mask": "pulse_jax.forward.mask",
}
_SUBMODULES = ("bicubic", "blur", "color", "downsample", "mask", "model", "options")

__all__ = [
    "ForwardModel", "ForwardOption", "OPTIONS", "OPTION_NAMES", "KernelError",
    "KernelSpec", "load_kernel", "LUMA_WEIGHTS", "MaskError", "load_mask",
    "fit_to_input", "batch_masks",
]


def __getattr__(name):
  import importlib
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
