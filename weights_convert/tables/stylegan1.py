"""StyleGAN v1 (kind 'stylegan'): the name tables of the PULSE reference's torch state dicts
(synthesis.pt, mapping.pt, gaussian_fit.pt) and of NVIDIA's official TF pickle
(karras2019stylegan-ffhq-1024x1024.pkl: Gs's synthesis, mapping and dlatent_avg), and the
architecture read from the tensors' shapes.

Each source provides one part of a checkpoint (`PARTS`: source kind -> part, reader); the
converter applies them in that order, the synthesis first (it fixes the architecture).
Readers: (content, path, config or None, overrides) -> (config, params).
"""
from __future__ import annotations

import re

from pulse_jax.nets.stylegan1 import StyleGANConfig
from weights_convert.tables.base import CHECK_BLUR, IGNORE, Entry, apply_table

def torch_synthesis_table(cfg: StyleGANConfig) -> list[Entry]:
  """The PULSE reference's `G_synthesis` state dict (stylegan.py names)."""
  out: list[Entry] = []
  add = lambda s, d, t, r="": out.append(Entry(s, ("synthesis",) + d if d else None, t, r))
  for b in range(cfg.resolution_log2 - 1):
    r = 2 ** (b + 2)
    p = f"blocks.{r}x{r}."
    l0, l1 = 2 * b, 2 * b + 1
    blk = f"block_{b}"
    if b == 0:
      add(p + "const", (blk, "const"), "nchw_to_nhwc")
      add(p + "bias", (blk, "layer_0", "bias"), "copy")
      add(p + "conv.weight", (blk, "conv_1", "kernel"), "oihw_to_hwio")
      add(p + "conv.bias", (blk, "layer_1", "bias"), "copy")
    else:
      add(p + "conv0_up.weight", (blk, f"conv_{l0}", "kernel"), "oihw_to_hwio")
      add(p + "conv0_up.bias", (blk, f"layer_{l0}", "bias"), "copy")
      add(p + "conv0_up.intermediate.kernel", None, CHECK_BLUR, "fixed blur filter buffer")
      add(p + "conv1.weight", (blk, f"conv_{l1}", "kernel"), "oihw_to_hwio")
      add(p + "conv1.bias", (blk, f"layer_{l1}", "bias"), "copy")
    for epi, layer in (("epi1", l0), ("epi2", l1)):
      add(f"{p}{epi}.noise.weight", (blk, f"layer_{layer}", "noise_weight"), "copy")
      add(f"{p}{epi}.style_mod.lin.weight", (blk, f"layer_{layer}", "style_kernel"), "transpose")
      add(f"{p}{epi}.style_mod.lin.bias", (blk, f"layer_{layer}", "style_bias"), "copy")
  add("torgb.weight", ("torgb_kernel",), "oihw_to_hwio")
  add("torgb.bias", ("torgb_bias",), "copy")
  return out


def _mapping_table(cfg: StyleGANConfig, name: str, kernel_transform: str) -> list[Entry]:
  """The mapping's dense layers: `name.format(i=layer, p='weight' / 'bias')` -> 'mapping'."""
  out = []
  for i in range(cfg.mapping_layers):
    out.append(Entry(name.format(i=i, p="weight"), ("mapping", f"dense{i}_kernel"),
                     kernel_transform))
    out.append(Entry(name.format(i=i, p="bias"), ("mapping", f"dense{i}_bias"), "copy"))
  return out


def torch_mapping_table(cfg: StyleGANConfig) -> list[Entry]:
  """The PULSE reference's `G_mapping` state dict (torch Linear weights: transposed)."""
  return _mapping_table(cfg, "dense{i}.{p}", "transpose")


def gaussian_fit_table() -> list[Entry]:
  """The reference's `gaussian_fit.pt`: {'mean': [512], 'std': [512]}."""
  return [Entry("mean", ("gaussian_fit", "mean"), "copy"),
          Entry("std", ("gaussian_fit", "std"), "copy")]


def tf_synthesis_table(cfg: StyleGANConfig) -> list[Entry]:
  """NVIDIA's official TF `G_synthesis` variables (Gs.components.synthesis), HWIO convs."""
  out: list[Entry] = []
  add = lambda s, d, t, r="": out.append(Entry(s, ("synthesis",) + d if d else None, t, r))
  add("lod", None, IGNORE, "progressive-growing level of detail (0 for a trained model)")
  for i in range(cfg.num_layers):
    add(f"noise{i}", None, IGNORE, "the official model's stored noise inputs; PULSE draws its own")
  for b in range(cfg.resolution_log2 - 1):
    r = 2 ** (b + 2)
    blk = f"block_{b}"
    scopes = (("Const", 0), ("Conv", 1)) if b == 0 else (("Conv0_up", 2 * b), ("Conv1", 2 * b + 1))
    for scope, layer in scopes:
      p = f"{r}x{r}/{scope}/"
      if scope == "Const":
        add(p + "const", (blk, "const"), "nchw_to_nhwc")
      else:
        add(p + "weight", (blk, f"conv_{layer}", "kernel"), "copy")
      add(p + "bias", (blk, f"layer_{layer}", "bias"), "copy")
      add(p + "Noise/weight", (blk, f"layer_{layer}", "noise_weight"), "copy")
      add(p + "StyleMod/weight", (blk, f"layer_{layer}", "style_kernel"), "copy")
      add(p + "StyleMod/bias", (blk, f"layer_{layer}", "style_bias"), "copy")
  add("ToRGB_lod0/weight", ("torgb_kernel",), "copy")
  add("ToRGB_lod0/bias", ("torgb_bias",), "copy")
  for lod in range(1, cfg.resolution_log2 - 1):
    for n in ("weight", "bias"):
      add(f"ToRGB_lod{lod}/{n}", None, IGNORE, "to-RGB of a lower level of detail, unused at lod 0")
  return out


