"""Write pickles that name foreign globals (``dnnlib.tflib.network.Network``,
``torch._utils._rebuild_tensor_v2``, ...) without importing them.

``pickle`` normally refuses to write a global it cannot import. Here a *stand-in* class made
by ``stand_in(module, qualname)`` is written as exactly that global, so test files and the
TF network writer can produce the same opcodes as the real software:

* ``Call(func, args, state=None)`` pickles as ``func(*args)`` [+ BUILD(state)] (REDUCE);
* ``StandIn.new(state)`` makes an instance that pickles as ``cls.__new__(cls)`` + BUILD(state)
  (NEWOBJ, how plain Python objects with ``__getstate__`` are pickled).

Only for writing: the readers never use this module.
"""

from __future__ import annotations

import copyreg
import dataclasses
import pickle
from typing import Any

__all__ = ["Call", "StandInPickler", "stand_in"]


class _StandInBase:
  """Base of stand-in classes; instances carry the state to BUILD."""

  __pickle_global__: tuple[str, str]
  _state: Any

  @classmethod
  def new(cls, state: Any) -> _StandInBase:
    obj = cls.__new__(cls)
    obj._state = state
    return obj

  def __reduce_ex__(self, protocol: int) -> tuple:
    return (copyreg.__newobj__, (type(self),), self._state)


def stand_in(module: str, qualname: str) -> type[_StandInBase]:
  """A fresh class that ``StandInPickler`` writes as the global ``module.qualname``."""
  return type(qualname.rsplit(".", 1)[-1], (_StandInBase,),
              {"__pickle_global__": (module, qualname), "__module__": __name__})


@dataclasses.dataclass(frozen=True)
class Call:
  """Pickles as REDUCE: ``func(*args)``, then BUILD(state) unless state is None."""

  func: type
  args: tuple
  state: Any = None

  def __reduce__(self) -> tuple:
    if self.state is None:
      return (self.func, self.args)
    return (self.func, self.args, self.state)


class StandInPickler(pickle._Pickler):  # the pure-Python pickler lets save_global be overridden
  """A pickler that writes stand-in classes as the globals they stand for."""

  def save_global(self, obj: Any, name: str | None = None) -> None:
    spelling = vars(obj).get("__pickle_global__") if isinstance(obj, type) else None
    if spelling is None:
      super().save_global(obj, name)
      return
    module, qualname = spelling
    if self.proto >= 4:
      self.save(module)
      self.save(qualname)
      self.write(pickle.STACK_GLOBAL)
    else:
      self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("utf-8"))
    self.memoize(obj)
