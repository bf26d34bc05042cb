"""Name table of NVIDIA's StyleGAN3 Generator (G_ema state dict) -> `pulse_jax.nets.stylegan3` tree.

Every parameter and buffer of the state dict is listed: a name the table lacks, or a listed
name the file lacks, is an error naming them all (`base.apply_table`); so is a tensor whose
shape differs from `stylegan3.param_shapes(config)`. The designed filters are read from the
pickle's `up_filter` / `down_filter` buffers, as NVIDIA's code runs with them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from pulse_jax.nets import stylegan3
from pulse_jax.nets.stylegan3 import Stylegan3Config
from weights_convert.tables.base import Entry, apply_table

GENERATOR_CLASS = "training.networks_stylegan3.Generator"
SOURCE_MARK = "class SynthesisInput("  # the Fourier-feature input: networks_stylegan3.py only


def generator_table(config: Stylegan3Config) -> list[Entry]:
  """Entries for every tensor of `G_ema.state_dict()` (parameters and buffers)."""
  out: list[Entry] = []

  def add(source: str, dest: tuple[str, ...], transform: str = "copy"):
    out.append(Entry(source, dest, transform))

  def fc(source: str, dest: tuple[str, ...]):
    add(f"{source}.weight", dest + ("kernel",), "transpose")  # torch [out, in] -> [in, out]
    add(f"{source}.bias", dest + ("bias",))

  if config.c_dim:
    fc("mapping.embed", ("mapping", "embed"))
  for i in range(config.mapping_num_layers):
    fc(f"mapping.fc{i}", ("mapping", f"fc{i}"))
  add("mapping.w_avg", ("mapping", "w_avg"))
  inp = ("synthesis", "input")
  add("synthesis.input.weight", inp + ("kernel",), "transpose")
  fc("synthesis.input.affine", inp + ("affine",))
  for name in ("transform", "freqs", "phases"):
    add(f"synthesis.input.{name}", inp + (name,))
  for s in config.layer_specs:
    src, dst = f"synthesis.{s.name}", ("synthesis", s.name)
    add(f"{src}.weight", dst + ("kernel",), "oihw_to_hwio")
    add(f"{src}.bias", dst + ("bias",))
    fc(f"{src}.affine", dst + ("affine",))
    add(f"{src}.magnitude_ema", dst + ("magnitude_ema",))
    if s.up_taps > 1:
      add(f"{src}.up_filter", dst + ("up_filter",))
    if s.down_taps > 1:
      add(f"{src}.down_filter", dst + ("down_filter",))
  return out


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def convert_generator(tensors: Mapping[str, np.ndarray], config: Stylegan3Config,
                      source: str = "StyleGAN3 G_ema") -> dict:
  """State-dict tensors (torch names -> numpy) to the `stylegan3` parameter tree (float32).

  Raises ValueError naming every leftover or missing name, or every tensor whose shape is
  not the architecture's.
  """
  params = apply_table(generator_table(config), tensors, source)
  expected = _flatten(stylegan3.param_shapes(config))
  got = _flatten(params)
  wrong = [f"{'/'.join(k)}: {tuple(np.shape(got.get(k)))} != {tuple(v.shape)}"
           for k, v in expected.items() if k not in got or np.shape(got[k]) != tuple(v.shape)]
  extra = sorted("/".join(k) for k in set(got) - set(expected))
  if wrong or extra:
    raise ValueError(f"{source}: tensor shapes do not match the StyleGAN3 architecture "
                     f"{config}:\n  wrong shapes ({len(wrong)}): {wrong}\n  unexpected: {extra}")
  return params


def from_network(net: Any) -> tuple[Stylegan3Config, dict]:
  """(config, params) of a `weights_convert.readers.nvidia_pickle.NetworkData` (class_name,
  init_kwargs, tensors) of NVIDIA's StyleGAN3 Generator."""
  if net.class_name != GENERATOR_CLASS:
    raise ValueError(f"Not a StyleGAN3 generator: class {net.class_name!r}, expected "
                     f"{GENERATOR_CLASS!r}.")
  config = Stylegan3Config.from_init_kwargs(net.init_kwargs)
  return config, convert_generator(net.tensors, config, f"{net.source} ({net.class_name})")
