"""Converted-weights directories: an orbax checkpoint plus a JSON metadata file.

Layout of a weights directory DIR:
  DIR/metadata.json   kind, architecture config, parts, source files (name, sha256),
                      gaussian-fit provenance, format version
  DIR/params/         orbax checkpoint of {part: param tree}

The kind names a generator family (`pulse_jax.generators.registry`), which defines its parts
and their shapes (e.g. 'synthesis', 'mapping', 'gaussian_fit', 'dlatent_avg' for 'stylegan';
'dcgan' for 'dcgan'). Loading checks metadata.json (types and bounds of every field, per family
config field) and every stored shape against the architecture in it *before* allocating, and
names the problems (the first few, then a count); a tampered or damaged directory is a
`WeightsError` naming the file and the fix (re-convert with weights_convert).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
PARAMS_DIR = "params"
MAX_METADATA_BYTES = 4 << 20   # a converted metadata.json is a few KB
MAX_CONFIG_INT = 1 << 20       # no architecture field of a real network comes near this
MAX_LAYER_COUNT = 1024         # layer-count fields (the released networks have at most 18)
LAYER_COUNT_FIELDS = ("mapping_layers", "mapping_num_layers", "num_layers")
MAX_LIST = 64                  # list-valued config fields (e.g. resample_filter: 4 taps)
MAX_LISTED = 8                 # shape mismatches listed in an error, then a count
RECONVERT = ("Re-convert the source weights: `python -m weights_convert --source=FILE --out=DIR "
             "--overwrite`.")


class WeightsError(ValueError):
  """A weights directory (or built-in model) that cannot be used: missing, tampered with,
  damaged or of another format version. The message names the file and the fix; the
  commands report it as a usage error (exit status 2)."""


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


def _config_class(fam) -> type:
  """The dataclass of a family's config (the type of its default config)."""
  return type(fam.config_from_dict({}))


def _describe_type(tp) -> str:
  """How a message names a config field's type ('an integer', 'null or a number', ...)."""
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    args = typing.get_args(tp)
    return " or ".join(["null"] * (type(None) in args) +
                       [_describe_type(a) for a in args if a is not type(None)])
  if origin in (tuple, list):
    return f"a list of {_describe_type(typing.get_args(tp)[0]).split(' ', 1)[1]}s"
  return {bool: "true or false", int: "an integer", float: "a number",
          str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _type_ok(value, tp, limit: int = MAX_CONFIG_INT) -> bool:
  """Whether a JSON value fits a config field's annotation `tp` (bounded: ints in 0..`limit`,
  finite numbers, strings and lists of at most MAX_LIST items)."""
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    return any(_type_ok(value, a, limit) for a in typing.get_args(tp))
  if tp is type(None):
    return value is None
  if tp is bool:
    return isinstance(value, bool)
  if tp is int:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
  if tp is float:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and abs(value) <= 1e30)
  if tp is str:
    return isinstance(value, str) and len(value) <= MAX_LIST
  if origin in (tuple, list):
    elem = typing.get_args(tp)[0]
    return (isinstance(value, list) and len(value) <= MAX_LIST
            and all(_type_ok(v, elem, limit) for v in value))
  return True  # an annotation not listed above: the config's own checks decide


def _short(value) -> str:
  """A JSON value as a message shows it: at most 40 characters."""
  text = json.dumps(value)
  return text if len(text) <= 40 else text[:37] + "..."


def config_problems(kind: str, config) -> list[str]:
  """What is wrong with metadata.json's "config" for a `kind` generator: each field against
  its type in the family's config dataclass (unknown fields, wrong JSON types, ints outside
  0..MAX_CONFIG_INT, layer counts beyond MAX_LAYER_COUNT, non-finite numbers); [] when it fits.
  Fields left out take the config's defaults."""
  from pulse_jax.generators import family
  if not isinstance(config, dict):
    return [f'"config" must be an object of architecture fields, got {_short(config)}']
  cls = _config_class(family(kind))
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  out = []
  unknown = [k for k in config if k not in hints]
  if unknown:
    listed = ", ".join(_short(k) for k in unknown[:MAX_LISTED])
    out.append(f"config has unknown field(s) {listed}"
               f"{f' and {len(unknown) - MAX_LISTED} more' if len(unknown) > MAX_LISTED else ''}"
               f" (a {kind} config has: {', '.join(names)})")
  for name in names:
    if name not in config:
      continue
    limit = MAX_LAYER_COUNT if name in LAYER_COUNT_FIELDS else MAX_CONFIG_INT
    if not _type_ok(config[name], hints[name], limit):
      what = _describe_type(hints[name]).replace("an integer", f"an integer in 0..{limit}")
      out.append(f"config.{name} must be {what}, got {_short(config[name])}")
  return out


def config_from_metadata(kind: str, config: dict, path: str = METADATA_FILE):
  """The family's config from metadata.json's "config" (`config_problems` checked first);
  WeightsError naming `path` and the fix."""
  from pulse_jax.generators import family
  problems = config_problems(kind, config)
  if not problems:
    try:
      return family(kind).config_from_dict(config)
    except (ValueError, TypeError) as e:
      problems = [f"config: {_shorten(str(e))}"]
  raise WeightsError(f"{path}: {'; '.join(problems)}. {RECONVERT}")


def _shorten(text: str, limit: int = 400) -> str:
  return text if len(text) <= limit else text[:limit - 3] + "..."


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


def listed(problems: list[str], limit: int = MAX_LISTED) -> str:
  """Problems as message lines: the first `limit`, then how many more (messages stay short)."""
  more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
  return "\n  " + "\n  ".join(problems[:limit] + more)


