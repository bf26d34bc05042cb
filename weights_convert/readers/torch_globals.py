"""numpy stand-ins for the few torch globals a ``torch.save`` pickle names.

A torch pickle rebuilds each tensor as ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, backward_hooks[, metadata])`` where ``storage`` comes from a
persistent id naming a storage type such as ``torch.FloatStorage``. Here those names map to:

* ``StorageType`` / ``TorchDType``: frozen tokens carrying a numpy dtype;
* ``Storage``: a 1-D native-byte-order numpy buffer of ``numel`` elements (made by the file
  reader from the persistent id; legacy files fill it after the pickle is read);
* ``TensorRef``: what the rebuild functions return, a checked (offset, shape, strides) view
  description, turned into a contiguous numpy copy by ``materialize`` once all storages are
  filled.

A view is checked against its storage when the pickle builds it, before anything is copied:
sizes, strides and offset must be non-negative ints, every element it reaches
(``offset + sum((size_i - 1) * stride_i)``) must lie inside the storage, and it may not have
more elements than the storage. The last rule refuses expanded views (stride 0 over a
dimension of size > 1, or other overlapping strides) that would come out larger than their
storage - a 1 KB file could otherwise describe a 16 GiB tensor of one float; an overlapping
view no larger than its storage still loads. ``materialize`` charges every copy to the file's
``limits.Budget`` first and names the tensor (its path in the saved structure and its storage
key) in every refusal.

Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from weights_convert.readers.errors import WeightFileError, describe
from weights_convert.readers.limits import Budget, SizeRefusal, out_of_memory
from weights_convert.readers.safe_unpickle import PLAIN_CONTAINERS, AllowedCallable, ImmutableType, Sealed


def _bfloat16() -> np.dtype | None:
  try:
    import ml_dtypes  # installed with jax
  except ImportError:  # pragma: no cover - jax always brings it
    return None
  return np.dtype(ml_dtypes.bfloat16)


# torch element types: storage class name, dtype names (torch.float32 ...), numpy dtype.
_ELEMENT_TYPES: list[tuple[str, tuple[str, ...], np.dtype | None]] = [
    ("FloatStorage", ("float32", "float"), np.dtype(np.float32)),
    ("DoubleStorage", ("float64", "double"), np.dtype(np.float64)),
    ("HalfStorage", ("float16", "half"), np.dtype(np.float16)),
    ("BFloat16Storage", ("bfloat16",), _bfloat16()),
    ("LongStorage", ("int64", "long"), np.dtype(np.int64)),
    ("IntStorage", ("int32", "int"), np.dtype(np.int32)),
    ("ShortStorage", ("int16", "short"), np.dtype(np.int16)),
    ("CharStorage", ("int8",), np.dtype(np.int8)),
    ("ByteStorage", ("uint8",), np.dtype(np.uint8)),
    ("BoolStorage", ("bool",), np.dtype(np.bool_)),
    ("ComplexFloatStorage", ("complex64", "cfloat"), np.dtype(np.complex64)),
    ("ComplexDoubleStorage", ("complex128", "cdouble"), np.dtype(np.complex128)),
    (None, ("uint16",), np.dtype(np.uint16)),
    (None, ("uint32",), np.dtype(np.uint32)),
    (None, ("uint64",), np.dtype(np.uint64)),
]


class StorageType(Sealed):
  """What ``torch.FloatStorage`` etc. resolve to: the storage's element dtype."""

  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype) -> None:
    self._set(name=name, dtype=dtype)


class TorchDType(Sealed):
  """What ``torch.float32`` etc. resolve to (used by ``_rebuild_tensor_v3``)."""

  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype) -> None:
    self._set(name=name, dtype=dtype)


class Storage(Sealed):
  """One storage record: ``data`` is 1-D, native byte order, ``numel`` elements of ``dtype``."""

  __slots__ = ("key", "data")

  def __init__(self, key: str, data: np.ndarray) -> None:
    self._set(key=key, data=data)

  @property
  def dtype(self) -> np.dtype:
    return self.data.dtype

  @property
  def numel(self) -> int:
    return int(self.data.shape[0])


