"""Read NVIDIA's StyleGAN2 / 2-ADA / 3 network pickles without torch, dnnlib or their code.

Two formats give the same ``NetworkData`` (class, constructor kwargs, every parameter and
buffer by its torch state-dict name):

* PyTorch pickles (stylegan2-ada-pytorch, stylegan3): a dict ``{'G', 'D', 'G_ema',
  'augment_pipe', 'training_set_kwargs'}``. Each network object is pickled by
  ``torch_utils.persistence`` as ``_reconstruct_persistent_obj(meta)``, where ``meta`` holds
  ``class_name``, the module's ``__dict__`` (``state``: ``_parameters``, ``_buffers``,
  ``_modules``, ``_init_kwargs`` ...) and the **source code** of the module that defines the
  class (``module_src``). NVIDIA's loader executes that source; here it is kept as an inert
  string and never run: the pickle goes through the allow-list unpickler
  (``safe_unpickle``) with the stand-ins below. Tensors are pickled as plain ``pickle``
  pickles them: ``_rebuild_parameter(_rebuild_tensor_v2(_load_from_bytes(b), offset, size,
  stride, ...))``, ``b`` being a nested ``torch.save`` file of one storage. Storages stay
  those bytes (``LazyStorage``) until the chosen network's tensors are read: the nested files
  of 'D', 'G' or 'augment_pipe' are never parsed. Each nested file goes through the safe
  torch reader (``torch_files``) with its size limits; all arrays handed back take at most
  ``limits.OUTPUT_FACTOR`` x the pickle's size.
* NVIDIA's TensorFlow StyleGAN2 pickles (``stylegan2-ffhq-config-f.pkl``): the dnnlib
  ``(G, D, Gs)`` tuple ``tf_pickle`` reads; Gs ('G_ema') or G is renamed to the PyTorch
  names with an explicit table (``tables.stylegan2.tf_table``, what NVIDIA's ``legacy.py``
  does), and its static kwargs become PyTorch ``init_kwargs``.

The pickle records no module names: ``class_name`` ("training.networks_stylegan2.Generator")
is told from the class name and marks in the embedded source (stylegan2-ada-pytorch's
``training.networks`` is reported as ``training.networks_stylegan2``: the same networks).
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickletools
from typing import Any

import numpy as np

from weights_convert.readers import torch_files
from weights_convert.readers.errors import WeightFileError, describe, name_mismatch
from weights_convert.readers.limits import Budget, SizeRefusal, out_of_memory
from weights_convert.readers.numpy_globals import PickledArray, PickledDType, numpy_allow_list
from weights_convert.readers.safe_unpickle import (PLAIN_CONTAINERS, AllowedCallable, Sealed,
                                           check_pickle, safe_load)
from weights_convert.readers.tf_pickle import (EASYDICT_GLOBAL, NETWORK_GLOBAL, TFNetwork,
                                       _EasyDictStub, read_tf_network_pickle)
from weights_convert.readers.torch_globals import Storage, materialize, torch_allow_list
from weights_convert.readers.torch_globals import _tensor as _checked_tensor

__all__ = ["NetworkData", "PERSISTENCE_GLOBAL", "is_stylegan2_tf", "network_from_tf",
           "pickle_kind", "read_network", "tf_init_kwargs"]

PERSISTENCE_GLOBAL = ("torch_utils.persistence", "_reconstruct_persistent_obj")
_WHAT = "NVIDIA network pickles"
_HINT = ("Only torch_utils.persistence objects holding tensors, numpy scalars and plain Python "
         "values are read (their embedded source code is never run). If this is a trusted file "
         "of another kind, re-save its G_ema state_dict with torch; otherwise it is not a "
         "StyleGAN network pickle.")
_GENERATOR_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_MAX_DEPTH = 64


@dataclasses.dataclass(frozen=True)
class NetworkData:
  """One network of a NVIDIA pickle as plain data.

  Attributes:
    class_name: e.g. 'training.networks_stylegan2.Generator'.
    init_kwargs: the constructor's keyword arguments, plain Python values (dicts, lists,
      numbers, strings, None), e.g. z_dim, c_dim, w_dim, img_resolution, img_channels,
      mapping_kwargs, channel_base ... (stylegan2-ada-pytorch: synthesis_kwargs).
    tensors: every parameter and persistent buffer by torch state-dict name
      ('synthesis.b4.conv1.weight', 'mapping.w_avg'), numpy arrays in torch layout and dtype.
    source: the file's path.
  """
  class_name: str
  init_kwargs: dict
  tensors: dict
  source: str


# ----------------------------------------------------------------------------- stand-ins


class PersistentObject(Sealed):
  """What ``_reconstruct_persistent_obj(meta)`` gives: the meta, nothing executed."""

  __slots__ = ("class_name", "module_src", "version", "state")

  def __init__(self, class_name: str, module_src: str, version: int, state: dict) -> None:
    self._set(class_name=class_name, module_src=module_src, version=version, state=state)

  def __repr__(self) -> str:
    return f"PersistentObject({self.class_name!r})"


class LazyStorage(Sealed):
  """A storage as the nested ``torch.save`` bytes ``_load_from_bytes`` got; parsed on demand."""

  __slots__ = ("blob",)

  def __init__(self, blob: bytes) -> None:
    self._set(blob=blob)

  def __repr__(self) -> str:
    return f"LazyStorage({len(self.blob)} bytes)"


class LazyTensor(Sealed):
  """A tensor view of a ``LazyStorage`` (offset, size, stride in elements), unchecked yet."""

  __slots__ = ("storage", "offset", "size", "stride")

  def __init__(self, storage: LazyStorage, offset: Any, size: Any, stride: Any) -> None:
    self._set(storage=storage, offset=offset, size=size, stride=stride)


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
  if not isinstance(meta, dict):
    raise ValueError(f"persistent object meta must be a dict, got {type(meta).__name__}")
  if meta.get("type") != "class":
    raise ValueError(f"persistent object of type {meta.get('type')!r}; only 'class' is known")
  name, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
  version = meta.get("version")
  if not isinstance(name, str) or not isinstance(src, str) or not isinstance(state, dict):
    raise ValueError("persistent object meta needs class_name (str), module_src (str) and "
                     "state (dict)")
  if not isinstance(version, int) or isinstance(version, bool):
    raise ValueError(f"persistent object version {version!r} is not an int")
  return PersistentObject(name, src, version, state)


def _load_from_bytes(blob: Any) -> LazyStorage:
  if not isinstance(blob, (bytes, bytearray)):
    raise ValueError(f"_load_from_bytes takes bytes, got {type(blob).__name__}")
  return LazyStorage(bytes(blob))


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None) -> LazyTensor:
  del requires_grad, hooks, metadata  # training-time state
  if not isinstance(storage, LazyStorage):
    raise ValueError("tensor storage must come from _load_from_bytes, got "
                     f"{type(storage).__name__}")
  return LazyTensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride) -> LazyTensor:
  return _rebuild_tensor_v2(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None) -> LazyTensor:
  if not isinstance(data, LazyTensor):
    raise ValueError(f"parameter data must be a tensor, got {type(data).__name__}")
  return data


def persistence_allow_list(budget: Budget | None = None) -> dict[tuple[str, str], object]:
  """``(module, name) -> stand-in`` for NVIDIA's persistence pickles."""
  table: dict[tuple[str, str], object] = dict(PLAIN_CONTAINERS)
  table.update(numpy_allow_list(budget))
  table[EASYDICT_GLOBAL] = _EasyDictStub
  table[PERSISTENCE_GLOBAL] = AllowedCallable(".".join(PERSISTENCE_GLOBAL),
                                              _reconstruct_persistent_obj)
  table[("torch.storage", "_load_from_bytes")] = AllowedCallable(
      "torch.storage._load_from_bytes", _load_from_bytes)
  for fn, name in ((_rebuild_tensor_v2, "_rebuild_tensor_v2"), (_rebuild_tensor, "_rebuild_tensor"),
                   (_rebuild_parameter, "_rebuild_parameter"),
                   (_rebuild_parameter, "_rebuild_parameter_with_state")):
    table[("torch._utils", name)] = AllowedCallable(f"torch._utils.{name}", fn)
  table[("torch", "Size")] = torch_allow_list()[("torch", "Size")]
  return table


