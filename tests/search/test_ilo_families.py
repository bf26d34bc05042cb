"""ILO for every family through `runtime.loop.search_images`: the search visits the family's
default cut points, stays finite and in its balls, and the kept images are the generator's
rest of the network from the saved start values (latent, noise maps, 'ilo.<layer>[.<key>]').

Tiny random networks: the 16 px StyleGAN of tests/support/scale_worker.py, the 32 px StyleGAN2
and StyleGAN3 of tests/generators/test_split.py.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from support import scale_worker
from support.ilo_cases import split_cases

from pulse_jax.runtime import loop
from pulse_jax.search import program
from pulse_jax.search.config import SearchConfig

# The kept images as the search rendered them (inside its compiled chunk) vs rendered here
# op by op: float32 rounding of other fusions (measured 2026-12-06: 0 for the StyleGAN, 1.5e-7
# StyleGAN2, 6e-8 StyleGAN3).
RERENDER_ATOL = 1e-6


def _stylegan1():
  g, params, ref, config = scale_worker.tiny_problem(images=1, steps=2, seed=0)
  return g, params, ref, config


def _from_split(name: str):
  def make():
    g, params = split_cases().CASES[name]()
    d = g.latent_dim   # the search's prior: a standard Gaussian fit
    params = {**params, "gaussian_fit": {"mean": np.zeros(d, np.float32),
                                         "std": np.ones(d, np.float32)}}
    ref = np.random.RandomState(0).rand(1, 3, 8, 8).astype(np.float32)
    return g, params, ref, SearchConfig(steps=2, seed=0, bad_noise_layers="")
  return make


FAMILIES = {"stylegan": _stylegan1, "stylegan2": _from_split("stylegan2_skip"),
            "stylegan3": _from_split("stylegan3_t")}


def _rerender(g, params, start_values: dict, layer: str) -> np.ndarray:
  """[B, K, C, H, W] in [0, 1]: the rest of the network from the saved kept activation."""
  b, k = start_values["latent"].shape[:2]
  rows = lambda a: jnp.asarray(np.asarray(a).reshape((b * k,) + a.shape[2:]))
  prepared = g.prepare(params)
  w = g.latent_to_w(prepared, rows(start_values["latent"]))
  noise = [rows(start_values[f"noise_{i}"]) if f"noise_{i}" in start_values
           else jnp.zeros((b * k,) + s, g.float_dtype) for i, s in enumerate(g.noise_shapes)]
  key = f"{program.ILO_PREFIX}{layer}"
  if key in start_values:
    act = rows(start_values[key])
  else:   # a pytree activation (StyleGAN2: x and img)
    act = {n[len(key) + 1:]: rows(v) for n, v in start_values.items() if n.startswith(key + ".")}
  hr = (g.render_from(prepared, w, noise, layer, act) + 1) / 2
  return np.clip(np.asarray(hr), 0, 1).reshape((b, k) + hr.shape[1:])


@pytest.mark.slow   # a compiled search with every default layer: 17 to 74 s on 2 busy CPU cores
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_searches_its_default_layers(family):
  g, params, ref, config = FAMILIES[family]()
  config = dataclasses.replace(config, ilo=True, ilo_steps=2, ilo_layers="")
  layers = g.ilo_default_layers
  total_steps = config.steps + len(layers) * config.ilo_steps   # one chunk: one compile
  r = loop.search_images(g, params, ref, config=config, restarts=2, chunk_size=total_steps, keep=2)
  assert r.ilo_layers == layers and r.ilo_kept_layer == layers[-1]
  assert np.all(r.steps_run == total_steps)
  assert np.all(np.isfinite(r.total)) and np.all(np.isfinite(r.hr))
  for t in r.trace.values():
    assert np.all(np.isfinite(t))
  assert set(r.ilo_moved) == set(layers)
  for layer, moved in r.ilo_moved.items():
    assert moved.shape == (1, 2) and np.all(moved <= config.ilo_radius * (1 + 1e-5)), (layer, moved)
  saved = {k for k in r.start_values if k.startswith(program.ILO_PREFIX)}
  assert saved and all(k.startswith(f"{program.ILO_PREFIX}{layers[-1]}") for k in saved), saved
  np.testing.assert_allclose(_rerender(g, params, r.start_values, layers[-1]), r.hr,
                             rtol=0, atol=RERENDER_ATOL)
