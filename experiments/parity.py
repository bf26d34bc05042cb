"""Parity with the reference on the same random weights, in one process.

1. One forward of the synthesis network in each (the same w [1, L, 512] and noise maps):
   max |pulse-jax - reference| of the [-1, 1] images.
2. A short search from identical starting values: the reference's own `PULSE.forward` runs
   first; the latent and noise maps it drew are given to `program.init_state(start=...)`; the
   per-step loss traces (TOTAL, L2, GEOCROSS, before each step's update) are compared
   (skipped with steps 0).
The reference hard-codes 18 style rows, so parity needs resolution 1024 (any fmap sizes).
"""
from __future__ import annotations

import time

import numpy as np

from experiments import measure


def run_parity(spec: dict) -> dict:
  """spec: resolution (1024), fmap_base, fmap_max, lr_size, steps, weights (paths),
  reference_dir, reference_device, seed."""
  import jax
  import jax.numpy as jnp
  from experiments import reference_adapter as ra
  from pulse_jax.search import program
  from pulse_jax.generators import Generator

  if spec["resolution"] != 1024:
    raise ValueError("parity needs resolution 1024: the reference hard-codes 18 style rows.")
  t0 = time.perf_counter()
  ref = ra.load_reference(spec["reference_dir"])
  torch = ref.torch
  device = ra.pick_device(torch, spec.get("reference_device", "auto"))
  pulse = ra.build_pulse(ref, spec["weights"][0], spec["weights"][1], spec["resolution"],
                         spec["fmap_base"], spec["fmap_max"], device)
  cfg, params = measure.jax_params(spec)
  L = cfg.num_layers
  out: dict = {"resolution": cfg.resolution, "fmap_base": cfg.fmap_base,
               "fmap_max": cfg.fmap_max, "reference_device": device}

  # 1. forward
  rng = np.random.default_rng(spec.get("seed", 0) + 1)
  w = rng.standard_normal((1, L, cfg.dlatent_size)).astype(np.float32)
  noise = [rng.standard_normal((1,) + s).astype(np.float32) for s in cfg.noise_shapes()]
  img_ref = ra.render(ref, pulse, torch.from_numpy(w).to(device),
                      [torch.from_numpy(n).to(device) for n in noise]).cpu().numpy()
  gen = Generator("stylegan", cfg)
  img_jax = np.asarray(jax.jit(gen.render)(params, jnp.asarray(w), [jnp.asarray(n) for n in noise]))
  diff = np.abs(img_jax.astype(np.float64) - img_ref)
  out["forward"] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                    "max_abs_reference": float(np.abs(img_ref).max()),
                    "range_reference": float(img_ref.max() - img_ref.min()),
                    "image_std_reference": float(img_ref.std()), "shape": list(img_ref.shape)}

  # 2. short search from identical starting values (batch 1); steps 0: the forward only
  steps = spec["steps"]
  if steps <= 0:
    out["wall_s"] = time.perf_counter() - t0
    return out
  lr = spec["lr_size"]
  factor = cfg.resolution // lr
  target = measure.target_image(1, lr, spec.get("seed", 0))
  res = ra.run_search(ref, pulse, torch.from_numpy(target), ra.default_options(steps), device,
                      factor)
  problem = measure.make_problem(cfg, "float32", False, lr, steps, steps, spec.get("seed", 0))
  kinds = problem.noise_kinds()
  drawn = [t.cpu().numpy() for t in res["drawn"]]
  nonzero = [i for i, k in enumerate(kinds) if k != "zero"]
  if len(drawn) != 1 + len(nonzero):
    raise RuntimeError(f"the reference drew {len(drawn)} tensors; expected the latent and "
                       f"{len(nonzero)} noise maps")
  start = {"latent": jnp.asarray(drawn[0]),
           "noise": {str(i): jnp.asarray(a) for i, a in zip(nonzero, drawn[1:])}}
  state = program.init_state(problem, jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32),
                            start=start)
  state, trace = program.run_chunk(problem, params, state, jnp.asarray(target))
  traces = {}
  worst = 0.0
  for name in ("TOTAL", "L2", "GEOCROSS"):
    a = np.asarray(trace[name])[:, 0].astype(np.float64)
    b = np.asarray(res["trace"][name], np.float64)
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    traces[name] = {"pulse_jax": a.tolist(), "reference": b.tolist(),
                    "max_rel_diff": float(rel.max())}
    worst = max(worst, float(rel.max()))
  out["search"] = {"steps": steps, "lr_size": lr, "traces": traces, "max_rel_diff": worst,
                   "options": {k: v for k, v in ra.default_options(steps).items()}}
  out["wall_s"] = time.perf_counter() - t0
  return out