# ----------------------------------------------------------------------------- detection


def pickle_kind(path: str | os.PathLike, max_ops: int = 1_000_000) -> str:
  """What a file is, from its first bytes and pickle opcodes (nothing is built or run).

  Returns 'persistence' (a NVIDIA PyTorch network pickle), 'tf' (a dnnlib TF network pickle),
  'zip' (a zip archive: torch.save), 'torch_legacy' (a legacy torch.save file), 'pickle'
  (some other pickle) or 'unknown'.

  Raises:
    WeightFileError: the (first) pickle states sizes its file cannot back or is malformed
      (``safe_unpickle.check_pickle``, run before any opcode argument is read).
  """
  with open(path, "rb") as f:
    head = f.read(4)
    if head == b"PK\x03\x04":
      return "zip"
    if not head or head[:1] != b"\x80":
      return "unknown"
    f.seek(0)
    # genops reads each counted argument whole: first refuse sizes the file cannot back.
    check_pickle(f, source=path)
    memo: dict[int, str | None] = {}
    recent: collections.deque = collections.deque(maxlen=2)  # the last two values pushed
    try:
      for i, (op, arg, _) in enumerate(pickletools.genops(f)):
        name = op.name
        if i == 1 and name in ("LONG1", "LONG4") and arg == torch_files.LEGACY_MAGIC:
          return "torch_legacy"
        found = None
        if name in ("GLOBAL", "INST"):
          found = tuple(arg.split(" ", 1))
        elif name == "STACK_GLOBAL":
          found = tuple(recent)
        if found == PERSISTENCE_GLOBAL:
          return "persistence"
        if found == NETWORK_GLOBAL:
          return "tf"
        top = recent[-1] if recent else None
        if name == "MEMOIZE":
          memo[len(memo)] = top
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
          memo[arg] = top
        elif name in ("GET", "BINGET", "LONG_BINGET"):
          recent.append(memo.get(arg))
        elif isinstance(arg, str) and "UNICODE" in name:
          recent.append(arg)
        elif name not in ("FRAME", "PROTO"):
          recent.append(None)  # something else on the stack (or a stack change)
        if name == "STOP" or i >= max_ops:
          break
    except (ValueError, EOFError, UnicodeDecodeError):
      return "unknown"
  return "pickle"


