"""Explicit name table: NVIDIA StyleGAN2 state-dict name -> pulse-jax ``stylegan2`` param path.

The path is the torch name split at the dots, with ``weight`` (torch layout) renamed
``kernel`` (JAX layout: FC [in, out], convs HWIO): 'synthesis.b8.conv0.affine.weight' [C, D]
-> ('synthesis', 'b8', 'conv0', 'affine', 'kernel') [D, C].

``torch_table(config)`` lists every parameter and buffer of NVIDIA's
``networks_stylegan2.Generator`` built from ``config`` (the names of ``NetworkData.tensors``,
whichever format the pickle was), with its destination in ``stylegan2.param_shapes(config)``
and the layout change. ``apply_table`` refuses a file whose names differ from the table (it
lists every name the table lacks and every name the file lacks) or whose shapes differ from
the architecture, as ``base.apply_table`` does for StyleGAN v1. The FIR filter buffers
(``resample_filter``) hold no weights: they are checked to be the config's filter and dropped.

``tf_table(init_kwargs)`` maps the same torch names to NVIDIA's TensorFlow StyleGAN2 variables
(``stylegan2-ffhq-config-f.pkl``), for ``nvidia_pickle.network_from_tf``.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from pulse_jax.nets import stylegan2
from pulse_jax.nets.upfirdn import setup_filter
from weights_convert.readers.errors import name_mismatch
from weights_convert.tables.base import Entry, put, to_float32

GENERATOR_CLASS = "training.networks_stylegan2.Generator"  # stylegan2-ada-pytorch: training.networks
SOURCE_MARK = "class SynthesisBlock("  # in networks_stylegan2.py (and networks.py), not in SG3's

CHECK_FILTER = "check_filter"  # a resample_filter buffer: checked to be the config's, dropped


def torch_table(config: stylegan2.Stylegan2Config) -> list[Entry]:
  """Every state-dict name of the Generator ``config`` describes, in torch's order."""
  out: list[Entry] = []

  def add(name: str, transform: str) -> None:
    dest = None
    if transform != CHECK_FILTER:  # torch's '.weight' is the JAX-layout 'kernel'
      dest = tuple("kernel" if k == "weight" else k for k in name.split("."))
    out.append(Entry(name, dest, transform))

  def fc(prefix: str) -> None:
    add(f"{prefix}.weight", "transpose")
    add(f"{prefix}.bias", "copy")

  def layer(prefix: str) -> None:
    add(f"{prefix}.weight", "oihw_to_hwio")
    if config.use_noise:
      add(f"{prefix}.noise_strength", "copy")
    add(f"{prefix}.bias", "copy")
    add(f"{prefix}.resample_filter", CHECK_FILTER)
    if config.use_noise:
      add(f"{prefix}.noise_const", "copy")
    fc(f"{prefix}.affine")

  for r in config.block_resolutions:
    b = f"synthesis.b{r}"
    if r == 4:
      add(f"{b}.const", "chw_to_hwc")
    add(f"{b}.resample_filter", CHECK_FILTER)
    if r > 4:
      layer(f"{b}.conv0")
    layer(f"{b}.conv1")
    if config.has_torgb(r):
      add(f"{b}.torgb.weight", "oihw_to_hwio")
      add(f"{b}.torgb.bias", "copy")
      fc(f"{b}.torgb.affine")
    if config.architecture == "resnet" and r > 4:
      add(f"{b}.skip.weight", "oihw_to_hwio")
      add(f"{b}.skip.resample_filter", CHECK_FILTER)
  if config.w_avg_beta is not None:  # a buffer: before the submodules in torch's order
    add("mapping.w_avg", "copy")
  if config.c_dim:
    fc("mapping.embed")
  for i in range(config.mapping_layers):
    fc(f"mapping.fc{i}")
  return out


# The inverses of the torch_table transforms, to write NVIDIA state dicts from params (tests).
TORCH_INVERSE = {
    "copy": lambda a: a, "transpose": lambda a: a.T,
    "oihw_to_hwio": lambda a: a.transpose(3, 2, 0, 1),
    "chw_to_hwc": lambda a: a.transpose(2, 0, 1),
}


