"""Why pulse-jax is slower than the reference on the 2-core CPU: one 3x3 conv, forward + backward.

The same convolution (58 GFLOP forward + backward) at three shapes of StyleGAN's synthesis
network, in XLA:CPU (jax) and in torch (oneDNN), both on all cores of this machine.

  python -m experiments.conv_microbench          # torch side skipped when torch is absent

Measured 2026-11-22 on the 2-core AMD EPYC (seconds, fwd + bwd, median of 3):
  64x64x512: jax 1.41, torch 0.83 (1.7x);  256x256x128: jax 2.25, torch 1.01 (2.2x);
  1024x1024x32: jax 2.68, torch 1.97 (1.35x).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

SHAPES = ((64, 512), (256, 128), (1024, 32))


def _median(f, n=3):
  f()
  times = []
  for _ in range(n):
    t = time.perf_counter()
    f()
    times.append(time.perf_counter() - t)
  return sorted(times)[n // 2]


def jax_conv(h, c):
  x = jax.random.normal(jax.random.key(0), (1, h, h, c))
  k = jax.random.normal(jax.random.key(1), (3, 3, c, c))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  g = jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) ** 2), (0, 1)))
  return _median(lambda: jax.block_until_ready(g(x, k)))


def torch_conv(h, c):
  import os
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  x = torch.randn(1, c, h, h, requires_grad=True)
  k = torch.randn(c, c, 3, 3, requires_grad=True)
  def step():
    (torch.nn.functional.conv2d(x, k, padding=1) ** 2).sum().backward()
  return _median(step)


def main():
  try:
    import torch  # noqa: F401
    have_torch = True
  except ImportError:
    have_torch = False
  for h, c in SHAPES:
    tj = jax_conv(h, c)
    line = f"{h}x{h}x{c}: jax {tj:.2f} s"
    if have_torch:
      tt = torch_conv(h, c)
      line += f", torch {tt:.2f} s ({tj / tt:.2f}x)"
    print(line)


if __name__ == "__main__":
  main()
