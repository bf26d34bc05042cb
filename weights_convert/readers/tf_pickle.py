"""Read NVIDIA's TensorFlow StyleGAN pickles (e.g. ``karras2019stylegan-ffhq-1024x1024.pkl``)
without TensorFlow, dnnlib or running any code from the file.

The official file is a pickled tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``
objects. Each is pickled as NEWOBJ(Network) + BUILD(state), with the state NVlabs'
``Network.__getstate__`` makes::

    {"version": 3, "name": "G_synthesis", "static_kwargs": {...},
     "components": {"mapping": <Network>, "synthesis": <Network>},   # Gs and G only
     "build_module_src": "<python source of the module>",
     "build_func_name": "G_style",
     "variables": [("dlatent_avg", ndarray), ("4x4/Const/const", ndarray), ...]}

Variable names are relative to the network (TF scopes, ':0' dropped); convolution weights are
HWIO, dense weights [in, out], all float32. Here ``Network`` maps to a stub and the result is
a ``TFNetwork`` dataclass. ``build_module_src`` (code!) is kept as an inert string only.

Sizes: the pickle's stated lengths are checked against the file before unpickling
(``safe_unpickle.check_pickle``), each array's data must be exactly its shape x itemsize, and
all arrays together may take at most ``limits.OUTPUT_FACTOR`` x the file's size (+ 1 MiB).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from weights_convert.readers.errors import WeightFileError, describe
from weights_convert.readers.limits import Budget, out_of_memory
from weights_convert.readers.numpy_globals import PickledArray, PickledDType, numpy_allow_list
from weights_convert.readers.safe_unpickle import PLAIN_CONTAINERS, ImmutableType, safe_load
from weights_convert.readers.torch_files import LEGACY_MAGIC

__all__ = ["NETWORK_GLOBAL", "TFNetwork", "read_tf_network_pickle"]

NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")
EASYDICT_GLOBAL = ("dnnlib.util", "EasyDict")
KNOWN_VERSIONS = (2, 3, 4)
_STATE_KEYS = ("version", "name", "static_kwargs", "build_module_src", "build_func_name",
               "variables")
_WHAT = "TensorFlow StyleGAN network pickles"
_HINT = (
    "Only dnnlib Network objects holding numpy arrays and plain Python values are read. If this "
    "is a trusted pickle of another kind, convert a trusted copy (e.g. export the variables "
    "to .npz); otherwise it is not a StyleGAN weight file."
)


@dataclasses.dataclass(eq=False, repr=False)
class TFNetwork:
  """One ``dnnlib.tflib.network.Network`` as plain data.

  Attributes:
    name: network name, e.g. "G_synthesis".
    static_kwargs: the build function's keyword arguments (plain dict).
    components: sub-networks by name, e.g. {"mapping": ..., "synthesis": ...}.
    variables: own variables, TF name relative to this network -> numpy array
      (convs HWIO [k, k, in, out], dense [in, out], float32), in pickle order.
    build_func_name: name of the build function in ``build_module_src``.
    build_module_src: that module's source, kept as an inert string; never executed here.
    version: the pickle state version (3 for StyleGAN v1, 4 for StyleGAN2).
  """

  name: str
  static_kwargs: dict[str, Any]
  components: dict[str, TFNetwork]
  variables: dict[str, np.ndarray]
  build_func_name: str
  build_module_src: str | None = dataclasses.field(default=None, repr=False)
  version: int = 3

  def __repr__(self) -> str:
    shapes = {k: tuple(v.shape) for k, v in self.variables.items()}
    return (f"TFNetwork(name={self.name!r}, build_func_name={self.build_func_name!r}, "
            f"components={list(self.components)}, variables={shapes})")

  def flat_variables(self, prefix: str = "") -> dict[str, np.ndarray]:
    """Own and component variables, component ones as "<component>/<name>"."""
    out = {prefix + name: value for name, value in self.variables.items()}
    for comp_name, comp in self.components.items():
      out.update(comp.flat_variables(f"{prefix}{comp_name}/"))
    return out


class _NetworkStub(metaclass=ImmutableType):
  """What ``dnnlib.tflib.network.Network`` resolves to: keeps the BUILD state, runs nothing."""

  __slots__ = ("state",)

  def __setstate__(self, state: Any) -> None:
    self.state = state


class _EasyDictStub(dict, metaclass=ImmutableType):
  """What ``dnnlib.util.EasyDict`` resolves to: a dict (turned into a plain dict after)."""

  __slots__ = ()

  def __setstate__(self, state: Any) -> None:
    if state is not None and not isinstance(state, dict):
      raise ValueError("EasyDict state must be a dict")
    self.update(state or {})


def tf_allow_list(budget: Budget | None = None) -> dict[tuple[str, str], object]:
  """``(module, name) -> stand-in`` for TF network pickles; arrays are charged to ``budget``."""
  table: dict[tuple[str, str], object] = dict(PLAIN_CONTAINERS)
  table.update(numpy_allow_list(budget))
  table[NETWORK_GLOBAL] = _NetworkStub
  table[EASYDICT_GLOBAL] = _EasyDictStub
  return table


def read_tf_network_pickle(path: str | os.PathLike) -> Any:
  """Read a dnnlib network pickle; the official StyleGAN file gives ``(G, D, Gs)``.

  Returns a ``TFNetwork`` or a tuple / list of them, as pickled.

  Raises:
    UnsafePickleError: the pickle names a global outside the allow-list (nothing was run).
    WeightFileError: empty, truncated, corrupt, or not a network pickle; or it states sizes
      its bytes cannot back (see ``weights_convert.readers.limits``), or reading it ran out of memory.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
      raise WeightFileError(f"{describe(path)} is empty (0 bytes): not a network pickle")
    if f.read(4) == b"PK\x03\x04":
      raise WeightFileError(f"{describe(path)} is a zip archive (a torch.save file? use "
                            "read_torch_file), not a TF network pickle")
    f.seek(0)
    raw = safe_load(f, source=path, allowed=tf_allow_list(Budget.for_file(path, size)),
                    what=_WHAT, hint=_HINT, encoding="latin1")
  try:
    result = _Converter(path).convert(raw)
  except RecursionError as e:
    raise WeightFileError(f"{describe(path)} nests its data implausibly deep") from e
  except MemoryError as e:
    raise out_of_memory(path, "its networks", e) from e
  items = result if isinstance(result, (tuple, list)) else (result,)
  if not items or not all(isinstance(net, TFNetwork) for net in items):
    legacy_torch = type(result) is int and result == LEGACY_MAGIC
    raise WeightFileError(
        f"{describe(path)} is a pickle but not of dnnlib networks (expected a Network or a "
        f"tuple such as (G, D, Gs), got {_kind(result)})"
        + ("; it is a legacy torch file: use read_torch_file" if legacy_torch else "")
    )
  return result


