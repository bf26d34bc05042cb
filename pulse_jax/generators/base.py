"""The generator-family interface: what the search, driver, render and checkpoint code may ask.

A family (StyleGAN v1, the DCGAN, StyleGAN2, ...) is ONE module in this package that subclasses
`Family`, plus one line in `registry.py`; its converter is its name-table module in
`weights_convert/tables/` plus one line in `weights_convert/tables/registry.py` (the runtime
never imports `weights_convert`). Nothing else in pulse-jax knows which families exist.

Shapes: `ws: [N, num_ws, w_dim]` (the generator's style input, W+ for StyleGANs, the latent
itself for the DCGAN); search variable `x: [N, latent_layers, w_dim]` standard normal (mapped
into ws by `prior`); noise maps `[N, 1, r_i, r_i]` per noise layer; images `[N, C, H, W]` in
about [-1, 1], float32 (float64 in verification mode).
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import jax
import jax.numpy as jnp


class Family(abc.ABC):
  """One generator family. Methods are pure functions of (params, config, arrays)."""

  kind: str = ""                       # metadata.json "kind"
  required_parts: tuple[str, ...] = ()  # params parts a search needs
  has_wplus: bool = False              # whether GEOCROSS (distances between styles) applies
  # Search options that have a meaning for this family (the reports list only those).
  uses_noise_options: bool = False
  supports_compute_dtype: bool = False  # --compute_dtype changes how `synthesize` computes
  supports_remat: bool = False          # --remat changes how `synthesize` computes

  # ----- architecture -----
  @abc.abstractmethod
  def config_from_dict(self, d: dict) -> Any:
    """The family's frozen config from metadata.json's "config"."""

  @abc.abstractmethod
  def part_shapes(self, config, part: str) -> Any:
    """Abstract tree of `jax.ShapeDtypeStruct` of one params part (nothing allocated); raise
    ValueError for a part this family does not have."""

  @abc.abstractmethod
  def resolution(self, config) -> int: ...

  @abc.abstractmethod
  def num_channels(self, config) -> int: ...

  @abc.abstractmethod
  def num_ws(self, config) -> int:
    """Rows of the style input (W+ rows; 1 for a single-vector latent)."""

  @abc.abstractmethod
  def w_dim(self, config) -> int: ...

  def noise_shapes(self, config) -> tuple[tuple[int, int, int], ...]:
    """Per noise layer (1, r, r), in the order `synthesize` takes them; () for none."""
    return ()

  def latent_layers(self, config, tile_latent: bool) -> int:
    """Rows of the search variable: 1 when tiled (one vector for every style row)."""
    return 1 if tile_latent else self.num_ws(config)

  def search_defaults(self, config) -> dict:
    """Search options whose default differs for this family (used when not given)."""
    return {}

  def fit_prior(self, params: dict, config, *, num_samples: int, seed: int,
                progress=None) -> dict:
    """The prior's 'gaussian_fit' part from the 'mapping' part (at conversion)."""
    raise ValueError(f"{self.kind}: no prior fit from a mapping network.")

  def notes(self, config) -> list[str]:
    """Facts about this family a run should print (e.g. options that do not apply)."""
    return []

  # ----- run time -----
  def prepare(self, params: dict, config, dtype) -> dict:
    """Run-time weights for `synthesize` (computed once per compiled program)."""
    return params

  @abc.abstractmethod
  def synthesize(self, prepared: dict, config, ws: jax.Array, noise: Sequence[jax.Array],
                 dtype, remat: str) -> jax.Array:
    """ws: [N, num_ws, w_dim]; noise: one [N, 1, r, r] per noise layer -> [N, C, H, W]."""

  # ----- cut points (ILO: intermediate-layer optimisation) -----
  def ilo_layers(self, config) -> tuple[str, ...]:
    """Names of the points where `synthesize` can be cut, in network order (e.g. 'b4', 'b8',
    .. after each StyleGAN block); () for a family that cannot be cut."""
    return ()

  def ilo_default_layers(self, config) -> tuple[str, ...]:
    """The cut points an ILO search visits by default, in order (a prefix of `ilo_layers`)."""
    return ()

  def synthesize_until(self, prepared: dict, config, ws: jax.Array,
                       noise: Sequence[jax.Array], dtype, remat: str, layer: str) -> Any:
    """`synthesize` up to the cut point `layer` (one of `ilo_layers`): its activation, a
    pytree of [N, ...] arrays (everything the rest of the network needs). Arguments as
    `synthesize` (all style rows and noise maps)."""
    raise ValueError(f"a {self.kind} generator has no cut points (ILO does not apply).")

  def synthesize_from(self, prepared: dict, config, ws: jax.Array, noise: Sequence[jax.Array],
                      dtype, remat: str, layer: str, activation: Any,
                      until: str | None = None) -> jax.Array:
    """The rest of `synthesize` after the cut point `layer`, from `activation` (as
    `synthesize_until` returns it) -> images [N, C, H, W]; `synthesize_from(..,
    synthesize_until(..))` is `synthesize`. With `until` (a later cut point): the activation
    there (the stages between two cuts) instead of the image."""
    raise ValueError(f"a {self.kind} generator has no cut points (ILO does not apply).")

  def activation_shapes(self, config, layer: str, dtype=jnp.float32, batch: int = 1) -> Any:
    """`synthesize_until`'s output for `batch` rows as a tree of `jax.ShapeDtypeStruct`
    (nothing computed or allocated); `dtype` the compute dtype."""
    params = {part: self.part_shapes(config, part) for part in self.required_parts}
    ws = self.vector((batch, self.num_ws(config), self.w_dim(config)))
    noise = [self.vector((batch,) + tuple(s)) for s in self.noise_shapes(config)]
    until = lambda p, ws, noise: self.synthesize_until(self.prepare(p, config, dtype), config, ws,
                                                       noise, dtype, "none", layer)
    return jax.eval_shape(until, params, ws, noise)

  @abc.abstractmethod
  def prior(self, params: dict, config, x: jax.Array) -> jax.Array:
    """PULSE's latent prior: standard-normal x [N, l, w_dim] -> ws [N, l, w_dim] (l = 1 or
    num_ws; the caller broadcasts l = 1)."""

  def num_classes(self, config) -> int:
    """Classes of a conditional model (NVIDIA's c_dim); 0 for an unconditional one."""
    return 0

  def search_params(self, params: dict, config, class_index: int | None = None) -> dict:
    """The params a search uses: for a conditional model, those of class `class_index`
    (required there; e.g. its prior's row); elsewhere `class_index` must be None."""
    if class_index is not None:
      raise ValueError(f"--class_index={class_index} given, but this {self.kind} model is "
                       "unconditional.")
    return params

  def mapping(self, params: dict, config, z: jax.Array, truncation_psi: float = 1.0,
              class_index: int | None = None,
              truncation_cutoff: int | None = None) -> jax.Array:
    """z [N, z_dim] -> ws [N, num_ws, w_dim] through the mapping network (render's 'z');
    truncation towards the average w on the rows below `truncation_cutoff` (None: all);
    `class_index` picks the class of a conditional model (required there, refused elsewhere)."""
    raise ValueError(f"{self.kind} weights carry no mapping network: render 'dlatents' or "
                     "'latent' instead of 'z'.")

  def const_noise(self, params: dict, config, batch: int) -> list[jax.Array] | None:
    """The model's own constant noise maps (NVIDIA's noise_mode='const'), or None when it has
    none (then zeros are used)."""
    return None

  # ----- helpers -----
  @staticmethod
  def vector(shape, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), dtype)