# ----------------------------------------------------------------------------- reading


def read_network(path: str | os.PathLike, network: str = "G_ema") -> NetworkData:
  """Read one network ('G_ema', 'G', 'D', ...) of a NVIDIA StyleGAN2/3 network pickle.

  Accepts PyTorch pickles (stylegan2-ada-pytorch / stylegan3) and TensorFlow StyleGAN2
  pickles (generators only: 'G_ema' is Gs, 'G' is G). No code from the file is run; only the
  chosen network's storages are parsed.

  Raises:
    UnsafePickleError: the pickle names a global outside the allow-list (nothing was run).
    WeightFileError: not a pickle / not a NVIDIA network pickle, no such network (the message
      lists the networks present), corrupt or truncated data, sizes the file cannot back.
    OSError: the file cannot be opened.
  """
  path = os.fspath(path)
  if os.path.getsize(path) == 0:
    raise WeightFileError(f"{describe(path)} is empty (0 bytes): not a network pickle")
  kind = pickle_kind(path)
  if kind == "tf":
    return network_from_tf(read_tf_network_pickle(path), path, network)
  if kind != "persistence":
    what = {"zip": "a zip archive (a torch.save file?)",
            "torch_legacy": "a legacy torch.save file",
            "pickle": "a pickle without torch_utils.persistence networks",
            "unknown": "not a pickle"}[kind]
    raise WeightFileError(f"{describe(path)} is {what}, not a NVIDIA StyleGAN network pickle "
                          "(a dict of G / D / G_ema saved by stylegan2-ada-pytorch or stylegan3, "
                          "or a TensorFlow StyleGAN2 pickle)")
  try:
    with open(path, "rb") as f:
      budget = Budget.for_file(path, os.fstat(f.fileno()).st_size)
      data = safe_load(f, source=path, allowed=persistence_allow_list(budget), what=_WHAT,
                       hint=_HINT, encoding="latin1")
    obj = _pick(path, data, network)
    refs: dict[str, LazyTensor] = {}
    _collect(path, obj, "", refs, set())
    tensors = _materialize(path, network, refs, budget)
    init_kwargs = _init_kwargs(path, network, obj)
  except RecursionError as e:
    raise WeightFileError(f"{describe(path)} nests its data implausibly deep") from e
  except MemoryError as e:
    raise out_of_memory(path, f"network {network!r}", e) from e
  return NetworkData(_class_name(obj), init_kwargs, tensors, path)


