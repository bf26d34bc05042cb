"""Builds StyleGAN v1 TF pickles with the official structure (for tests only).

`official_gs_variables` turns pulse-jax params back into NVIDIA's variable names and
layouts (the inverse of weights_convert.tables.stylegan1's TF tables) and fills the variables PULSE
ignores (lod, stored noise, lower-lod to-RGB) with random values, so a pickle written by
`write_official_pickle` has every variable the official `karras2019stylegan-ffhq-1024x1024.pkl`
has, in the official layout (convs HWIO, dense [in, out], const NCHW).
"""
from __future__ import annotations

import numpy as np

from weights_convert.tables import stylegan1 as tables
from weights_convert.readers.tf_pickle import TFNetwork
from support.tf_pickle_writer import write_tf_network_pickle

INVERSE = {"copy": lambda a: a, "nchw_to_nhwc": lambda a: a.transpose(0, 3, 1, 2)}


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return np.asarray(tree)


def _fill(table, params, rng, shapes_for_ignored):
  out = {}
  for e in table:
    if e.dest is None:
      out[e.source] = shapes_for_ignored(e.source, rng)
    else:
      out[e.source] = INVERSE[e.transform](_get(params, e.dest)).astype(np.float32)
  return out


def official_networks(cfg, params: dict, seed: int = 0) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
  """(G, D, Gs) with Gs.components synthesis + mapping and Gs's own dlatent_avg and lod."""
  rng = np.random.default_rng(seed)

  def ignored(name, rng):
    if name == "lod":
      return np.float32(0.0) * np.ones((), np.float32)
    if name.startswith("noise"):
      i = int(name[5:])
      r = cfg.layer_resolution(i)
      return rng.standard_normal((1, 1, r, r)).astype(np.float32)
    lod = int(name.split("/")[0][len("ToRGB_lod"):])
    c = cfg.stage_channels(cfg.resolution_log2 - lod - 1)
    shape = (1, 1, c, cfg.num_channels) if name.endswith("weight") else (cfg.num_channels,)
    return rng.standard_normal(shape).astype(np.float32)

  syn_vars = _fill(tables.tf_synthesis_table(cfg), params, rng, ignored)
  kw = {"resolution": cfg.resolution, "fmap_base": cfg.fmap_base, "fmap_max": cfg.fmap_max,
        "num_channels": cfg.num_channels, "dlatent_size": cfg.dlatent_size}
  synthesis = TFNetwork("G_synthesis", kw, {}, syn_vars, "G_synthesis", "# src", 3)
  comps = {"synthesis": synthesis}
  if "mapping" in params:
    comps["mapping"] = TFNetwork("G_mapping", {"dlatent_broadcast": cfg.num_layers}, {},
                                 _fill(tables.tf_mapping_table(cfg), params, rng, ignored),
                                 "G_mapping", "# src", 3)
  gs_vars = {"lod": np.zeros((), np.float32),
             "dlatent_avg": rng.standard_normal(cfg.dlatent_size).astype(np.float32)}
  gs = TFNetwork("Gs", dict(kw), comps, gs_vars, "G_style", "# src", 3)
  g = TFNetwork("G", dict(kw), comps, dict(gs_vars), "G_style", "# src", 3)
  d = TFNetwork("D", {"resolution": cfg.resolution}, {},
                {"4x4/Dense0/weight": rng.standard_normal((16, 4)).astype(np.float32)},
                "D_basic", "# src", 3)
  return g, d, gs


def write_official_pickle(path, cfg, params: dict, seed: int = 0) -> None:
  write_tf_network_pickle(path, official_networks(cfg, params, seed))
