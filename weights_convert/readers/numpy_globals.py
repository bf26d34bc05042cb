"""Stand-ins for the numpy globals in pickled arrays, for the allow-list unpickler.

numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` then BUILD with
``(version, shape, dtype, is_fortran, raw_bytes)``, a dtype as ``dtype('f4', False, True)``
then BUILD with ``(3, '<', None, None, None, -1, -1, 0)``, a scalar as ``scalar(dtype, raw)``,
and (protocol 5) an array as ``_frombuffer(raw, dtype, shape, order)``. The stand-ins below
build numpy data from those pieces themselves: only bool / int / uint / float / complex /
fixed-width string dtypes, raw bytes only, never object arrays, structured dtypes or
subclasses. ``PickledArray`` / ``PickledDType`` are placeholders; call ``resolve()`` (the TF
reader does) to get the numpy object. Both ``numpy.core`` (numpy 1) and ``numpy._core``
(numpy 2) spellings are accepted.

Sizes: an array's data must be exactly ``prod(shape) * itemsize`` bytes of the pickle (checked
before anything is allocated, so a huge shape with a tiny data string is refused), and with a
``limits.Budget`` (``numpy_allow_list(budget)``) every copy is charged to the file's budget
first, so one data string referenced many times cannot multiply the memory a file takes.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from weights_convert.readers.limits import Budget, SizeRefusal
from weights_convert.readers.safe_unpickle import AllowedCallable, ImmutableType, Sealed

_DTYPE_SPEC = re.compile(r"[biufcSU]\d+|\?")
_BYTE_ORDERS = ("<", ">", "|", "=")


class NDArrayToken(Sealed):
  """What ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``'s first argument."""

  __slots__ = ()


class PickledDType(metaclass=ImmutableType):
  """A dtype under construction: ``numpy.dtype(spec, align, copy)`` then BUILD(state)."""

  __slots__ = ("spec", "byteorder")

  def __init__(self, spec: Any) -> None:
    if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
      raise ValueError(f"dtype {spec!r} is not allowed (numeric or fixed-width text only)")
    self.spec = spec
    self.byteorder = "="

  def __setstate__(self, state: Any) -> None:
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[1] in _BYTE_ORDERS
            and state[2] is None and state[3] is None and state[4] is None):
      raise ValueError(f"dtype state {state!r} is not a plain (non-structured) dtype")
    self.byteorder = state[1]

  def resolve(self) -> np.dtype:
    dtype = np.dtype(self.spec)
    if dtype.hasobject or dtype.kind not in "biufcSU":
      raise ValueError(f"dtype {dtype} is not allowed")
    return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


class PickledArray(metaclass=ImmutableType):
  """An array under construction: ``_reconstruct(...)`` then BUILD(state) sets ``value``."""

  __slots__ = ("value", "budget")

  def __init__(self, value: np.ndarray | None = None, budget: Budget | None = None) -> None:
    self.value = value
    self.budget = budget

  def __setstate__(self, state: Any) -> None:
    if isinstance(state, tuple) and len(state) == 5:
      state = state[1:]  # drop the version number
    if not (isinstance(state, tuple) and len(state) == 4):
      raise ValueError("array state must be (version, shape, dtype, is_fortran, data)")
    shape, dtype, is_fortran, raw = state
    self.value = _array(raw, dtype, shape, "F" if is_fortran else "C", self.budget)

  def resolve(self) -> np.ndarray:
    if self.value is None:
      raise ValueError("an array in the pickle never received its data")
    return self.value


def _array(raw: Any, dtype: Any, shape: Any, order: Any,
           budget: Budget | None = None) -> np.ndarray:
  """A native-byte-order, C-contiguous copy of ``raw`` read as ``dtype`` in ``shape``.

  ``raw`` must hold exactly the array's bytes; the copy is charged to ``budget`` (if any)
  before it is made.
  """
  if not isinstance(dtype, PickledDType):
    raise ValueError(f"array dtype must be a numpy.dtype record, got {type(dtype).__name__}")
  if not isinstance(raw, (bytes, bytearray)):
    raise ValueError(f"array data must be raw bytes, got {type(raw).__name__} "
                     "(object arrays are not allowed)")
  if not (isinstance(shape, tuple)
          and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
    raise ValueError(f"array shape must be a tuple of non-negative ints, got {shape!r}")
  if order not in ("C", "F"):
    raise ValueError(f"array order must be 'C' or 'F', got {order!r}")
  dt = dtype.resolve()
  count = math.prod(shape)
  what = f"numpy array of shape {shape} and dtype {dt}"
  if len(raw) != count * dt.itemsize:
    raise SizeRefusal(f"{what} needs {count * dt.itemsize} bytes, the pickle holds "
                      f"{len(raw)}: refused before allocating it")
  if budget is not None:
    budget.charge(count * dt.itemsize, what)
  try:
    flat = np.frombuffer(raw, dtype=dt, count=count)
    return flat.reshape(shape, order=order).astype(dt.newbyteorder("="), order="C", copy=True)
  except MemoryError as e:  # safe_load reports it as out of memory, naming the array
    raise MemoryError(what) from e


def _reconstruct(subtype: Any, shape: Any, typecode: Any,
                 budget: Budget | None = None) -> PickledArray:
  if not isinstance(subtype, NDArrayToken):
    raise ValueError("only plain numpy.ndarray may be reconstructed (no subclasses)")
  return PickledArray(None, budget)


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any,
                budget: Budget | None = None) -> PickledArray:
  return PickledArray(_array(raw, dtype, shape, order, budget))


def _scalar(dtype: Any, raw: Any, budget: Budget | None = None) -> np.generic:
  arr = _array(raw, dtype, (), "C", budget)
  return arr[()]


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> PickledDType:
  return PickledDType(spec)


def numpy_allow_list(budget: Budget | None = None) -> Mapping[tuple[str, str], object]:
  """``(module, name) -> stand-in`` for numpy arrays, dtypes and scalars in a pickle.

  Args:
    budget: every array built is charged to it first (None: no limit beyond the exact
      data-size check).
  """
  reconstruct = functools.partial(_reconstruct, budget=budget)
  scalar = functools.partial(_scalar, budget=budget)
  frombuffer = functools.partial(_frombuffer, budget=budget)
  table: dict[tuple[str, str], object] = {
      ("numpy", "ndarray"): NDArrayToken(),
      ("numpy", "dtype"): AllowedCallable("numpy.dtype", _dtype),
  }
  for core in ("numpy.core", "numpy._core"):
    table[(f"{core}.multiarray", "_reconstruct")] = AllowedCallable(
        "numpy.core.multiarray._reconstruct", reconstruct)
    table[(f"{core}.multiarray", "scalar")] = AllowedCallable(
        "numpy.core.multiarray.scalar", scalar)
    table[(f"{core}.numeric", "_frombuffer")] = AllowedCallable(
        "numpy.core.numeric._frombuffer", frombuffer)
  return table


def resolve(obj: Any) -> Any:
  """The numpy object behind a placeholder (arrays, dtypes); anything else unchanged."""
  if isinstance(obj, (PickledArray, PickledDType)):
    return obj.resolve()
  return obj