def state_dict(config: stylegan2.Stylegan2Config, params: dict) -> dict[str, np.ndarray]:
  """The state dict NVIDIA's Generator built from ``config`` would have for ``params``
  (``torch_table``'s inverse; the filter buffers are the config's resample filter)."""
  out = {}
  for e in torch_table(config):
    if e.transform == CHECK_FILTER:
      out[e.source] = setup_filter(config.resample_filter)
    else:
      out[e.source] = TORCH_INVERSE[e.transform](np.asarray(_get(params, e.dest)))
  return out


def _get(tree: dict, path: tuple[str, ...]):
  for k in path:
    tree = tree[k]
  return tree


def apply_table(table: list[Entry], tensors: Mapping[str, np.ndarray], source: str,
                config: stylegan2.Stylegan2Config) -> dict:
  """Maps every tensor through ``table`` into {'mapping': ..., 'synthesis': ...} float32.

  Raises:
    ValueError: names in the file but not in the table, or in the table but not in the file
      (all listed); a tensor whose shape is not the architecture's (all listed); a filter
      buffer that is not ``config.resample_filter``'s.
  """
  mismatch = name_mismatch(tensors, {e.source for e in table})
  if mismatch:
    raise ValueError(
        f"{source}: the tensors do not match the StyleGAN2 architecture of its init_kwargs "
        f"({config.img_resolution} px, {config.architecture}, {config.mapping_layers} mapping "
        f"layers, c_dim {config.c_dim}).{mismatch}")
  shapes = stylegan2.param_shapes(config)
  filt = setup_filter(config.resample_filter)
  tree: dict = {}
  wrong = []
  for e in table:
    a = np.asarray(tensors[e.source])
    if e.transform == CHECK_FILTER:
      if a.shape != filt.shape or not np.allclose(a, filt, rtol=0, atol=1e-6):
        raise ValueError(f"{source}: {e.source} is not the FIR filter "
                         f"{list(config.resample_filter)} of the config: {a.tolist()}")
      continue
    value = to_float32(e.transform, a)
    want = tuple(_get(shapes, e.dest).shape)
    if value.shape != want:
      wrong.append(f"{e.source} {list(a.shape)} -> {'/'.join(e.dest)} {list(value.shape)}, "
                   f"architecture needs {list(want)}")
      continue
    put(tree, e.dest, value)
  if wrong:
    raise ValueError(f"{source}: tensor shapes do not match the architecture:\n  "
                     + "\n  ".join(wrong))
  return tree


# ----------------------------------------------------------------------------- TensorFlow


@dataclasses.dataclass(frozen=True)
class TFName:
  """One torch state-dict name and where it comes from in a TF StyleGAN2 generator.

  tf: the flat TF variable ('synthesis/4x4/Conv/weight'), or None for a resample_filter
  buffer (no TF variable: computed from the resample kernel). transform: TF_TRANSFORMS key.
  """
  torch: str
  tf: str | None
  transform: str


TF_TRANSFORMS = {
    "copy": lambda a: a,
    "dense": lambda a: a.T,  # [in, out] -> [out, in]
    "conv": lambda a: a.transpose(3, 2, 0, 1),  # HWIO -> OIHW
    "conv_up": lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1),  # TF's transposed-conv kernel
    "const": lambda a: a[0],  # [1, C, 4, 4] -> [C, 4, 4]
    "noise": lambda a: a[0, 0],  # [1, 1, r, r] -> [r, r]
    "mod_bias": lambda a: a + 1,  # TF adds the 1 of the style at run time
}
# The inverses, to write TF pickles from torch tensors (tests, stand-ins).
TF_INVERSE = {
    "copy": lambda a: a, "dense": lambda a: a.T,
    "conv": lambda a: a.transpose(2, 3, 1, 0),
    "conv_up": lambda a: a.transpose(2, 3, 1, 0)[::-1, ::-1],
    "const": lambda a: a[None], "noise": lambda a: a[None, None], "mod_bias": lambda a: a - 1,
}
TF_UNUSED = {"lod": "progressive-growing level of detail, 0 in a trained StyleGAN2"}


