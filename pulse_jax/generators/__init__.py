"""The generator the search runs on, for any registered family (`registry.FAMILIES`).

A `Generator` is a frozen, hashable description (static under jit): the family's kind, its
config, the compute dtype and the remat policy. Its methods are pure functions of the
parameter pytree, which is always passed into jit as an argument, never closed over; each
delegates to the family (`generators.base.Family`), so nothing outside this package asks which
family it is.

Search variables per restart:
  latent x: [N, latent_layers, w_dim] float32, standard normal before the prior mapping
  noise maps (families with noise layers): [N, 1, r_i, r_i] for layer i
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from pulse_jax.core.dtypes import COMPUTE_DTYPES
from pulse_jax.nets.stylegan1 import REMAT_POLICIES
from pulse_jax.generators.base import Family
from pulse_jax.generators.registry import FAMILIES, family, kinds

__all__ = ["COMPUTE_DTYPES", "FAMILIES", "Family", "Generator", "family", "from_weights", "kinds"]


@dataclasses.dataclass(frozen=True)
class Generator:
  """A generator of family `kind` (`registry.FAMILIES`) with architecture `config`."""
  kind: str
  config: object
  compute_dtype: str = "float32"
  remat: str = "none"  # nets.stylegan1.REMAT_POLICIES; True / False mean "block" / "none"

  def __post_init__(self):
    if isinstance(self.remat, bool):
      object.__setattr__(self, "remat", "block" if self.remat else "none")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}.")
    family(self.kind)  # raises for an unknown kind
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}.")
    if self.compute_dtype == "float64" and not jax.config.jax_enable_x64:
      raise ValueError("compute_dtype='float64' needs jax's 64-bit mode: set JAX_ENABLE_X64=1 or "
                       "jax.config.update('jax_enable_x64', True) before the first jax call.")

  @property
  def family(self) -> Family:
    return FAMILIES[self.kind]

  @property
  def resolution(self) -> int:
    return self.family.resolution(self.config)

  @property
  def num_channels(self) -> int:
    return self.family.num_channels(self.config)

  @property
  def num_layers(self) -> int:
    """Rows of the style input (W+ rows); 1 for a single-vector latent."""
    return self.family.num_ws(self.config)

  @property
  def latent_dim(self) -> int:
    return self.family.w_dim(self.config)

  def latent_layers(self, tile_latent: bool) -> int:
    return self.family.latent_layers(self.config, tile_latent)

  @property
  def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """Per-layer noise map shape (1, r, r) without the batch dim; empty without noise layers."""
    return tuple(self.family.noise_shapes(self.config))

  @property
  def num_noise_layers(self) -> int:
    return len(self.noise_shapes)

  @property
  def has_wplus(self) -> bool:
    """Whether GEOCROSS (pairwise distances between style vectors) is meaningful."""
    return self.family.has_wplus

  def required_parts(self) -> tuple[str, ...]:
    return self.family.required_parts

  def latent_to_w(self, params: dict, x: jax.Array) -> jax.Array:
    """Prior mapping. x: [N, l, D] -> w: [N, num_layers, D] (tiled when l == 1)."""
    w = self.family.prior(params, self.config, x)
    return jnp.broadcast_to(w, (w.shape[0], self.num_layers, w.shape[2]))

  def mapping(self, params: dict, z: jax.Array, truncation_psi: float = 1.0,
              class_index: int | None = None,
              truncation_cutoff: int | None = None) -> jax.Array:
    """The family's mapping network: z [N, z_dim] -> w [N, num_layers, D] (`Family.mapping`)."""
    return self.family.mapping(params, self.config, z, truncation_psi, class_index,
                               truncation_cutoff)

  def search_params(self, params: dict, class_index: int | None = None) -> dict:
    """The params a search uses (a conditional model: its class's prior; `Family.search_params`)."""
    return self.family.search_params(params, self.config, class_index)

  @property
  def num_classes(self) -> int:
    """Classes of a conditional model (0: unconditional)."""
    return self.family.num_classes(self.config)

  def const_noise(self, params: dict, batch: int) -> list[jax.Array] | None:
    return self.family.const_noise(params, self.config, batch)

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
    return self.family.prepare(params, self.config, self.dtype)

  def render_prepared(self, prepared: dict, w: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
    """Like `render`, on `prepare(params)`."""
    return self.family.synthesize(prepared, self.config, w, noise, self.dtype, self.remat)

  # ----- cut points (ILO) -----
  @property
  def ilo_layers(self) -> tuple[str, ...]:
    """Names of the cut points of the synthesis, in network order (`Family.ilo_layers`)."""
    return tuple(self.family.ilo_layers(self.config))

  @property
  def ilo_default_layers(self) -> tuple[str, ...]:
    """The cut points an ILO search visits by default, in order (`Family.ilo_default_layers`)."""
    return tuple(self.family.ilo_default_layers(self.config))

  def render_until(self, prepared: dict, w: jax.Array, noise: Sequence[jax.Array], layer: str):
    """`render_prepared` up to the cut point `layer`: its activation, a pytree of [N, ...]
    arrays (`activation_shapes`). w, noise: all rows and maps, as `render_prepared`."""
    return self.family.synthesize_until(prepared, self.config, w, noise, self.dtype, self.remat,
                                        layer)

  def render_from(self, prepared: dict, w: jax.Array, noise: Sequence[jax.Array], layer: str,
                  activation, until: str | None = None) -> jax.Array:
    """The rest of `render_prepared` after the cut point `layer`, from `activation` ->
    images [N, C, H, W]: `render_from(.., render_until(..))` is `render_prepared(..)`. With
    `until` (a later cut point): the activation there (`render_until(.., until)` when
    `activation` is `render_until(.., layer)`)."""
    return self.family.synthesize_from(prepared, self.config, w, noise, self.dtype, self.remat,
                                       layer, activation, until)

  def activation_shapes(self, layer: str, batch: int = 1):
    """`render_until`'s output for `batch` rows as a tree of `jax.ShapeDtypeStruct`."""
    return self.family.activation_shapes(self.config, layer, self.dtype, batch)

  def render(self, params: dict, w: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
    """w: [N, num_layers, D]; noise: list of [N, 1, r, r] -> images [N, C, H, W] float32 in ~[-1, 1]."""
    return self.render_prepared(self.prepare(params), w, noise)

  def notes(self) -> list[str]:
    return self.family.notes(self.config)


def from_weights(weights, compute_dtype: str = "float32", remat: str | bool = "none") -> Generator:
  """A `Generator` for a loaded `pulse_jax.io.weights_dir.GeneratorWeights`."""
  g = Generator(weights.kind, weights.config, compute_dtype, remat)
  missing = [p for p in g.required_parts() if p not in weights.params]
  if missing and g.num_classes and "gaussian_fit" in missing:
    n = g.num_classes
    raise ValueError(
        f"a conditional {g.kind} model ({n} classes, c_dim={n}) converted without its "
        "per-class priors (by an earlier pulse-jax, or with --gaussian_fit_samples=0): the "
        "PULSE search needs them. Convert the pickle again (python -m weights_convert), then "
        f"search one class with --class_index=0..{n - 1}. Rendering works as it is: "
        "python -m pulse_jax.render --weights=DIR --latents=FILE.npz with 'z' and "
        f"--class_index=0..{n - 1}, or with 'dlatents' (W+).")
  if missing:
    hint = (" A StyleGAN search needs the Gaussian fit: convert with gaussian_fit.pt or the "
            "mapping network among the --source files." if "gaussian_fit" in missing else "")
    raise ValueError(f"The weights lack {missing}.{hint}")
  return g
