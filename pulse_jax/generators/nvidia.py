"""What NVIDIA's StyleGAN2 and StyleGAN3 families share: NVIDIA's config names, the prior of
the mapping's last pre-activation (`generators.prior`), the (conditional) mapping.

Shapes as in `generators.base`; 'gaussian_fit' {'mean', 'std'} is [w_dim] each, [c_dim, w_dim]
for a conditional model (c_dim > 0: one fit per class; a search uses its class's row).
"""
from __future__ import annotations

from pulse_jax.generators import prior
from pulse_jax.generators.base import Family


class NvidiaFamily(Family):
  """StyleGAN2 / StyleGAN3 (`net`: their network module in `pulse_jax.nets`)."""
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
    return prior.pre_activation_prior(self.net, params, x)

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
    """The prior fit (`prior.fit_pre_activation_prior`): one per class for a conditional
    model, stacked [c_dim, w_dim]; `progress(done, total)` counts samples over all classes."""
    return prior.fit_pre_activation_prior(self.net, params["mapping"], config,
                                          num_samples=num_samples, seed=seed, progress=progress)

  def search_params(self, params, config, class_index=None):
    """A conditional model's params with the prior of `class_index` (required there)."""
    if not config.c_dim:
      return super().search_params(params, config, class_index)
    k = prior.check_class(config, class_index)
    fit = params["gaussian_fit"]
    return {**params, "gaussian_fit": {name: fit[name][k] for name in ("mean", "std")}}

  def num_classes(self, config):
    return config.c_dim

  def mapping(self, params, config, z, truncation_psi=1.0, class_index=None,
              truncation_cutoff=None):
    c = prior.one_hot(config, z.shape[0], class_index)
    return self.net.mapping(params, config, z, c, truncation_psi=truncation_psi,
                            truncation_cutoff=truncation_cutoff)