class TensorRef(Sealed):
  """A tensor still pointing into its storage; offset and strides count elements of dtype.

  Made only by ``_tensor``, which checks the view lies inside the storage.
  """

  __slots__ = ("storage", "dtype", "offset", "shape", "strides")

  def __init__(self, storage: Storage, dtype: np.dtype, offset: int,
               shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
    self._set(storage=storage, dtype=dtype, offset=offset, shape=shape, strides=strides)

  @property
  def nbytes(self) -> int:
    """Bytes of the contiguous copy ``materialize`` makes."""
    return math.prod(self.shape) * self.dtype.itemsize

  def materialize(self) -> np.ndarray:
    """A contiguous (C-order) copy of the tensor, shape ``self.shape``, dtype ``self.dtype``."""
    flat = self.storage.data
    if flat.dtype != self.dtype:  # untyped (uint8) storage read as another dtype
      usable = flat.nbytes - flat.nbytes % self.dtype.itemsize
      flat = flat.view(np.uint8)[:usable].view(self.dtype)
    # _tensor checked all of this; checked again right before as_strided.
    _check_view(self.storage.key, flat.shape[0], self.offset, self.shape, self.strides)
    if 0 in self.shape:
      return np.zeros(self.shape, self.dtype)
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset :],
        shape=self.shape,
        strides=tuple(s * self.dtype.itemsize for s in self.strides),
        writeable=False,
    )
    return np.array(view, dtype=self.dtype, order="C", copy=True)


_RESAVE = ("if the file is genuine, re-save the tensor as a contiguous copy in torch "
           "(t.contiguous() / t.clone())")


def _ints(value: Any, what: str, key: str) -> tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or not all(
      isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
  ):
    raise SizeRefusal(f"tensor {what} must be a tuple of non-negative ints, got {value!r} "
                     f"(tensor of storage {key!r}); torch writes no negative sizes, strides "
                     "or offsets")
  return tuple(value)


def _check_view(key: str, capacity: int, offset: int, shape: tuple[int, ...],
                strides: tuple[int, ...]) -> None:
  """Refuse a view (all in elements) that leaves its storage or outgrows it; nothing is copied."""
  view = f"tensor (offset {offset}, size {shape}, stride {strides}) of storage {key!r}"
  numel = math.prod(shape)
  if numel == 0:
    if offset > capacity:
      raise SizeRefusal(f"{view} starts past the end of its storage, which holds only "
                       f"{capacity} elements")
    if math.prod(n for n in shape if n) > 2**40:
      raise SizeRefusal(f"implausible empty tensor size {shape} ({view})")
    return
  last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
  if last >= capacity:
    raise SizeRefusal(f"{view} reaches element {last} of storage {key!r}, which holds only "
                     f"{capacity}: the view does not fit its storage")
  if numel > capacity:
    raise SizeRefusal(
        f"{view} has {numel} elements but its storage holds only {capacity}: an expanded "
        "(stride-0 / overlapping) view larger than its storage is refused, so that a small "
        f"file cannot make the reader allocate more than the file holds; {_RESAVE}"
    )


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: np.dtype | None = None) -> TensorRef:
  """Check a tensor's view of its storage (all in elements) and describe it."""
  if not isinstance(storage, Storage):
    raise ValueError(f"tensor storage must be a storage record, got {type(storage).__name__}")
  dtype = storage.dtype if dtype is None else dtype
  (offset,) = _ints((offset,), "offset", storage.key)
  shape, strides = _ints(size, "size", storage.key), _ints(stride, "stride", storage.key)
  if len(shape) != len(strides):
    raise ValueError(f"tensor size {shape} and stride {strides} differ in length "
                     f"(tensor of storage {storage.key!r})")
  _check_view(storage.key, storage.data.nbytes // dtype.itemsize, offset, shape, strides)
  return TensorRef(storage, dtype, offset, shape, strides)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
  del requires_grad, backward_hooks, metadata  # training-time state; not weights
  return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
  del requires_grad, backward_hooks, metadata
  if not isinstance(dtype, TorchDType):
    raise ValueError(f"_rebuild_tensor_v3 needs a torch dtype, got {type(dtype).__name__}")
  return _tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  if not isinstance(data, TensorRef):
    raise ValueError(f"parameter data must be a tensor, got {type(data).__name__}")
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  return _rebuild_parameter(data, requires_grad, backward_hooks)


def _size(dims=()):
  return _ints(dims, "torch.Size")


class NamespaceStub(dict, metaclass=ImmutableType):
  """What ``argparse.Namespace`` resolves to (training scripts save their ``args``, e.g.
  rosinality's stylegan2-pytorch): a dict of the attributes (NEWOBJ + BUILD), nothing run."""

  __slots__ = ()

  def __setstate__(self, state: Any) -> None:
    if state is not None and not isinstance(state, dict):
      raise ValueError("argparse.Namespace state must be a dict")
    self.update(state or {})


def torch_allow_list() -> Mapping[tuple[str, str], object]:
  """The ``(module, name) -> stand-in`` table for ``torch.save`` pickles."""
  table: dict[tuple[str, str], object] = dict(PLAIN_CONTAINERS)
  for fn in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
             _rebuild_parameter_with_state):
    name = fn.__name__
    table[("torch._utils", name)] = AllowedCallable(f"torch._utils.{name}", fn)
  table[("torch", "Size")] = AllowedCallable("torch.Size", _size)
  table[("argparse", "Namespace")] = NamespaceStub
  for storage_name, dtype_names, dtype in _ELEMENT_TYPES:
    if dtype is None:
      continue
    if storage_name is not None:
      token = StorageType(storage_name, dtype)
      table[("torch", storage_name)] = token
      table[("torch.cuda", storage_name)] = token
    for dtype_name in dtype_names:
      table[("torch", dtype_name)] = TorchDType(dtype_name, dtype)
  untyped = StorageType("UntypedStorage", np.dtype(np.uint8))
  table[("torch", "UntypedStorage")] = untyped
  table[("torch.storage", "UntypedStorage")] = untyped
  return table