def tf_table(init_kwargs: dict) -> list[TFName]:
  """Every torch state-dict name of the Generator these init_kwargs build, with its TF source.

  Follows NVIDIA's legacy.py ``convert_tf_generator``: convs HWIO -> OIHW (up-sampling convs
  also flipped), dense [in, out] -> [out, in], mod_bias + 1, const [1, C, 4, 4] -> [C, 4, 4],
  noise [1, 1, r, r] -> [r, r], dlatent_avg -> mapping.w_avg.
  """
  res = int(init_kwargs["img_resolution"])
  arch = init_kwargs.get("architecture", "skip")
  use_noise = init_kwargs.get("use_noise", True)
  mk = init_kwargs.get("mapping_kwargs", {})
  out: list[TFName] = []
  add = lambda t, s, x: out.append(TFName(t, s, x))

  def layer(torch: str, tf: str, noise_index: int, up: bool) -> None:
    add(f"{torch}.weight", f"{tf}/weight", "conv_up" if up else "conv")
    if use_noise:
      add(f"{torch}.noise_strength", f"{tf}/noise_strength", "copy")
    add(f"{torch}.bias", f"{tf}/bias", "copy")
    add(f"{torch}.resample_filter", None, "copy")
    if use_noise:
      add(f"{torch}.noise_const", f"synthesis/noise{noise_index}", "noise")
    add(f"{torch}.affine.weight", f"{tf}/mod_weight", "dense")
    add(f"{torch}.affine.bias", f"{tf}/mod_bias", "mod_bias")

  def torgb(r: int) -> None:
    for n, x in (("weight", "conv"), ("bias", "copy")):
      add(f"synthesis.b{r}.torgb.{n}", f"synthesis/{r}x{r}/ToRGB/{n}", x)
    add(f"synthesis.b{r}.torgb.affine.weight", f"synthesis/{r}x{r}/ToRGB/mod_weight", "dense")
    add(f"synthesis.b{r}.torgb.affine.bias", f"synthesis/{r}x{r}/ToRGB/mod_bias", "mod_bias")

  r, log2 = 4, 2
  while r <= res:
    b, s = f"synthesis.b{r}", f"synthesis/{r}x{r}"
    if r == 4:
      add(f"{b}.const", f"{s}/Const/const", "const")
    add(f"{b}.resample_filter", None, "copy")
    if r == 4:
      layer(f"{b}.conv1", f"{s}/Conv", 0, False)
    else:
      layer(f"{b}.conv0", f"{s}/Conv0_up", 2 * log2 - 5, True)
      layer(f"{b}.conv1", f"{s}/Conv1", 2 * log2 - 4, False)
    if arch == "skip" or r == res:
      torgb(r)
    if arch == "resnet" and r > 4:
      add(f"{b}.skip.weight", f"{s}/Skip/weight", "conv_up")
      add(f"{b}.skip.resample_filter", None, "copy")
    r, log2 = r * 2, log2 + 1
  add("mapping.w_avg", "dlatent_avg", "copy")
  if int(init_kwargs.get("c_dim", 0)):
    add("mapping.embed.weight", "mapping/LabelEmbed/weight", "dense")
    add("mapping.embed.bias", "mapping/LabelEmbed/bias", "copy")
  for i in range(int(mk.get("num_layers", 8))):
    add(f"mapping.fc{i}.weight", f"mapping/Dense{i}/weight", "dense")
    add(f"mapping.fc{i}.bias", f"mapping/Dense{i}/bias", "copy")
  return out


def from_network(data, config: stylegan2.Stylegan2Config | None = None) -> tuple:
  """(config, params) of a ``nvidia_pickle.NetworkData`` of a StyleGAN2 generator."""
  config = config or stylegan2.Stylegan2Config.from_init_kwargs(data.init_kwargs)
  return config, apply_table(torch_table(config), data.tensors, data.source, config)
