"""PULSE's prior for NVIDIA's StyleGAN2/3: a Gaussian fit of the mapping network's last layer
BEFORE its activation (lrelu 0.2 with gain sqrt 2), the analogue of the reference's fit of
LeakyReLU(5)(w) for StyleGAN v1. The search variable x ~ N(0, I) becomes
ws = pre_to_w(x * std + mean).

A conditional model (c_dim > 0) gets one fit per class, with c = one-hot(class): 'mean' and
'std' are [c_dim, w_dim]; a search selects its class's row (`NvidiaFamily.search_params`,
`pulse_jax.run --class_index`)."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from pulse_jax.generators.gaussian_fit import fit_moments
from pulse_jax.generators.base import Family


def _features(pre_activation, config, class_index, params, z):
  return pre_activation({"mapping": params}, config, z, one_hot(config, z.shape[0], class_index))


def fit_pre_activation(module, mapping_params, config, *, num_samples: int, seed: int,
                       progress=None, class_index: int | None = None) -> dict:
  """{'mean', 'std'} [w_dim] of `module.mapping_pre_activation` over seeded z ~ N(0, I)
  (with c = one-hot(class_index) for a conditional model, where it is required)."""
  feats = functools.partial(_features, module.mapping_pre_activation, config, class_index)
  return fit_moments(feats, mapping_params, config.z_dim, num_samples=num_samples, seed=seed,
                     progress=progress)


def prior(module, params: dict, x):
  """x [N, l, w_dim] standard normal -> ws [N, l, w_dim]."""
  fit = params["gaussian_fit"]
  if fit["mean"].ndim != 1:
    raise ValueError("a conditional model's prior holds one fit per class: select the class "
                     "first (Generator.search_params / --class_index).")
  return module.pre_to_w(x * fit["std"] + fit["mean"])


def check_class(config, class_index) -> int:
  """The class index of a conditional model, checked (ValueError naming the classes)."""
  if class_index is None or not 0 <= int(class_index) < config.c_dim:
    raise ValueError(f"this model is conditional with {config.c_dim} classes: pass its class "
                     f"with --class_index in 0..{config.c_dim - 1} (got {class_index!r}).")
  return int(class_index)


def one_hot(config, batch: int, class_index):
  if not config.c_dim:
    if class_index is not None:
      raise ValueError("--class_index given, but this model is unconditional (c_dim=0).")
    return None
  check_class(config, class_index)
  return jnp.broadcast_to(jnp.eye(config.c_dim)[int(class_index)], (batch, config.c_dim))


class NvidiaFamily(Family):
  """What StyleGAN2 and StyleGAN3 share (`net`: their network module): NVIDIA's config names,
  this prior, the (conditional) mapping."""
  net = None
  required_parts = ("synthesis", "gaussian_fit")
  has_wplus = True

  def resolution(self, config):
    return config.img_resolution

  def num_channels(self, config):
    return config.img_channels

  def num_ws(self, config):
    return config.num_ws

  def w_dim(self, config):
    return config.w_dim

  def prior(self, params, config, x):
    return prior(self.net, params, x)

  def part_shapes(self, config, part):
    """'mapping' and 'synthesis' from the network's `param_shapes`; 'gaussian_fit' the prior."""
    if part == "gaussian_fit":
      return self.prior_shapes(config)
    shapes = self.net.param_shapes(config)
    if part not in shapes:
      raise ValueError(f"Unknown part {part!r} for a {self.kind} generator; parts: "
                       f"{sorted(shapes) + ['gaussian_fit']}.")
    return shapes[part]

  def prior_shapes(self, config) -> dict:
    """The 'gaussian_fit' part: [w_dim] each, [c_dim, w_dim] for a conditional model."""
    shape = (config.c_dim, config.w_dim) if config.c_dim else (config.w_dim,)
    return {"mean": self.vector(shape), "std": self.vector(shape)}

  def fit_prior(self, params, config, *, num_samples, seed, progress=None):
    """The prior fit; for a conditional model one per class (same z draws for each), stacked
    [c_dim, w_dim]; `progress(done, total)` counts samples over all classes."""
    fit = functools.partial(fit_pre_activation, self.net, params["mapping"], config,
                            num_samples=num_samples, seed=seed)
    if not config.c_dim:
      return fit(progress=progress)
    fits = []
    for k in range(config.c_dim):
      step = None if progress is None else (
          lambda done, total, k=k: progress(k * total + done, config.c_dim * total))
      fits.append(fit(progress=step, class_index=k))
    return {name: np.stack([f[name] for f in fits]) for name in ("mean", "std")}

  def search_params(self, params, config, class_index=None):
    """A conditional model's params with the prior of `class_index` (required there)."""
    if not config.c_dim:
      return super().search_params(params, config, class_index)
    k = check_class(config, class_index)
    fit = params["gaussian_fit"]
    return {**params, "gaussian_fit": {name: fit[name][k] for name in ("mean", "std")}}

  def num_classes(self, config):
    return config.c_dim

  def mapping(self, params, config, z, truncation_psi=1.0, class_index=None,
              truncation_cutoff=None):
    c = one_hot(config, z.shape[0], class_index)
    return self.net.mapping(params, config, z, c, truncation_psi=truncation_psi,
                            truncation_cutoff=truncation_cutoff)
