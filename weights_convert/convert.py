"""Foreign weight files -> pulse-jax `GeneratorWeights`.

The kind of each file is detected from its content (container format, then the
tensor names inside), never from its name:
  - 'pulse_synthesis' / 'pulse_mapping' / 'gaussian_fit': the PULSE reference's
    torch state dicts (zip or legacy torch format);
  - 'stylegan_tf': NVIDIA's official TF pickle (G, D, Gs) - Gs's synthesis,
    mapping and dlatent_avg are taken;
  - 'dcgan': the `weights.tar` of the `gan-face-generate` wheel;
  - 'nvidia_<family>' (nvidia_stylegan2, nvidia_stylegan3): NVIDIA's PyTorch network pickles
    (stylegan2-ada-pytorch, stylegan3; `torch_utils.persistence` objects) - one network,
    G_ema by default, is read (`nvidia_pickle`); the family is the one whose name table reads
    that network's class (`tables.registry`);
  - 'stylegan2_tf': NVIDIA's TF StyleGAN2 pickle (G, D, Gs) - Gs (or G), renamed to the
    PyTorch names;
  - 'rosinality_stylegan2': a rosinality stylegan2-pytorch checkpoint (torch.save of g_ema,
    g, ...) or generator state dict - renamed to NVIDIA's names (`tables.rosinality`).
The NVIDIA kinds convert on their own into that family's weights.
Several files may be combined into one StyleGAN checkpoint (synthesis + mapping
+ Gaussian fit).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from pulse_jax.io.weights_dir import GeneratorWeights, sha256_file
from pulse_jax.nets.stylegan1 import StyleGANConfig
from weights_convert.tables import registry as tables

LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


@dataclasses.dataclass
class Source:
  """One read source file: detected kind, its tensors (name -> array) or networks."""
  path: str
  kind: str
  content: Any
  sha256: str

  def describe(self) -> dict:
    return {"file": os.path.basename(self.path), "kind": self.kind, "sha256": self.sha256}


def _container(path: str) -> str:
  import zipfile
  with open(path, "rb") as f:
    head = f.read(16)
  if not head:
    raise ValueError(f"{path}: the file is empty; pass a weights file (see --helpfull).")
  if zipfile.is_zipfile(path):
    return "torch"
  if head[:1] == b"\x80":
    # A legacy torch file starts with the pickled magic number (a long int).
    if _looks_like_legacy_torch(path):
      return "torch"
    return "pickle"
  raise ValueError(
      f"{path}: not a weights file this converter knows (neither a torch checkpoint nor a "
      "pickle). Supported: the PULSE reference's synthesis.pt / mapping.pt / gaussian_fit.pt, "
      "NVIDIA's karras2019stylegan-ffhq-1024x1024.pkl, gan-face-generate's weights.tar.")


def _looks_like_legacy_torch(path: str) -> bool:
  import pickletools
  with open(path, "rb") as f:
    data = f.read(64)
  try:
    for op, arg, _ in pickletools.genops(data):
      if op.name in ("PROTO",):
        continue
      return op.name in ("LONG1", "LONG4", "LONG") and arg == LEGACY_TORCH_MAGIC
  except Exception:
    return False
  return False


def _classify_torch(path: str, obj: Any) -> tuple[str, dict]:
  if isinstance(obj, dict) and "netG_state_dict" in obj:
    return "dcgan", dict(obj["netG_state_dict"])
  if isinstance(obj, dict) and set(obj) == {"mean", "std"}:
    return "gaussian_fit", dict(obj)
  if isinstance(obj, dict) and "blocks.4x4.const" in obj:
    return "pulse_synthesis", dict(obj)
  if isinstance(obj, dict) and "dense0.weight" in obj:
    return "pulse_mapping", dict(obj)
  keys = _names(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
  raise ValueError(
      f"{path}: a torch file, but not one this converter knows (top-level keys: {keys}). "
      "Expected the PULSE reference's synthesis/mapping state dict, its gaussian_fit.pt, or "
      "gan-face-generate's weights.tar.")


NVIDIA_PREFIX = "nvidia_"
MAX_NAMES = 8   # names listed in an error message, then a count


def _clip(text, limit: int = 200) -> str:
  """A path or name as an error message shows it: at most `limit` characters."""
  text = str(text)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _names(items) -> str:
  """Names joined for a message: the first MAX_NAMES (each clipped), then how many more."""
  items = [_clip(x, 80) for x in items]
  more = f" and {len(items) - MAX_NAMES} more" if len(items) > MAX_NAMES else ""
  return ", ".join(items[:MAX_NAMES]) + more


def _is_network(src: "Source") -> bool:
  """A generator read into NVIDIA's names (`NetworkData`): converts on its own."""
  from weights_convert.readers.nvidia_pickle import NetworkData
  return isinstance(src.content, NetworkData)


