"""The forward model: the degradation D from the HR image to what the camera saw.

`ForwardModel` (model.py) composes the operators of the `OPTIONS` registry: Gaussian blur
(blur.py), user kernel (blur.py), bicubic or area down-sampling (downsample.py), grayscale
(color.py); masks (mask.py) and the noise eps rule do not change D. See docs/forward.md.
"""
from pulse_jax.forward.blur import KernelError, KernelSpec, load_kernel
from pulse_jax.forward.color import LUMA_WEIGHTS
from pulse_jax.forward.mask import MaskError, batch_masks, fit_to_input, load_mask, masks_for
from pulse_jax.forward.model import OPTION_NAMES, OPTIONS, ForwardModel, Option

__all__ = [
    "ForwardModel", "Option", "OPTIONS", "OPTION_NAMES", "KernelError", "KernelSpec",
    "load_kernel", "LUMA_WEIGHTS", "MaskError", "load_mask", "masks_for", "fit_to_input",
    "batch_masks",
]