class _Converter:
  """Turns stubs and placeholders into ``TFNetwork`` / numpy / plain containers."""

  def __init__(self, path: str) -> None:
    self.path = path
    self.memo: dict[int, Any] = {}

  def convert(self, obj: Any) -> Any:
    if id(obj) in self.memo:
      return self.memo[id(obj)]
    if isinstance(obj, _NetworkStub):
      result = self.network(obj)
    elif isinstance(obj, (PickledArray, PickledDType)):
      result = self.numpy(obj)
    elif isinstance(obj, dict):
      result = {}
      self.memo[id(obj)] = result
      result.update((self.convert(k), self.convert(v)) for k, v in obj.items())
    elif isinstance(obj, list):
      result = []
      self.memo[id(obj)] = result
      result.extend(self.convert(v) for v in obj)
    elif isinstance(obj, tuple):
      result = tuple(self.convert(v) for v in obj)
    elif isinstance(obj, (set, frozenset)):
      result = type(obj)(self.convert(v) for v in obj)
    elif obj is None or isinstance(obj, (str, bytes, bool, int, float, complex, np.generic)):
      result = obj
    else:
      raise WeightFileError(f"{describe(self.path)} holds an unexpected {_kind(obj)}")
    self.memo[id(obj)] = result
    return result

  def numpy(self, obj: PickledArray | PickledDType) -> Any:
    try:
      return obj.resolve()
    except (ValueError, TypeError, AttributeError) as e:
      raise WeightFileError(f"{describe(self.path)} has a bad numpy record: {e}") from e

  def network(self, stub: _NetworkStub) -> TFNetwork:
    state = getattr(stub, "state", None)
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
      raise WeightFileError(
          f"{describe(self.path)} has a Network without the expected state keys {_STATE_KEYS}"
      )
    net = TFNetwork(name="", static_kwargs={}, components={}, variables={},
                    build_func_name="")
    self.memo[id(stub)] = net  # shared / cyclic references resolve to the same object
    name = state["name"]
    if state["version"] not in KNOWN_VERSIONS or not isinstance(name, str):
      raise WeightFileError(f"{describe(self.path)} has a Network with version "
                            f"{state['version']!r} / name {name!r}; known: {KNOWN_VERSIONS}")
    net.name, net.version = name, state["version"]
    net.static_kwargs = self.field(state, "static_kwargs", dict)
    net.components = self.field(state, "components", dict, default={})
    net.build_func_name = self.field(state, "build_func_name", str)
    src = state["build_module_src"]
    if src is not None and not isinstance(src, str):
      raise WeightFileError(f"{describe(self.path)}: network {name!r} has a non-text module source")
    net.build_module_src = src
    if not all(isinstance(k, str) and isinstance(c, TFNetwork) for k, c in net.components.items()):
      raise WeightFileError(f"{describe(self.path)}: network {name!r} has components that are not networks")
    net.variables = self.variables(name, self.convert(state["variables"]))
    return net

  def field(self, state: dict, key: str, kind: type, default: Any = None) -> Any:
    value = self.convert(state.get(key, default))
    if not isinstance(value, kind):
      raise WeightFileError(f"{describe(self.path)}: network field {key!r} should be a "
                            f"{kind.__name__}, got {_kind(value)}")
    return value

  def variables(self, net_name: str, pairs: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    ok = isinstance(pairs, (list, tuple))
    for pair in pairs if ok else ():
      if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
              and isinstance(pair[1], (np.ndarray, np.generic)) and pair[0] not in out):
        ok = False
        break
      out[pair[0]] = np.asarray(pair[1])
    if not ok:
      raise WeightFileError(
          f"{describe(self.path)}: network {net_name!r} variables should be a list of "
          "unique (name, numpy array) pairs"
      )
    return out


def _kind(obj: Any) -> str:
  return f"{type(obj).__module__}.{type(obj).__qualname__}"
