"""The DCGAN (kind 'dcgan'): the name table of `gan-face-generate`'s weights.tar
(`netG_state_dict`, a torch nn.Sequential `main`) and its architecture from the shapes."""
from __future__ import annotations

from pulse_jax.nets.dcgan import DCGANConfig
from weights_convert.tables.base import IGNORE, Entry, apply_table


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


def from_state_dict(sd, path: str) -> tuple[DCGANConfig, dict]:
  """`netG_state_dict` -> (config, {'dcgan': ...}): nz, ngf and nc read from the shapes."""
  cfg = DCGANConfig(nz=int(sd["main.0.weight"].shape[0]), ngf=int(sd["main.0.weight"].shape[1]) // 8,
                    nc=int(sd["main.12.weight"].shape[1]))
  return cfg, apply_table(dcgan_table(), sd, path)