def read_source(path: str, network: str = "G_ema") -> Source:
  """Reads and classifies one weights file (no code from the file is ever run).

  The readers refuse a file that describes more data than its bytes hold, so no file makes
  this allocate much more than its own size (`weights_convert.readers.limits`); a `MemoryError`
  becomes a `WeightFileError` (a `ValueError`) naming the file. `network` picks the network
  of a NVIDIA pickle ('G_ema', 'G'); other files ignore it.
  """
  if os.path.isdir(path):
    raise ValueError(f"--source={_clip(path)}: a directory; pass a weights file (e.g. the "
                     "reference's synthesis.pt, a NVIDIA network .pkl or gan-face-generate's "
                     "weights.tar), repeating --source for several files.")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--source={_clip(path)}: no such file.")
  try:
    return _read_source(path, network)
  except MemoryError as e:
    from weights_convert.readers.limits import out_of_memory
    raise out_of_memory(path, "it", e) from e


def _read_torch(path: str, network: str) -> tuple[str, Any]:
  """A torch file: a rosinality checkpoint (its generator `network`, as `NetworkData`) or one
  of the reference's / gan-face-generate's state dicts (`_classify_torch`)."""
  from weights_convert.readers.torch_files import read_torch_file
  from weights_convert.tables import rosinality
  obj = read_torch_file(path)
  if rosinality.is_checkpoint(obj):
    return "rosinality_stylegan2", rosinality.to_network(path, obj, network)
  return _classify_torch(path, obj)


def _read_nvidia_pickle(path: str, network: str) -> tuple[str, Any]:
  """A NVIDIA PyTorch network pickle: its network `network` (`NetworkData`), of the kind
  'nvidia_<family>' of the family whose tables read its class."""
  from weights_convert.readers import nvidia_pickle
  content = nvidia_pickle.read_network(path, network)
  found = tables.for_class(content.class_name)
  return NVIDIA_PREFIX + (found[0] if found else "network"), content


def _read_tf_pickle(path: str, network: str) -> tuple[str, Any]:
  """A TF pickle (G, D, Gs): StyleGAN2 (its network `network`, renamed to the PyTorch names)
  or StyleGAN v1 (Gs)."""
  from weights_convert.readers import nvidia_pickle
  from weights_convert.readers.tf_pickle import read_tf_network_pickle
  nets = read_tf_network_pickle(path)
  gs = nets[-1] if isinstance(nets, (tuple, list)) else nets
  comps = getattr(gs, "components", {}) or {}
  if "synthesis" not in comps:
    raise ValueError(f"{path}: a StyleGAN TF pickle must hold (G, D, Gs) with Gs having a "
                     f"'synthesis' component; found components "
                     f"{_names(sorted(map(str, comps))) or 'none'}.")
  if nvidia_pickle.is_stylegan2_tf(gs):
    return "stylegan2_tf", nvidia_pickle.network_from_tf(nets, path, network)
  return "stylegan_tf", gs


# File format (`_file_format`) -> its reader: (path, network) -> (source kind, content).
READERS: dict[str, Callable[[str, str], tuple[str, Any]]] = {
    "torch": _read_torch,
    "nvidia_pickle": _read_nvidia_pickle,
    "tf_pickle": _read_tf_pickle,
}


def _file_format(path: str) -> str:
  """'torch' (zip or legacy torch.save), 'nvidia_pickle' (torch_utils.persistence objects) or
  'tf_pickle' (anything else that is a pickle: the TF reader refuses what it cannot read)."""
  from weights_convert.readers import nvidia_pickle
  if _container(path) == "torch":
    return "torch"
  return "nvidia_pickle" if nvidia_pickle.pickle_kind(path) == "persistence" else "tf_pickle"


def _read_source(path: str, network: str) -> Source:
  kind, content = READERS[_file_format(path)](path, network)
  return Source(os.path.abspath(path), kind, content, sha256_file(path))


