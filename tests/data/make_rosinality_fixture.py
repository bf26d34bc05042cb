"""Writes tests/data/rosinality_tiny32.{pt,npz}: a tiny random generator of rosinality's
stylegan2-pytorch, saved as its train.py saves checkpoints, and its own outputs.

Runs rosinality's `model.py` from a checkout given on the command line (never copied here),
on the CPU (its `op` package falls back to native PyTorch there; the CUDA extensions it would
compile at import are stubbed out), with torch installed:

  git clone https://github.com/rosinality/stylegan2-pytorch /tmp/rosi
  python tests/data/make_rosinality_fixture.py /tmp/rosi

The channel table of its `Generator` (512 below 64 px) is replaced by a small one (16, 16, 16,
8 for 4..32 px) so that the file stays small; everything else is rosinality's code. Every
parameter and noise buffer is redrawn N(0, 0.3^2) (its initialisation leaves the noise weights
and biases at 0, which would test nothing).
"""
import argparse
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL_CHANNELS = "{4: 16, 8: 16, 16: 16, 32: 8, 64: 8, 128: 8, 256: 8, 512: 8, 1024: 8}"


def load_model_module(checkout: str):
  import torch.utils.cpp_extension as ext
  ext.load = lambda *a, **k: None  # the CUDA ops are not used on the CPU
  sys.path.insert(0, checkout)
  src = open(os.path.join(checkout, "model.py")).read()
  start = src.index("self.channels = {")
  end = src.index("}", start) + 1
  src = src[:start] + "self.channels = " + SMALL_CHANNELS + src[end:]
  module = types.ModuleType("rosinality_model")
  module.__file__ = os.path.join(checkout, "model.py")
  exec(compile(src, module.__file__, "exec"), module.__dict__)
  return module


def main(checkout: str) -> None:
  model = load_model_module(checkout)
  torch.manual_seed(0)
  size, style_dim, n_mlp = 32, 16, 2
  g_ema = model.Generator(size, style_dim, n_mlp, channel_multiplier=2)
  g = model.Generator(size, style_dim, n_mlp, channel_multiplier=2)
  with torch.no_grad():
    for net in (g_ema, g):
      for name, p in list(net.named_parameters()) + [
          (n, b) for n, b in net.named_buffers() if n.startswith("noises.")]:
        p.copy_(torch.randn_like(p) * 0.3)
  g_ema.eval()
  z = torch.randn(3, style_dim)
  noise = [getattr(g_ema.noises, f"noise_{i}") for i in range(g_ema.num_layers)]
  with torch.no_grad():
    latent_avg = g_ema.mean_latent(4096)
    image, ws = g_ema([z], noise=noise, return_latents=True)
    image_none, _ = g_ema([ws], input_is_latent=True,
                          noise=[torch.zeros_like(n) for n in noise])
    image_trunc, _ = g_ema([z], noise=noise, truncation=0.7, truncation_latent=latent_avg)
  args = argparse.Namespace(size=size, latent=style_dim, n_mlp=n_mlp, channel_multiplier=2,
                            lr=0.002, r1=10.0)
  torch.save({"g": g.state_dict(), "g_ema": g_ema.state_dict(), "args": args,
              "latent_avg": latent_avg[0]}, os.path.join(HERE, "rosinality_tiny32.pt"))
  np.savez(os.path.join(HERE, "rosinality_tiny32.npz"), z=z.numpy(), ws=ws.numpy(),
           image_const=image.numpy(), image_none=image_none.numpy(),
           image_trunc=image_trunc.numpy(), latent_avg=latent_avg[0].numpy())
  print("wrote", os.path.join(HERE, "rosinality_tiny32.{pt,npz}"), tuple(image.shape),
        f"torch {torch.__version__}")


if __name__ == "__main__":
  main(sys.argv[1])