def tf_mapping_table(cfg: StyleGANConfig) -> list[Entry]:
  """NVIDIA's official TF `G_mapping` variables (Gs.components.mapping), [in, out] already."""
  return _mapping_table(cfg, "Dense{i}/{p}", "copy")


def tf_gs_table() -> list[Entry]:
  """Gs's own variables (not its components')."""
  return [Entry("dlatent_avg", ("dlatent_avg",), "copy"),
          Entry("lod", None, IGNORE, "progressive-growing level of detail")]


# ----------------------------------------------------------------------------- architecture


def _infer_config(path: str, resolution: int, channels: list[int],
                  static_kwargs: dict | None, overrides: dict) -> StyleGANConfig:
  """The config whose nf() rule gives `channels` (one per block, 4x4 up) at `resolution`."""
  kw = {}
  if static_kwargs:
    for k in ("resolution", "fmap_base", "fmap_decay", "fmap_max", "dlatent_size", "num_channels"):
      if k in static_kwargs:
        kw[k] = static_kwargs[k]
  kw.setdefault("resolution", resolution)
  if "fmap_max" not in kw:
    kw["fmap_max"] = max(channels)
  if "fmap_base" not in kw:
    below = [c * 2 ** (b + 1) for b, c in enumerate(channels) if c < kw["fmap_max"]]
    kw["fmap_base"] = below[0] if below else kw["fmap_max"] * 2 ** len(channels)
  kw.update(overrides)
  cfg = StyleGANConfig(**kw)
  got = [cfg.stage_channels(b + 1) for b in range(cfg.resolution_log2 - 1)]
  if cfg.resolution != resolution or got != channels:
    raise ValueError(f"{path}: the tensors' channels {channels} at resolution {resolution} do "
                     f"not follow StyleGAN's nf() rule for {cfg}.")
  return cfg


def torch_synthesis_config(path: str, sd: dict, overrides: dict) -> StyleGANConfig:
  """The architecture of the reference's synthesis state dict `sd`."""
  sizes = [int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)x\1\.", k)] if m]
  channels = [int(sd["blocks.4x4.const"].shape[1])]
  r = 8
  while f"blocks.{r}x{r}.conv1.weight" in sd:
    channels.append(int(sd[f"blocks.{r}x{r}.conv1.weight"].shape[0]))
    r *= 2
  return _infer_config(path, max(sizes), channels, None, overrides)


def tf_synthesis_config(path: str, gs, overrides: dict) -> StyleGANConfig:
  """The architecture of a TF Gs's synthesis component (its static kwargs first)."""
  syn = gs.components["synthesis"]
  v = syn.variables
  sizes = [int(m.group(1)) for k in v for m in [re.match(r"(\d+)x\1/", k)] if m]
  channels = [int(v["4x4/Const/const"].shape[1])]
  r = 8
  while f"{r}x{r}/Conv1/weight" in v:
    channels.append(int(v[f"{r}x{r}/Conv1/weight"].shape[-1]))
    r *= 2
  return _infer_config(path, max(sizes), channels, dict(syn.static_kwargs or {}), overrides)


# ----------------------------------------------------------------------------- sources


def from_torch_synthesis(sd, path: str, cfg, overrides: dict) -> tuple[StyleGANConfig, dict]:
  """The reference's synthesis.pt -> its config and the 'synthesis' part."""
  cfg = torch_synthesis_config(path, sd, overrides)
  return cfg, apply_table(torch_synthesis_table(cfg), sd, path)


def from_tf_gs(gs, path: str, cfg, overrides: dict) -> tuple[StyleGANConfig, dict]:
  """NVIDIA's TF Gs -> its config and the 'synthesis', 'mapping' (when present) and
  'dlatent_avg' parts."""
  cfg = tf_synthesis_config(path, gs, overrides)
  params = apply_table(tf_synthesis_table(cfg), gs.components["synthesis"].variables,
                       path + ":Gs/synthesis")
  if "mapping" in gs.components:
    params.update(apply_table(tf_mapping_table(cfg), gs.components["mapping"].variables,
                              path + ":Gs/mapping"))
  params.update(apply_table(tf_gs_table(), gs.variables, path + ":Gs"))
  return cfg, params


def from_torch_mapping(sd, path: str, cfg, overrides: dict) -> tuple[StyleGANConfig, dict]:
  """The reference's mapping.pt -> the 'mapping' part (of the synthesis' config, or the
  default one with `overrides` without a synthesis)."""
  cfg = cfg or StyleGANConfig(**overrides)
  return cfg, apply_table(torch_mapping_table(cfg), sd, path)


def from_gaussian_fit(sd, path: str, cfg, overrides: dict) -> tuple[StyleGANConfig, dict]:
  """The reference's gaussian_fit.pt -> the 'gaussian_fit' part."""
  return cfg or StyleGANConfig(**overrides), apply_table(gaussian_fit_table(), sd, path)


# Source kind (`convert.read_source`) -> (the part it provides, its reader); in the order the
# converter applies them. Two sources of one part are refused.
PARTS = {
    "pulse_synthesis": ("synthesis", from_torch_synthesis),
    "stylegan_tf": ("synthesis", from_tf_gs),
    "pulse_mapping": ("mapping", from_torch_mapping),
    "gaussian_fit": ("gaussian_fit", from_gaussian_fit),
}