def save_weights(directory: str, weights: GeneratorWeights, *, overwrite: bool = False) -> str:
  """Writes DIR/params (orbax) and DIR/metadata.json; returns the absolute directory."""
  import orbax.checkpoint as ocp
  directory = os.path.abspath(directory)
  problems = shape_mismatches(
      expected_shapes(weights.kind, weights.config, list(weights.params)), weights.params)
  if problems:
    raise ValueError("Parameters do not match the architecture:" + listed(problems))
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


def _metadata_problems(meta) -> list[str]:
  """What is wrong with metadata.json's top level (kind, parts, sources, version), or []."""
  from pulse_jax.generators import kinds
  if not isinstance(meta, dict):
    return [f"must be a JSON object (kind, config, parts, ...), got {_short(meta)}"]
  version = meta.get("format_version")
  if version != FORMAT_VERSION or isinstance(version, bool):
    return [f"format version {_short(version)} is not supported (this pulse-jax reads "
            f"{FORMAT_VERSION})"]
  kind = meta.get("kind")
  if not isinstance(kind, str) or kind not in kinds():
    return [f'"kind" must be one of {", ".join(kinds())}, got {_short(kind)}']
  out = []
  if "config" not in meta:
    out.append('"config" (the architecture) is missing')
  parts = meta.get("parts")
  if (not isinstance(parts, list) or not parts or len(parts) > MAX_LIST
      or not all(isinstance(p, str) for p in parts) or len(set(parts)) != len(parts)):
    out.append(f'"parts" must be a list of distinct part names, got {_short(parts)}')
  sources = meta.get("sources", [])
  if not isinstance(sources, list) or not all(
      isinstance(x, dict) and all(isinstance(x.get(k, ""), str) for k in ("file", "sha256"))
      for x in sources):
    out.append(f'"sources" must be a list of {{"file": ..., "sha256": ...}} objects, got '
               f"{_short(sources)}")
  if not isinstance(meta.get("pulse_jax_version", ""), str):
    out.append(f'"pulse_jax_version" must be a string, got {_short(meta["pulse_jax_version"])}')
  return out


def read_metadata(directory: str) -> dict:
  """DIR/metadata.json, checked (`_metadata_problems`, then the config's fields against the
  family's config: `config_problems`). WeightsError naming the file and the fix
  (re-convert) for a missing, unreadable, malformed or tampered file."""
  path = os.path.join(directory, METADATA_FILE)
  if not os.path.isfile(path):
    raise WeightsError(
        f"{directory} is not a converted weights directory (no {METADATA_FILE}). Convert weights "
        "with `python -m weights_convert --source=FILE --out=DIR` and pass that DIR.")
  try:
    if os.path.getsize(path) > MAX_METADATA_BYTES:
      raise WeightsError(f"{path}: {os.path.getsize(path):,} bytes, more than a converted "
                         f"{METADATA_FILE} holds (at most {MAX_METADATA_BYTES:,}). {RECONVERT}")
    with open(path, "rb") as f:
      meta = json.loads(f.read().decode("utf-8"))
  except OSError as e:
    raise WeightsError(f"{path}: cannot be read ({e.strerror or e}).") from None
  except (ValueError, RecursionError) as e:  # JSON, UTF-8, nesting too deep
    raise WeightsError(f"{path}: not valid JSON ({_shorten(str(e), 120)}). {RECONVERT}") from None
  problems = _metadata_problems(meta) or config_problems(meta["kind"], meta["config"])
  if problems:
    raise WeightsError(f"{path}: {'; '.join(problems)}. {RECONVERT}")
  return meta


def load_weights(directory: str, parts=None) -> GeneratorWeights:
  """Loads a weights directory, checking metadata.json (`read_metadata`) and the stored shapes
  against the architecture first. WeightsError naming the file and the fix for a tampered or
  damaged directory."""
  import orbax.checkpoint as ocp
  directory = os.path.abspath(directory)
  meta = read_metadata(directory)
  meta_path = os.path.join(directory, METADATA_FILE)
  kind = meta["kind"]
  config = config_from_metadata(kind, meta["config"], meta_path)
  stored_parts = list(meta["parts"])
  parts = stored_parts if parts is None else [p for p in parts if p in stored_parts]
  try:
    expected = expected_shapes(kind, config, stored_parts)
  except ValueError as e:  # a part the family does not have
    raise WeightsError(f'{meta_path}: "parts": {_shorten(str(e), 200)} {RECONVERT}') from None
  ckpt = ocp.StandardCheckpointer()
  params_dir = os.path.join(directory, PARAMS_DIR)
  if not os.path.isdir(params_dir):
    raise WeightsError(f"{directory}: no {PARAMS_DIR}/ folder (the parameters). {RECONVERT}")
  try:
    stored = ckpt.metadata(params_dir)
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore: many types)
    raise WeightsError(f"{params_dir}: cannot be read ({type(e).__name__}: "
                       f"{_shorten(str(e), 200)}). {RECONVERT}") from None
  stored = getattr(stored, "item_metadata", stored)
  stored = getattr(stored, "tree", stored)
  problems = shape_mismatches(expected, stored)
  if problems:
    raise WeightsError(f"{directory}: stored parameters do not match the architecture in "
                       f"{METADATA_FILE}:{listed(problems)}\n{RECONVERT}")
  target = {p: expected[p] for p in stored_parts}
  try:
    params = ckpt.restore(params_dir, target)
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore: many types)
    raise WeightsError(f"{params_dir}: cannot be read ({type(e).__name__}: "
                       f"{_shorten(str(e), 200)}). {RECONVERT}") from None
  params = {p: params[p] for p in parts}
  return GeneratorWeights(kind, config, params, meta)
