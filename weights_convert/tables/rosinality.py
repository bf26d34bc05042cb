"""Name table: rosinality's stylegan2-pytorch `Generator` state dict -> NVIDIA's StyleGAN2 names.

rosinality's checkpoints (`train.py`: {'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', ...};
`convert_weight.py`: {'g_ema', 'latent_avg'}; used by ILO and many forks) hold the same
network as NVIDIA's config-F StyleGAN2 under other names and layouts. Each of its tensors is
mapped here onto the state-dict name NVIDIA's `networks_stylegan2.Generator` uses, so that the
`stylegan2` family's own table (`tables.stylegan2`) converts the result: one architecture, one
implementation. The correspondence (rosinality's model.py against NVIDIA's networks_stylegan2.py):

  style.{i+1}.weight / bias             -> mapping.fc{i}.weight / bias (EqualLinear, lr_mul 0.01)
  input.input [1, C, 4, 4]              -> synthesis.b4.const [C, 4, 4]
  conv1.*, to_rgb1.*                    -> synthesis.b4.conv1.*, synthesis.b4.torgb.*
  convs.{2j}.*, convs.{2j+1}.*          -> synthesis.b{8 * 2^j}.conv0.*, .conv1.*
  to_rgbs.{j}.*                         -> synthesis.b{8 * 2^j}.torgb.*
    conv.weight [1, O, I, k, k]         -> weight [O, I, k, k]
    conv.modulation.weight / bias       -> affine.weight / bias
    noise.weight [1]                    -> noise_strength []
    activate.bias [O] (to_rgb: bias [1, 3, 1, 1]) -> bias [O]
  noises.noise_{n} [1, 1, r, r]         -> the n-th conv's noise_const [r, r]
  convs.{2j}.conv.blur.kernel, to_rgbs.{j}.upsample.kernel [4, 4]: the FIR filter x 4
                                        -> checked, then every layer's resample_filter
  latent_avg (top level, when saved)    -> mapping.w_avg (else no w_avg: no truncation)

The numbers agree with NVIDIA's up to its demodulation epsilon (1e-8 added to the squared
weight norm before or after the 1/sqrt(fan_in) scale). The architecture (resolution, style
size, mapping depth, channels) is read from the tensors' shapes; rosinality's mapping
learning-rate multiplier is not saved and is its default, 0.01.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from weights_convert.readers.errors import WeightFileError, describe, name_mismatch
from weights_convert.readers.nvidia_pickle import NetworkData
from weights_convert.tables.stylegan2 import GENERATOR_CLASS

NETWORKS = {"G_ema": "g_ema", "G": "g"}  # --network -> the checkpoint's key
_FILTER = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64.0  # NVIDIA's, sum 1
LR_MULTIPLIER = 0.01  # rosinality's Generator(lr_mlp=0.01), not saved in the checkpoint


def is_state_dict(obj: Any) -> bool:
  return isinstance(obj, Mapping) and "input.input" in obj and "conv1.conv.modulation.weight" in obj


def is_checkpoint(obj: Any) -> bool:
  """A rosinality checkpoint (a dict holding 'g_ema' or 'g') or a bare generator state dict."""
  if is_state_dict(obj):
    return True
  return isinstance(obj, Mapping) and any(is_state_dict(obj.get(k)) for k in NETWORKS.values())


def _shape(sd: Mapping, name: str) -> tuple[int, ...]:
  return tuple(np.shape(sd[name]))


def architecture(path: str, sd: Mapping) -> tuple[dict, dict[int, int]]:
  """(NVIDIA init_kwargs, {block resolution: channels}) read from the tensors' shapes."""
  n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
  if n_mlp == 0 or "style.1.weight" not in sd:
    raise WeightFileError(f"{describe(path)}: a rosinality generator without its mapping "
                          "layers (style.1.weight ...)")
  style_dim = _shape(sd, "style.1.weight")[1]
  channels = {4: _shape(sd, "input.input")[1]}
  j = 0
  while f"convs.{2 * j}.conv.weight" in sd:
    channels[8 * 2 ** j] = _shape(sd, f"convs.{2 * j}.conv.weight")[1]
    j += 1
  size = max(channels)
  top = max(channels.values())
  below = [r * c for r, c in sorted(channels.items()) if c < top]
  base = below[0] if below else top * size
  if any(min(base // r, top) != c for r, c in channels.items()):
    raise WeightFileError(f"{describe(path)}: channels {channels} follow no StyleGAN2 channel "
                          "rule (min(channel_base / resolution, channel_max))")
  kwargs = {"z_dim": style_dim, "c_dim": 0, "w_dim": style_dim, "img_resolution": size,
            "img_channels": _shape(sd, "to_rgb1.conv.weight")[1],
            "mapping_kwargs": {"num_layers": n_mlp, "lr_multiplier": LR_MULTIPLIER},
            "channel_base": base, "channel_max": top, "conv_clamp": None, "num_fp16_res": 0,
            "architecture": "skip"}
  return kwargs, channels


def name_table(channels: Mapping[int, int], n_mlp: int) -> list[tuple[str, str | None, str]]:
  """(rosinality name, NVIDIA name or None for a filter to check, transform) for every tensor
  of the generator with these block channels and mapping depth."""
  out = [(f"style.{i + 1}.{p}", f"mapping.fc{i}.{p}", "copy")
         for i in range(n_mlp) for p in ("weight", "bias")]
  out.append(("input.input", "synthesis.b4.const", "squeeze0"))
  noise = iter(range(2 * len(channels) - 1))

  def layer(src: str, dst: str, up: bool) -> None:
    out.extend([(f"{src}.conv.weight", f"{dst}.weight", "squeeze0"),
                (f"{src}.conv.modulation.weight", f"{dst}.affine.weight", "copy"),
                (f"{src}.conv.modulation.bias", f"{dst}.affine.bias", "copy"),
                (f"{src}.noise.weight", f"{dst}.noise_strength", "scalar"),
                (f"{src}.activate.bias", f"{dst}.bias", "copy"),
                (f"noises.noise_{next(noise)}", f"{dst}.noise_const", "squeeze01")])
    if up:
      out.append((f"{src}.conv.blur.kernel", None, "filter_x4"))

  def torgb(src: str, dst: str, up: bool) -> None:
    out.extend([(f"{src}.conv.weight", f"{dst}.weight", "squeeze0"),
                (f"{src}.conv.modulation.weight", f"{dst}.affine.weight", "copy"),
                (f"{src}.conv.modulation.bias", f"{dst}.affine.bias", "copy"),
                (f"{src}.bias", f"{dst}.bias", "flatten")])
    if up:
      out.append((f"{src}.upsample.kernel", None, "filter_x4"))

  layer("conv1", "synthesis.b4.conv1", False)
  torgb("to_rgb1", "synthesis.b4.torgb", False)
  for j, r in enumerate(sorted(channels)[1:]):
    layer(f"convs.{2 * j}", f"synthesis.b{r}.conv0", True)
    layer(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", False)
    torgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb", True)
  return out


_TRANSFORMS = {
    "copy": lambda a: a,
    "squeeze0": lambda a: a.reshape(a.shape[1:]),
    "squeeze01": lambda a: a.reshape(a.shape[2:]),
    "scalar": lambda a: a.reshape(()),
    "flatten": lambda a: a.reshape(-1),
}


def to_network(path: str, obj: Mapping, network: str = "G_ema") -> NetworkData:
  """NVIDIA-named `NetworkData` of the generator `network` ('G_ema': 'g_ema', 'G': 'g') of a
  rosinality checkpoint (or of a bare generator state dict), for `tables.stylegan2`.

  Raises WeightFileError naming the file: no such generator, tensors the table does not list or
  lacks (all named), a FIR filter other than [1, 3, 3, 1], channels that follow no StyleGAN2
  rule."""
  if is_state_dict(obj):
    sd, where = obj, "the state dict"
  else:
    key = NETWORKS.get(network)
    if key is None or not is_state_dict(obj.get(key)):
      present = [k for k, v in NETWORKS.items() if is_state_dict(obj.get(v))]
      raise WeightFileError(f"{describe(path)}: a rosinality stylegan2-pytorch checkpoint; "
                            f"--network={network} is not among its generators {present} "
                            f"(G_ema is 'g_ema', G is 'g')")
    sd, where = obj[key], f"'{key}'"
  kwargs, channels = architecture(path, sd)
  table = name_table(channels, kwargs["mapping_kwargs"]["num_layers"])
  mismatch = name_mismatch(sd, {src for src, _, _ in table})
  if mismatch:
    raise WeightFileError(f"{describe(path)}: {where} does not match rosinality's Generator of "
                          f"{kwargs['img_resolution']} px.{mismatch}")
  tensors: dict[str, np.ndarray] = {}
  for src, dst, transform in table:
    a = np.asarray(sd[src], np.float32)
    if transform == "filter_x4":
      if a.shape != _FILTER.shape or not np.allclose(a / 4.0, _FILTER, rtol=0, atol=1e-7):
        raise WeightFileError(f"{describe(path)}: {src} is not the [1, 3, 3, 1] FIR filter; "
                              "only that filter is supported")
      continue
    tensors[dst] = np.array(_TRANSFORMS[transform](a), np.float32, order="C")
  for r in sorted(channels):  # NVIDIA keeps the filter in every block and layer
    tensors[f"synthesis.b{r}.resample_filter"] = _FILTER.copy()
    for conv in ("conv0", "conv1") if r > 4 else ("conv1",):
      tensors[f"synthesis.b{r}.{conv}.resample_filter"] = _FILTER.copy()
  latent_avg = None if is_state_dict(obj) else obj.get("latent_avg")
  if latent_avg is not None:
    avg = np.asarray(latent_avg, np.float32).reshape(-1)
    if avg.shape != (kwargs["w_dim"],):
      raise WeightFileError(f"{describe(path)}: latent_avg has shape {np.shape(latent_avg)}, "
                            f"expected [{kwargs['w_dim']}]")
    tensors["mapping.w_avg"] = avg
  else:
    kwargs["mapping_kwargs"]["w_avg_beta"] = None  # no average saved: no truncation
  return NetworkData(GENERATOR_CLASS, kwargs, tensors, path)
