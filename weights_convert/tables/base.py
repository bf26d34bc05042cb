"""Explicit name-mapping tables: source tensor name -> pulse-jax parameter path.

Every table must cover every tensor of its source: a name the table does not
list, or a listed name the file lacks, is an error that names them all
(`apply_table`). Tensors that are deliberately not used are listed with
`IGNORE` and the reason.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np

from pulse_jax.nets.stylegan1 import StyleGANConfig


def _blur_kernel_ok(a: np.ndarray) -> None:
  k = np.array([1.0, 2.0, 1.0])
  expected = (k[:, None] * k[None, :] / 16.0).reshape(1, 1, 3, 3)
  if a.shape != expected.shape or not np.allclose(a, expected, atol=1e-6):
    raise ValueError(f"blur kernel buffer is not the [1,2,1] x [1,2,1] / 16 filter StyleGAN uses: {a}")


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "copy": lambda a: a,
    # torch conv weight [O, I, kh, kw] -> HWIO.
    "oihw_to_hwio": lambda a: a.transpose(2, 3, 1, 0),
    # torch Linear weight [out, in] -> [in, out].
    "transpose": lambda a: a.T,
    # constant input [1, C, 4, 4] (NCHW, torch and TF alike) -> [1, 4, 4, C].
    "nchw_to_nhwc": lambda a: a.transpose(0, 2, 3, 1),
    # torch ConvTranspose2d weight [I, O, kh, kw] -> the spatially flipped HWIO kernel of
    # the equivalent forward conv of the dilated input.
    "convt_to_flipped_hwio": lambda a: a.transpose(2, 3, 0, 1)[::-1, ::-1],
}
IGNORE = "ignore"
CHECK_BLUR = "check_blur"


@dataclasses.dataclass(frozen=True)
class Entry:
  source: str
  dest: tuple[str, ...] | None  # path in the output tree; None for IGNORE / CHECK_BLUR
  transform: str
  reason: str = ""


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


def torch_mapping_table(cfg: StyleGANConfig) -> list[Entry]:
  """The PULSE reference's `G_mapping` state dict."""
  out = []
  for i in range(cfg.mapping_layers):
    out.append(Entry(f"dense{i}.weight", ("mapping", f"dense{i}_kernel"), "transpose"))
    out.append(Entry(f"dense{i}.bias", ("mapping", f"dense{i}_bias"), "copy"))
  return out


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
  out = []
  for i in range(cfg.mapping_layers):
    out.append(Entry(f"Dense{i}/weight", ("mapping", f"dense{i}_kernel"), "copy"))
    out.append(Entry(f"Dense{i}/bias", ("mapping", f"dense{i}_bias"), "copy"))
  return out


def tf_gs_table() -> list[Entry]:
  """Gs's own variables (not its components')."""
  return [Entry("dlatent_avg", ("dlatent_avg",), "copy"),
          Entry("lod", None, IGNORE, "progressive-growing level of detail")]


def dcgan_table() -> list[Entry]:
  """`gan-face-generate`'s `netG_state_dict` (torch nn.Sequential `main`)."""
  out = []
  for i, m in enumerate((0, 3, 6, 9, 12)):
    out.append(Entry(f"main.{m}.weight", ("dcgan", f"convt_{i}", "kernel"), "convt_to_flipped_hwio"))
  for i, m in enumerate((1, 4, 7, 10)):
    for src, dst in (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
                     ("running_var", "var")):
      out.append(Entry(f"main.{m}.{src}", ("dcgan", f"bn_{i}", dst), "copy"))
    out.append(Entry(f"main.{m}.num_batches_tracked", None, IGNORE, "training counter"))
  return out


def apply_table(table: list[Entry], tensors: Mapping[str, np.ndarray], source: str) -> dict:
  """Maps every source tensor through `table` into a nested dict of float32 arrays.

  Raises ValueError naming every source tensor the table lacks and every table
  entry the source lacks.
  """
  names = {e.source for e in table}
  leftover = sorted(set(tensors) - names)
  missing = sorted(names - set(tensors))
  if leftover or missing:
    raise ValueError(
        f"{source}: the tensors do not match the expected architecture.\n"
        f"  in the file but not in the name table ({len(leftover)}): {leftover}\n"
        f"  in the name table but not in the file ({len(missing)}): {missing}\n"
        "Is this the right kind of file, and the architecture (resolution, channels) right?")
  tree: dict = {}
  for e in table:
    a = np.asarray(tensors[e.source])
    if e.transform == IGNORE:
      continue
    if e.transform == CHECK_BLUR:
      _blur_kernel_ok(a)
      continue
    value = np.ascontiguousarray(TRANSFORMS[e.transform](a)).astype(np.float32)
    node = tree
    for k in e.dest[:-1]:
      node = node.setdefault(k, {})
    node[e.dest[-1]] = value
  return tree
