"""Converted-weights directories: an orbax checkpoint plus a JSON metadata file.

Layout of a weights directory DIR:
  DIR/metadata.json   kind, architecture config, parts, source files (name, sha256),
                      gaussian-fit provenance, format version
  DIR/params/         orbax checkpoint of {part: param tree}

The kind names a generator family (`pulse_jax.generators.registry`), which defines its parts
and their shapes (e.g. 'synthesis', 'mapping', 'gaussian_fit', 'dlatent_avg' for 'stylegan';
'dcgan' for 'dcgan'). Loading checks every stored shape against the architecture in the
metadata *before* allocating, and names each mismatch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
PARAMS_DIR = "params"


@dataclasses.dataclass
class GeneratorWeights:
  """A loaded generator: kind, config (StyleGANConfig | DCGANConfig), params and metadata.

  params: {'synthesis': tree, 'mapping': tree?, 'gaussian_fit': {'mean','std'}?,
           'dlatent_avg': [512]?} for 'stylegan'; {'dcgan': tree} for 'dcgan'.
  """
  kind: str
  config: Any
  params: dict
  metadata: dict = dataclasses.field(default_factory=dict)


def sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def config_from_metadata(kind: str, config: dict):
  from pulse_jax.generators import family
  return family(kind).config_from_dict(config)


def expected_shapes(kind: str, config, parts) -> dict:
  """Abstract {part: tree of ShapeDtypeStruct} for the architecture, nothing allocated."""
  from pulse_jax.generators import family
  fam = family(kind)
  return {part: fam.part_shapes(config, part) for part in parts}


def _paths_and_shapes(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in leaves}


def shape_mismatches(expected, actual) -> list[str]:
  """Human-readable differences between two trees of shaped leaves (empty when equal)."""
  e, a = _paths_and_shapes(expected), _paths_and_shapes(actual)
  out = [f"missing {k} (expected shape {e[k]})" for k in sorted(set(e) - set(a))]
  out += [f"unexpected {k} (shape {a[k]})" for k in sorted(set(a) - set(e))]
  out += [f"{k}: stored shape {a[k]}, architecture needs {e[k]}"
          for k in sorted(set(e) & set(a)) if e[k] != a[k]]
  return out


def save_weights(directory: str, weights: GeneratorWeights, *, overwrite: bool = False) -> str:
  """Writes DIR/params (orbax) and DIR/metadata.json; returns the absolute directory."""
  import orbax.checkpoint as ocp
  directory = os.path.abspath(directory)
  problems = shape_mismatches(
      expected_shapes(weights.kind, weights.config, list(weights.params)), weights.params)
  if problems:
    raise ValueError("Parameters do not match the architecture:\n  " + "\n  ".join(problems))
  meta_path = os.path.join(directory, METADATA_FILE)
  if os.path.exists(meta_path) and not overwrite:
    raise FileExistsError(f"{directory} already holds converted weights; pass --overwrite "
                          "(or choose another --out) to replace them.")
  os.makedirs(directory, exist_ok=True)
  tree = jax.tree.map(lambda x: np.asarray(x, np.float32), weights.params)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.join(directory, PARAMS_DIR), tree, force=True)
  ckpt.wait_until_finished()
  meta = dict(weights.metadata)
  meta.update({"format_version": FORMAT_VERSION, "kind": weights.kind,
               "config": weights.config.to_dict(), "parts": sorted(weights.params)})
  with open(meta_path, "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  return directory


def read_metadata(directory: str) -> dict:
  path = os.path.join(directory, METADATA_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{directory} is not a converted weights directory (no {METADATA_FILE}). Convert weights "
        "with `python -m weights_convert --source=FILE --out=DIR` and pass that DIR.")
  with open(path) as f:
    meta = json.load(f)
  version = meta.get("format_version")
  if version != FORMAT_VERSION:
    raise ValueError(f"{path}: format version {version} is not supported (this pulse-jax reads "
                     f"{FORMAT_VERSION}); re-run weights_convert on the source files.")
  return meta


def load_weights(directory: str, parts=None) -> GeneratorWeights:
  """Loads a weights directory, checking stored shapes against the architecture first."""
  import orbax.checkpoint as ocp
  directory = os.path.abspath(directory)
  meta = read_metadata(directory)
  kind = meta["kind"]
  config = config_from_metadata(kind, meta["config"])
  stored_parts = list(meta["parts"])
  parts = stored_parts if parts is None else [p for p in parts if p in stored_parts]
  expected = expected_shapes(kind, config, stored_parts)
  ckpt = ocp.StandardCheckpointer()
  params_dir = os.path.join(directory, PARAMS_DIR)
  stored = ckpt.metadata(params_dir)
  stored = getattr(stored, "item_metadata", stored)
  stored = getattr(stored, "tree", stored)
  problems = shape_mismatches(expected, stored)
  if problems:
    raise ValueError(f"{directory}: stored parameters do not match the architecture in "
                     f"{METADATA_FILE}:\n  " + "\n  ".join(problems))
  target = {p: expected[p] for p in stored_parts}
  params = ckpt.restore(params_dir, target)
  params = {p: params[p] for p in parts}
  return GeneratorWeights(kind, config, params, meta)
