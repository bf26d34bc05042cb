"""How chaotic is the reference's default search in float32? (justifies test tolerances)

Runs the PULSE reference's own search loop (its G_synthesis, BicubicDownSample, loss terms,
SphericalOptimizer, LambdaLR schedule) from the starting values of
`../shared/fixtures/loop_default.npz` twice, in float32 and in float64, on the CPU, and
prints how far the float32 trace and variables drift from float64. The reference checkout
(github adamian98/pulse) is imported from --reference_dir at run time; nothing of it is
copied here. Needs torch (the `[bench]` extra).

  python -m experiments.reference_float64 --reference_dir=/tmp/pulse_ref

Measured on the 2-core CPU (torch 2.13, 2026-11-22): float32 vs float64 loss up to 1.36e-2
relative (steps 21-26), latent max |diff| 0.17; the fixture vs a float32 rerun here: 1.7e-2.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("reference_dir", None, "A checkout of github adamian98/pulse.")
flags.DEFINE_string("fixtures", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                             "fixtures"), "The reference fixtures folder.")


def run_reference(dtype_name: str, fixtures: str) -> tuple[np.ndarray, np.ndarray]:
  """(per-step total loss [30], final latent [1, 18, 512]) of the reference loop in `dtype`."""
  import torch
  import torch.nn.functional as F
  from SphericalOptimizer import SphericalOptimizer  # the reference's modules
  from bicubic import BicubicDownSample
  from stylegan import G_synthesis
  dtype = getattr(torch, dtype_name)
  z = np.load(os.path.join(fixtures, "loop_default.npz"))
  g = G_synthesis(resolution=1024, fmap_base=1024, fmap_max=32)
  g.load_state_dict(torch.load(os.path.join(fixtures, "synthesis_tiny1024.pt")))
  g = g.to(dtype)
  fit = torch.load(os.path.join(fixtures, "real", "gaussian_fit.pt"), map_location="cpu")
  fit = {k: v.to(dtype) for k, v in fit.items()}
  latent = torch.tensor(z["latent_init"]).to(dtype).requires_grad_(True)
  noise, trainable, k = [], [], 0
  for i in range(18):
    r = 2 ** (i // 2 + 2)
    if i == 17:  # bad_noise_layers="17"
      noise.append(torch.zeros(1, 1, r, r, dtype=dtype))
      continue
    t = torch.tensor(z[f"noise_init_{k}"]).to(dtype)
    k += 1
    if i < 5:
      t.requires_grad_(True)
      trainable.append(t)
    noise.append(t)
  opt = SphericalOptimizer(torch.optim.Adam, [latent] + trainable, lr=0.4)
  steps = 30
  mult = lambda x: ((9 * (1 - abs(x / (0.9 * steps) - 0.5) * 2) + 1) / 10 if x < 0.9 * steps
                    else 0.1 + (x - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 0.1))
  sched = torch.optim.lr_scheduler.LambdaLR(opt.opt, mult)
  down = BicubicDownSample(factor=64, cuda=False)
  k1, k2 = down.k1.to(dtype), down.k2.to(dtype)
  ref = torch.tensor(z["ref_im"]).to(dtype)
  trace = []
  for _ in range(steps):
    opt.opt.zero_grad()
    w = F.leaky_relu(latent * fit["std"] + fit["mean"], 0.2)
    img = (g(w, noise) + 1) / 2
    pad = (4 * 64 - 64) // 2  # the reference's reflect padding, in `dtype`
    x = F.conv2d(F.pad(img, (0, 0, pad, pad), "reflect"), k1, stride=(64, 1), groups=3)
    lr = F.conv2d(F.pad(x, (pad, pad, 0, 0), "reflect"), k2, stride=(1, 64), groups=3)
    l2 = ((lr - ref) ** 2).mean((1, 2, 3)).clamp(min=2e-3).sum()
    a, b = w.view(-1, 1, 18, 512), w.view(-1, 18, 1, 512)
    d = 2 * torch.atan2(((a - b) ** 2).sum(-1).add(1e-9).sqrt(), ((a + b) ** 2).sum(-1).add(1e-9).sqrt())
    loss = 100 * l2 + 0.05 * ((d ** 2 * 512).mean((1, 2)) / 8).sum()
    trace.append(loss.item())
    loss.backward()
    opt.step()
    sched.step()
  return np.array(trace), latent.detach().double().numpy()


def main(argv):
  del argv
  if not FLAGS.reference_dir:
    raise app.UsageError("--reference_dir (a checkout of github adamian98/pulse) is required.")
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  sys.path.insert(0, os.path.abspath(FLAGS.reference_dir))
  t32, l32 = run_reference("float32", FLAGS.fixtures)
  t64, l64 = run_reference("float64", FLAGS.fixtures)
  fixture = np.load(os.path.join(FLAGS.fixtures, "loop_default.npz"))
  print("per-step |f32 - f64| / f64:", np.array2string(np.abs(t32 - t64) / t64, precision=6))
  print(f"max loss drift f32 vs f64: {np.max(np.abs(t32 - t64) / t64):.3e}")
  print(f"max loss drift fixture vs f32 rerun: "
        f"{np.max(np.abs(t32 - fixture['trace'][:, 0]) / fixture['trace'][:, 0]):.3e}")
  print(f"final latent max |f32 - f64|: {np.abs(l32 - l64).max():.3f}")


if __name__ == "__main__":
  app.run(main)