def _kind(obj: Any) -> str:
  return type(obj).__name__


def _pick(path: str, data: Any, network: str) -> PersistentObject:
  if not isinstance(data, dict) or not any(isinstance(v, PersistentObject) for v in data.values()):
    raise WeightFileError(
        f"{describe(path)} is a pickle but not a NVIDIA network pickle: expected a dict of "
        f"networks (G, D, G_ema ...), got {_kind(data)}"
        + (f" with keys {sorted(map(str, data))}" if isinstance(data, dict) else ""))
  if network not in data:
    raise WeightFileError(f"{describe(path)} has no network {network!r}; it holds "
                          f"{sorted(map(str, data))}")
  obj = data[network]
  if not isinstance(obj, PersistentObject):
    raise WeightFileError(f"{describe(path)}: {network!r} is not a NVIDIA network "
                          f"(a {_kind(obj)}, not a torch_utils.persistence object)")
  return obj


def _collect(path: str, obj: PersistentObject, prefix: str, out: dict, seen: set) -> None:
  """state-dict name -> LazyTensor, in torch's order (parameters, buffers, submodules)."""
  where = prefix.rstrip(".") or "<network>"
  if id(obj) in seen or prefix.count(".") > _MAX_DEPTH:
    raise WeightFileError(f"{describe(path)}: module {where!r} is reached twice / nests too deep")
  seen.add(id(obj))
  state = obj.state
  skip = state.get("_non_persistent_buffers_set") or set()
  for field in ("_parameters", "_buffers", "_modules"):
    entries = state.get(field, {})
    if not isinstance(entries, dict):
      raise WeightFileError(f"{describe(path)}: module {where!r} has a {field} that is a "
                            f"{_kind(entries)}, not a dict")
    for name, value in entries.items():
      if value is None or (field == "_buffers" and name in skip):
        continue
      full = f"{prefix}{name}"
      if field == "_modules":
        if not isinstance(value, PersistentObject):
          raise WeightFileError(f"{describe(path)}: submodule {full!r} is a {_kind(value)}, not "
                                "a torch_utils.persistence object")
        _collect(path, value, full + ".", out, seen)
      elif isinstance(value, LazyTensor):
        out[full] = value
      else:
        raise WeightFileError(f"{describe(path)}: {field[1:-1]} {full!r} is a {_kind(value)}, "
                              "not a tensor")


def _parse_storage(path: str, name: str, blob: bytes) -> Storage:
  """The nested ``torch.save`` file of one storage, through the safe torch reader."""
  what = f"{path} [nested storage of {name!r}]"
  f = io.BytesIO(blob)
  if blob[:4] == b"PK\x03\x04":
    obj = torch_files._read_zip(what, f, len(blob))
  else:
    obj = torch_files._read_legacy(what, f, len(blob))
  if not isinstance(obj, Storage):
    raise WeightFileError(f"{describe(path)}: the nested torch file of tensor {name!r} holds a "
                          f"{_kind(obj)}, not a storage")
  return obj


def _materialize(path: str, network: str, refs: dict, budget: Budget) -> dict[str, np.ndarray]:
  storages: dict[int, Storage] = {}
  out = {}
  for name, ref in refs.items():
    key = id(ref.storage)
    if key not in storages:
      storages[key] = _parse_storage(path, name, ref.storage.blob)
    try:
      tensor = _checked_tensor(storages[key], ref.offset, ref.size, ref.stride)
    except (ValueError, TypeError) as e:  # SizeRefusal included
      prefix = "refused to load" if isinstance(e, SizeRefusal) else "corrupt tensor in"
      raise WeightFileError(f"{prefix} {describe(path)}: tensor {name!r}: {e}") from e
    out[name] = materialize(tensor, source=path, budget=budget, where=f"{network}.{name}")
  return out


