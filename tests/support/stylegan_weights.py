"""Tiny, well-conditioned StyleGAN2 / StyleGAN3 weight folders for the search tests (CPU).

NVIDIA's random-weight fixtures draw every weight from N(0, 0.25) (a nearly constant mapping,
images outside [-1, 1]); these are made with NVIDIA's initialisation instead and saved with
`pulse_jax.io.weights_dir.save_weights`.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp

from pulse_jax import generators
from pulse_jax.io.weights_dir import GeneratorWeights, save_weights
from pulse_jax.nets import stylegan2 as sg2


def healthy_sg2(directory, c_dim: int = 0, seed: int = 0, fit: bool | None = None) -> pathlib.Path:
  """A tiny StyleGAN2 (32 px, w_dim 64, 7 noise layers) with NVIDIA's initialisation, noise
  strengths 0.2 and the ToRGB weights scaled by 0.3 (images inside [-1, 1]); the prior fitted
  on 4096 samples (per class for a conditional model) when `fit` (default: unless
  conditional). Saved with `save_weights`; returns the folder."""
  cfg = sg2.Stylegan2Config(z_dim=64, w_dim=64, c_dim=c_dim, img_resolution=32,
                            channel_base=256, channel_max=16, mapping_layers=2, num_fp16_res=0)

  def adjust(path, v):
    name = jax.tree_util.keystr(path)
    if "noise_strength" in name:
      return jnp.full_like(v, 0.2)
    return v * 0.3 if "torgb" in name and "kernel" in name else v

  params = jax.tree_util.tree_map_with_path(adjust, sg2.init_params(jax.random.PRNGKey(seed), cfg))
  if (not c_dim) if fit is None else fit:
    params["gaussian_fit"] = generators.family("stylegan2").fit_prior(params, cfg,
                                                                      num_samples=4096, seed=0)
  return pathlib.Path(save_weights(str(directory), GeneratorWeights("stylegan2", cfg, params, {})))


def healthy_sg3(directory) -> pathlib.Path:
  """A tiny StyleGAN3-T (32 px, w_dim 64) with NVIDIA's initialisation and its prior."""
  from pulse_jax.nets import stylegan3 as sg3
  cfg = sg3.Stylegan3Config(z_dim=64, w_dim=64, img_resolution=32, channel_base=1024,
                            channel_max=16, mapping_num_layers=2, num_fp16_res=0)
  params = sg3.init_params(jax.random.PRNGKey(0), cfg)
  params["gaussian_fit"] = generators.family("stylegan3").fit_prior(params, cfg,
                                                                    num_samples=4096, seed=0)
  return pathlib.Path(save_weights(str(directory), GeneratorWeights("stylegan3", cfg, params, {})))
