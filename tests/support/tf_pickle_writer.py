"""Write ``TFNetwork``s as a dnnlib network pickle, structured like NVIDIA's official files.

The inverse of ``tf_pickle.read_tf_network_pickle``, for tests and for making small stand-ins
of the official ``karras2019stylegan-ffhq-1024x1024.pkl``: protocol 4 (``HIGHEST_PROTOCOL`` of
the Python 3.6 that wrote it), each network as NEWOBJ(``dnnlib.tflib.network.Network``) +
BUILD(state) with the keys and order of NVlabs' ``Network.__getstate__``, and arrays pickled
the way numpy 1.x does (``numpy.core.multiarray._reconstruct`` + BUILD). Neither dnnlib nor
TensorFlow is imported.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from support.pickle_globals import StandInPickler, stand_in
from weights_convert.readers.tf_pickle import NETWORK_GLOBAL, TFNetwork

__all__ = ["write_tf_network_pickle"]


class _NetworkPickler(StandInPickler):
  """Writes ndarrays / dtypes with numpy's own reduce data under a chosen module spelling."""

  def __init__(self, file: Any, protocol: int, numpy_core: str) -> None:
    super().__init__(file, protocol=protocol)
    self._reconstruct = stand_in(f"{numpy_core}.multiarray", "_reconstruct")
    self._scalar = stand_in(f"{numpy_core}.multiarray", "scalar")
    self._ndarray = stand_in("numpy", "ndarray")
    self._dtype = stand_in("numpy", "dtype")

  def reducer_override(self, obj: Any) -> Any:
    if type(obj) is np.ndarray:
      if obj.dtype.hasobject:
        raise ValueError("object arrays cannot be written")
      _, args, state = obj.__reduce__()  # (_reconstruct, (ndarray, (0,), b'b'), state)
      return (self._reconstruct, (self._ndarray,) + tuple(args[1:]), state)
    if isinstance(obj, np.dtype):
      _, args, state = obj.__reduce__()  # (dtype, ('f4', False, True), state)
      return (self._dtype, tuple(args), state)
    if isinstance(obj, np.generic):
      _, args = obj.__reduce__()  # (scalar, (dtype, raw bytes))
      return (self._scalar, tuple(args))
    return NotImplemented


def _state(net: TFNetwork, network_cls: type, memo: dict[int, Any]) -> Any:
  """The stand-in for ``net``; its state has the keys of NVlabs' ``__getstate__``, in order."""
  if id(net) in memo:
    return memo[id(net)]
  obj = network_cls.new(None)
  memo[id(net)] = obj
  obj._state = {
      "version": net.version,
      "name": net.name,
      "static_kwargs": dict(net.static_kwargs),
      "components": {k: _state(c, network_cls, memo) for k, c in net.components.items()},
      "build_module_src": net.build_module_src,
      "build_func_name": net.build_func_name,
      "variables": [(name, np.asarray(value)) for name, value in net.variables.items()],
  }
  return obj


def write_tf_network_pickle(
    path: str | os.PathLike,
    networks: TFNetwork | tuple[TFNetwork, ...],
    *,
    numpy_core: str = "numpy.core",
    protocol: int = 4,
) -> None:
  """Pickle ``networks`` (e.g. ``(G, D, Gs)``) to ``path`` as dnnlib Network objects.

  Args:
    numpy_core: module spelling for array globals, "numpy.core" (numpy 1, as the official
      file) or "numpy._core" (numpy 2).
    protocol: pickle protocol, 2..5 (4 as the official file).
  """
  network_cls = stand_in(*NETWORK_GLOBAL)
  memo: dict[int, Any] = {}
  if isinstance(networks, TFNetwork):
    payload: Any = _state(networks, network_cls, memo)
  else:
    payload = tuple(_state(net, network_cls, memo) for net in networks)
  with open(path, "wb") as f:
    _NetworkPickler(f, protocol, numpy_core).dump(payload)