def _convert_nvidia(src: Source, network: str, meta: dict, log: Callable[[str], None],
                    gaussian_fit_samples: int = 1_000_000,
                    gaussian_fit_seed: int = 0) -> GeneratorWeights:
  """A NVIDIA generator (`NetworkData`) -> the weights of the family whose name table reads
  its class (`tables.registry.for_class`)."""
  from pulse_jax.generators import family
  data = src.content
  found = tables.for_class(data.class_name)
  if found is None:
    raise ValueError(f"{src.path}: network {network!r} is a {data.class_name}, not a generator "
                     f"this converter reads ({', '.join(tables.generator_classes())}); "
                     "pass --network=G_ema (or G).")
  kind, table = found
  cfg, params = table.from_network(data)
  meta["network"] = {"name": network, "class_name": data.class_name,
                     "init_kwargs": data.init_kwargs}
  log(f"{src.path}: {network} is a {data.class_name}, {len(data.tensors)} tensors")
  classes = family(kind).num_classes(cfg)
  if gaussian_fit_samples > 0:
    per = (f", one fit per class: {classes} classes x {gaussian_fit_samples} samples (the "
           "search picks one with --class_index)") if classes else f", {gaussian_fit_samples} samples"
    log(f"computing the PULSE prior: a Gaussian fit of the mapping's last pre-activation"
        f"{per}, seed {gaussian_fit_seed}")
    params["gaussian_fit"] = family(kind).fit_prior(params, cfg, num_samples=gaussian_fit_samples,
                                                    seed=gaussian_fit_seed)
    meta["gaussian_fit"] = {"how": "computed", "of": "mapping pre-activation",
                            "samples": gaussian_fit_samples, "seed": gaussian_fit_seed,
                            **({"per_class": classes} if classes else {})}
  return GeneratorWeights(kind, cfg, params, meta)


# Source kinds that convert on their own into one family's weights, besides the network files
# (`NetworkData`: NVIDIA pickles, rosinality checkpoints, `_convert_nvidia`): source kind ->
# (how errors name it, family kind); the family's tables module reads it (`from_state_dict`).
WHOLE_GENERATORS = {"dcgan": ("A DCGAN weights file", "dcgan")}


def _provides(kind: str) -> str:
  """What a source provides, as a clash of two sources names it: 'synthesis' for either
  StyleGAN v1 synthesis source (`tables.stylegan1.PARTS`), else its kind."""
  part = tables.TABLES["stylegan"].PARTS.get(kind, (kind,))[0]
  return part if part == "synthesis" else kind


def convert_sources(paths: list[str], *, overrides: dict | None = None,
                    gaussian_fit_samples: int = 1_000_000, gaussian_fit_seed: int = 0,
                    network: str = "G_ema",
                    log: Callable[[str], None] = print) -> GeneratorWeights:
  """Reads, checks and maps every source into one `GeneratorWeights`.

  `network`: which network of a NVIDIA network pickle to convert ('G_ema' or 'G').
  """
  overrides = dict(overrides or {})
  sources = [read_source(p, network) for p in paths]
  by_part: dict[str, Source] = {}
  for s in sources:
    log(f"{s.path}: detected {s.kind}")
    part = _provides(s.kind)
    if part in by_part:
      raise ValueError(f"{s.path} and {by_part[part].path} both provide {part}; pass one.")
    by_part[part] = s
  meta = {"sources": [s.describe() for s in sources]}

  nvidia = [s for s in sources if _is_network(s)]
  if nvidia:
    if len(sources) != 1:
      raise ValueError("A network file (a NVIDIA pickle, a rosinality checkpoint) converts on "
                       f"its own; do not combine it with other sources "
                       f"({_names(s.path for s in sources)}).")
    if overrides:
      raise ValueError(f"{_names(f'--{k}' for k in sorted(overrides))} apply to StyleGAN v1 "
                       "sources only; a StyleGAN2/3 network file records its own architecture.")
    return _convert_nvidia(nvidia[0], network, meta, log, gaussian_fit_samples,
                           gaussian_fit_seed)

  for s in sources:
    if s.kind in WHOLE_GENERATORS:
      what, kind = WHOLE_GENERATORS[s.kind]
      if len(sources) != 1:
        raise ValueError(f"{what} converts on its own; do not combine it with "
                         f"other sources ({_names(s.path for s in sources)}).")
      cfg, params = tables.TABLES[kind].from_state_dict(s.content, s.path)
      return GeneratorWeights(kind, cfg, params, meta)

  # StyleGAN v1: each source one part, in the order of `tables.stylegan1.PARTS`.
  v1 = tables.TABLES["stylegan"]
  params: dict = {}
  cfg = None
  imported_fit = None
  by_kind = {s.kind: s for s in sources}
  for kind, (part, read) in v1.PARTS.items():
    s = by_kind.get(kind)
    if s is not None:
      cfg, got = read(s.content, s.path, cfg, overrides)
      params.update(got)
      imported_fit = s if part == "gaussian_fit" else imported_fit
  if cfg is None:
    cfg = StyleGANConfig(**overrides)
  if imported_fit is not None:
    meta["gaussian_fit"] = {"how": "imported", "file": os.path.basename(imported_fit.path)}
  elif "mapping" in params and gaussian_fit_samples > 0:
    from pulse_jax.generators.prior import fit_gaussian
    log(f"computing the Gaussian fit of the mapping network ({gaussian_fit_samples} samples, "
        f"seed {gaussian_fit_seed})")
    params["gaussian_fit"] = fit_gaussian(params["mapping"], cfg, num_samples=gaussian_fit_samples,
                                          seed=gaussian_fit_seed)
    meta["gaussian_fit"] = {"how": "computed", "samples": gaussian_fit_samples,
                            "seed": gaussian_fit_seed}
  if "synthesis" not in params:
    log("note: no synthesis network among the sources; this checkpoint cannot render images.")
  if "gaussian_fit" not in params and "synthesis" in params:
    log("note: no Gaussian fit (add gaussian_fit.pt or the mapping network): the PULSE search "
        "needs one.")
  return GeneratorWeights("stylegan", cfg, params, meta)