def materialize(obj: Any, memo: dict[int, Any] | None = None, *,
                source: str | None = None, budget: Budget | None = None, where: str = "") -> Any:
  """Replace every ``TensorRef`` in a nested structure by a contiguous numpy copy.

  dicts (OrderedDict included, attributes such as ``_metadata`` kept) and lists are updated
  in place; tuples are rebuilt; a tensor referenced twice becomes one shared array.

  Args:
    obj: what the pickle gave.
    memo: id -> result of what was already materialized.
    source: the file's path, for messages.
    budget: every copy is charged to it before it is made (None: no limit).
    where: the path of ``obj`` in the saved structure ("netG_state_dict/main.0.weight").

  Raises:
    WeightFileError: a copy would pass ``budget``, or allocating it failed (``MemoryError``);
      the message names the file, the tensor's path and its storage key.
  """
  memo = {} if memo is None else memo
  if id(obj) in memo:
    return memo[id(obj)]
  if isinstance(obj, (TensorRef, Storage)):
    memo[id(obj)] = result = _copy(obj, source, budget, where)
    return result
  if isinstance(obj, dict):  # OrderedDict too
    memo[id(obj)] = obj
    for key, value in list(obj.items()):
      obj[key] = materialize(value, memo, source=source, budget=budget,
                             where=f"{where}/{key}" if where else str(key))
    return obj
  if isinstance(obj, list):
    memo[id(obj)] = obj
    obj[:] = [materialize(v, memo, source=source, budget=budget, where=f"{where}[{i}]")
              for i, v in enumerate(obj)]
    return obj
  if isinstance(obj, tuple):
    result = tuple(materialize(v, memo, source=source, budget=budget, where=f"{where}[{i}]")
                   for i, v in enumerate(obj))
    memo[id(obj)] = result
    return result
  return obj


def _copy(obj: TensorRef | Storage, source: str | None, budget: Budget | None,
          where: str) -> np.ndarray:
  """The numpy copy of one tensor (or bare storage), charged to ``budget`` first."""
  name = where or "<top level>"
  if isinstance(obj, TensorRef):
    what = f"tensor {name!r} (storage {obj.storage.key!r}, size {obj.shape}, {obj.dtype})"
    nbytes = obj.nbytes
  else:  # a storage saved on its own
    what = f"storage {obj.key!r} at {name!r}"
    nbytes = obj.data.nbytes
  if budget is not None:
    budget.charge(nbytes, what)
  try:
    return obj.materialize() if isinstance(obj, TensorRef) else obj.data.copy()
  except MemoryError as e:
    raise out_of_memory(source, what, e) from e
  except SizeRefusal as e:  # a view _tensor let through (cannot happen): never copy it
    raise WeightFileError(f"refused to load {describe(source)}: {what}: {e}") from e
