"""The generator interface the search runs on: StyleGAN v1 (W+ or tiled, noise) and the DCGAN.

A `Generator` is a frozen, hashable description (static under jit); its methods
are pure functions of the parameter pytree, which is always passed into jit as
an argument, never closed over.

Search variables per restart:
  latent x: [N, latent_layers, latent_dim] float32, standard normal before the prior mapping
  noise maps (StyleGAN only): [N, 1, r_i, r_i] for layer i
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from pulse_jax.dcgan import DCGANConfig, DCGANGenerator
from pulse_jax.gaussian_fit import latent_to_w
from pulse_jax import stylegan
from pulse_jax.stylegan import StyleGANConfig


# float64 is a verification mode (under jax x64): a search in float64 reproduces the
# reference's float64 runs to ~1e-9 (tests/test_search.py), where float32 runs are chaotic.
COMPUTE_DTYPES = ("float32", "bfloat16", "float64")


@dataclasses.dataclass(frozen=True)
class Generator:
  """kind 'stylegan' (params {'synthesis', 'gaussian_fit'}) or 'dcgan' (params {'dcgan'})."""
  kind: str
  config: StyleGANConfig | DCGANConfig
  compute_dtype: str = "float32"
  remat: str = "none"  # stylegan.REMAT_POLICIES; True / False mean "block" / "none"

  def __post_init__(self):
    if isinstance(self.remat, bool):
      object.__setattr__(self, "remat", "block" if self.remat else "none")
    if self.remat not in stylegan.REMAT_POLICIES:
      raise ValueError(f"remat must be one of {stylegan.REMAT_POLICIES}, got {self.remat!r}.")
    if self.kind not in ("stylegan", "dcgan"):
      raise ValueError(f"Unknown generator kind {self.kind!r}; expected 'stylegan' or 'dcgan'.")
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}.")
    if self.compute_dtype == "float64" and not jax.config.jax_enable_x64:
      raise ValueError("compute_dtype='float64' needs jax's 64-bit mode: set JAX_ENABLE_X64=1 or "
                       "jax.config.update('jax_enable_x64', True) before the first jax call.")

  @property
  def resolution(self) -> int:
    return self.config.resolution

  @property
  def num_channels(self) -> int:
    return self.config.num_channels if self.kind == "stylegan" else self.config.nc

  @property
  def num_layers(self) -> int:
    """Number of style inputs (W+ rows); 1 for the DCGAN."""
    return self.config.num_layers if self.kind == "stylegan" else 1

  @property
  def latent_dim(self) -> int:
    return self.config.dlatent_size if self.kind == "stylegan" else self.config.nz

  def latent_layers(self, tile_latent: bool) -> int:
    return 1 if (tile_latent or self.kind == "dcgan") else self.num_layers

  @property
  def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """Per-layer noise map shape (1, r, r) without the batch dim; empty for the DCGAN."""
    return self.config.noise_shapes() if self.kind == "stylegan" else ()

  @property
  def has_wplus(self) -> bool:
    """Whether GEOCROSS (pairwise distances between style vectors) is meaningful."""
    return self.kind == "stylegan"

  def required_parts(self) -> tuple[str, ...]:
    return ("synthesis", "gaussian_fit") if self.kind == "stylegan" else ("dcgan",)

  def latent_to_w(self, params: dict, x: jax.Array) -> jax.Array:
    """Prior mapping. x: [N, l, D] -> w: [N, num_layers, D] (tiled when l == 1)."""
    if self.kind == "dcgan":
      return x
    w = latent_to_w(x, params["gaussian_fit"])
    return jnp.broadcast_to(w, (w.shape[0], self.num_layers, w.shape[2]))

  @property
  def dtype(self):
    """The compute dtype of the network's convolutions."""
    return jnp.dtype(self.compute_dtype)

  @property
  def float_dtype(self):
    """Dtype of search variables, images and losses: float32, float64 in verification mode."""
    return jnp.dtype(jnp.float64 if self.compute_dtype == "float64" else jnp.float32)

  def prepare(self, params: dict) -> dict:
    """Run-time parameters for `render_prepared` (a pure function of `params`; the search
    computes it once per compiled chunk, outside its step loop). Same keys as `params`."""
    if self.kind == "dcgan":
      return params
    return {**params, "synthesis": stylegan.prepare_synthesis(params["synthesis"], self.config,
                                                              self.dtype)}

  def render_prepared(self, prepared: dict, w: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
    """Like `render`, on `prepare(params)`."""
    if self.kind == "dcgan":
      return DCGANGenerator(self.config).apply({"params": prepared["dcgan"]},
                                               w.reshape(w.shape[0], -1))
    return stylegan.synthesize(prepared["synthesis"], w, list(noise), self.config, self.dtype,
                               self.remat)

  def render(self, params: dict, w: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
    """w: [N, num_layers, D]; noise: list of [N, 1, r, r] -> images [N, C, H, W] float32 in ~[-1, 1]."""
    return self.render_prepared(self.prepare(params), w, noise)


def from_weights(weights, compute_dtype: str = "float32", remat: str | bool = "none") -> Generator:
  """A `Generator` for a loaded `pulse_jax.checkpoint.GeneratorWeights`."""
  g = Generator(weights.kind, weights.config, compute_dtype, remat)
  missing = [p for p in g.required_parts() if p not in weights.params]
  if missing:
    hint = (" A StyleGAN search needs the Gaussian fit: convert with gaussian_fit.pt or the "
            "mapping network among the --source files." if "gaussian_fit" in missing else "")
    raise ValueError(f"The weights lack {missing}.{hint}")
  return g
