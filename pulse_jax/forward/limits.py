"""Bounds of the forward model that its option checks and its operators share (no jax here)."""

# The largest HR image of any generator family here (StyleGAN: 4096 px). A kernel (or the
# 2 r + 1 Gaussian taps) may not be larger than the HR image (`ForwardModel.check_hr_shape`);
# before the generator is known, files are refused beyond this, from their headers.
MAX_HR_SIDE = 4096
