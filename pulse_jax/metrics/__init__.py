"""Image quality metrics (numpy only, no jax): NIQE (`niqe`), PSNR and SSIM against a ground
truth (`fidelity`), and the nearest / bicubic up-sampling baselines (`upsampling`).

A low utility layer like `core` and `io`: it imports numpy and nothing above it."""