def _plain(path: str, obj: Any, where: str, depth: int = 0) -> Any:
  """init_kwargs as plain Python values (EasyDict -> dict, numpy scalars -> numbers)."""
  if depth > _MAX_DEPTH:
    raise WeightFileError(f"{describe(path)}: {where} nests too deep")
  if obj is None or isinstance(obj, (bool, int, float, str)):
    return obj
  if isinstance(obj, dict):
    return {str(k): _plain(path, v, f"{where}.{k}", depth + 1) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_plain(path, v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj))
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, PickledDType):
    return str(obj.resolve())
  if isinstance(obj, PickledArray):
    return obj.resolve().tolist()
  raise WeightFileError(f"{describe(path)}: {where} is a {_kind(obj)}, not a plain value")


def _init_kwargs(path: str, network: str, obj: PersistentObject) -> dict:
  kwargs = _plain(path, obj.state.get("_init_kwargs") or {}, f"{network}.init_kwargs")
  args = _plain(path, obj.state.get("_init_args") or (), f"{network}.init_args")
  if not isinstance(kwargs, dict) or not isinstance(args, (list, tuple)):
    raise WeightFileError(f"{describe(path)}: {network!r} has malformed constructor arguments")
  if args:
    if obj.class_name != "Generator" or len(args) > len(_GENERATOR_POSITIONAL):
      raise WeightFileError(f"{describe(path)}: {network!r} ({obj.class_name}) was built with "
                            f"positional arguments {args!r}, which cannot be named")
    kwargs = {**dict(zip(_GENERATOR_POSITIONAL, args)), **kwargs}
  return kwargs


def _class_name(obj: PersistentObject) -> str:
  """'<module>.<class>': the module found from marks in the embedded source (searched, never
  run; `tables.registry.module_marks`: each known module's own line)."""
  from weights_convert.tables.registry import module_marks
  found = sorted({module for mark, module in module_marks() if mark in obj.module_src})
  return f"{found[0] if len(found) == 1 else '<unknown module>'}.{obj.class_name}"


# ----------------------------------------------------------------------------- TensorFlow

# TF static kwarg -> (init_kwargs key, default); 'mapping_kwargs.' keys go to mapping_kwargs.
_TF_KWARGS = {
    "latent_size": ("z_dim", 512), "label_size": ("c_dim", 0), "dlatent_size": ("w_dim", 512),
    "resolution": ("img_resolution", 1024), "num_channels": ("img_channels", 3),
    "fmap_base": ("channel_base", 16384), "fmap_max": ("channel_max", 512),
    "num_fp16_res": ("num_fp16_res", 0), "conv_clamp": ("conv_clamp", None),
    "architecture": ("architecture", "skip"), "resample_kernel": ("resample_filter", [1, 3, 3, 1]),
    "use_noise": ("use_noise", True), "nonlinearity": ("activation", "lrelu"),
    "mapping_layers": ("mapping_kwargs.num_layers", 8),
    "label_fmaps": ("mapping_kwargs.embed_features", None),
    "mapping_fmaps": ("mapping_kwargs.layer_features", None),
    "mapping_nonlinearity": ("mapping_kwargs.activation", "lrelu"),
    "mapping_lrmul": ("mapping_kwargs.lr_multiplier", 0.01),
    "w_avg_beta": ("mapping_kwargs.w_avg_beta", 0.995),
}
# Run-time / training options of the TF graph, no part of the architecture.
_TF_IGNORED = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure",
               "conditioning", "fused_modconv", "dlatent_avg_beta", "randomize_noise",
               "is_training", "is_validation", "return_dlatents", "dtype")
_TF_DEFAULT_ONLY = {"fmap_decay": 1.0, "fmap_min": 1}