def max_abs(tree) -> float:
  import jax
  leaves = jax.tree.leaves(tree)
  return max(float(np.max(np.abs(a))) for a in leaves) if leaves else 0.0


def convert_and_save(paths: list[str], out: str, *, overrides: dict | None = None,
                     overwrite: bool = False, gaussian_fit_samples: int = 1_000_000,
                     gaussian_fit_seed: int = 0, network: str = "G_ema",
                     log: Callable[[str], None] = print) -> str:
  """Converts `paths` into the weights directory `out`, then reloads it and checks it matches.

  `out` is checked first (`check_out`), before any file is read or a Gaussian fit computed.
  """
  import jax
  from pulse_jax.io.weights_dir import load_weights, save_weights
  check_out(out, overwrite)
  weights = convert_sources(paths, overrides=overrides, gaussian_fit_samples=gaussian_fit_samples,
                            gaussian_fit_seed=gaussian_fit_seed, network=network, log=log)
  import pulse_jax
  weights.metadata["pulse_jax_version"] = pulse_jax.__version__
  directory = save_weights(out, weights, overwrite=overwrite)
  back = load_weights(directory)
  diff = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), weights.params, back.params)
  n = sum(int(np.size(a)) for a in jax.tree.leaves(weights.params))
  log(f"wrote {directory}: {weights.kind} {weights.config}, parts {sorted(weights.params)}, "
      f"{n:,} values; max |reloaded - converted| = {max_abs(diff):.3g}")
  return directory


# Entries a weights directory holds (metadata.json, params/, an interrupted save's tmp folder).
_WEIGHTS_ENTRIES = ("metadata.json", "params")


def check_out(out: str, overwrite: bool) -> None:
  """`--out` before anything is converted: a new or empty directory, or (with `overwrite`) a
  converted weights directory. FileExistsError for existing weights without `overwrite`;
  ValueError for a file, or a directory holding anything but weights (never replaced)."""
  if not out:
    raise ValueError("--out: pass the weights directory to write (e.g. --out=weights/ffhq).")
  if os.path.exists(out) and not os.path.isdir(out):
    raise ValueError(f"--out={_clip(out)}: a file, not a directory; pass a new directory.")
  if not os.path.isdir(out):
    return
  entries = os.listdir(out)
  if not entries:
    return
  other = [e for e in entries
           if e not in _WEIGHTS_ENTRIES and not e.startswith("params.orbax-checkpoint-tmp")]
  if other:
    raise ValueError(f"--out={_clip(out)}: an existing directory that holds other files "
                     f"({_names(sorted(other))}), not converted weights; pass a new or empty "
                     "directory.")
  if not overwrite:
    raise FileExistsError(f"--out={_clip(out)} already holds converted weights; pass --overwrite "
                          "to replace them (or choose another --out).")