def tf_init_kwargs(path: str, static_kwargs: dict) -> dict:
  """A TF StyleGAN2 network's static kwargs as PyTorch Generator init_kwargs (stylegan3 form).

  Raises:
    WeightFileError: a kwarg this reader does not know, or a non-default fmap_decay / fmap_min.
  """
  kw = dict(static_kwargs)
  bad = sorted(k for k in kw if k not in _TF_KWARGS and k not in _TF_IGNORED
               and not (k in _TF_DEFAULT_ONLY and kw[k] == _TF_DEFAULT_ONLY[k]))
  if bad:
    raise WeightFileError(f"{describe(path)}: TF generator kwargs {bad} are not supported "
                          f"(known: {sorted(_TF_KWARGS)})")
  out: dict[str, Any] = {"mapping_kwargs": {}}
  for tf_name, (name, default) in _TF_KWARGS.items():
    value = kw.get(tf_name, default)
    if value is None and tf_name == "w_avg_beta":
      value = 1  # as NVIDIA's legacy.py: the TF graph always tracks dlatent_avg
    elif value is None:
      value = default
    if tf_name == "fmap_base":
      value = int(value) * 2  # TF: nf = fmap_base / 2**(log2(res) - 1) = 2 fmap_base / res
    if tf_name == "resample_kernel":
      value = [float(v) if isinstance(v, float) else int(v) for v in value]
    if name.startswith("mapping_kwargs."):
      out["mapping_kwargs"][name.split(".", 1)[1]] = value
    else:
      out[name] = value
  return out


def _filter_buffer(taps: list) -> np.ndarray:
  k = np.asarray(taps, np.float32)
  f = np.outer(k, k)
  return (f / f.sum()).astype(np.float32)


def is_stylegan2_tf(net: TFNetwork) -> bool:
  """Whether a TF network (Gs / G) is a StyleGAN2 generator (its synthesis has modulated convs)."""
  syn = net.components.get("synthesis")
  return syn is not None and any(k.endswith("/mod_weight") for k in syn.variables)


def network_from_tf(nets: Any, path: str, network: str = "G_ema") -> NetworkData:
  """``NetworkData`` of the generator 'G_ema' (Gs) or 'G' of a TF StyleGAN2 ``(G, D, Gs)``.

  Raises:
    WeightFileError: not a (G, D, Gs) tuple, 'D' or an unknown network asked for, not a
      StyleGAN2 generator (e.g. a StyleGAN v1 pickle), or variables the name table does not
      list / lacks (both listed).
  """
  index = {"G": 0, "G_ema": 2, "Gs": 2}
  if not (isinstance(nets, (tuple, list)) and len(nets) == 3
          and all(isinstance(n, TFNetwork) for n in nets)):
    raise WeightFileError(f"{describe(path)} is a TF network pickle but not a (G, D, Gs) tuple")
  if network not in index:
    raise WeightFileError(f"{describe(path)}: network {network!r} cannot be read from a TF "
                          "pickle; it holds G, D and Gs, and only the generators G and "
                          "G_ema (= Gs) are supported")
  net = nets[index[network]]
  if not is_stylegan2_tf(net):
    raise WeightFileError(f"{describe(path)}: {network!r} is not a StyleGAN2 generator (no "
                          "modulated convs; a StyleGAN v1 TF pickle converts as 'stylegan_tf')")
  from weights_convert.tables.stylegan2 import GENERATOR_CLASS, TF_TRANSFORMS, TF_UNUSED, tf_table
  kwargs = tf_init_kwargs(path, net.static_kwargs)
  table = tf_table(kwargs)
  variables = net.flat_variables()
  mismatch = name_mismatch(set(variables) - set(TF_UNUSED),
                           {e.tf for e in table if e.tf is not None})
  if mismatch:
    raise WeightFileError(
        f"{describe(path)}: the TF generator's variables do not match its kwargs' architecture "
        f"({kwargs['img_resolution']} px, {kwargs.get('architecture')}).{mismatch}")
  filt = _filter_buffer(kwargs["resample_filter"])
  tensors = {}
  for e in table:
    a = filt if e.tf is None else TF_TRANSFORMS[e.transform](np.asarray(variables[e.tf]))
    tensors[e.torch] = np.array(a, dtype=np.float32, order="C")  # keeps 0-d shapes
  return NetworkData(GENERATOR_CLASS, kwargs, tensors, path)
