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

Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from weights_convert.safe_unpickle import PLAIN_CONTAINERS, AllowedCallable, Sealed


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

    def materialize(self) -> np.ndarray:
        """A contiguous (C-order) copy of the tensor, shape ``self.shape``, dtype ``self.dtype``."""
        flat = self.storage.data
        if flat.dtype != self.dtype:  # untyped (uint8) storage read as another dtype
            usable = flat.nbytes - flat.nbytes % self.dtype.itemsize
            flat = flat.view(np.uint8)[:usable].view(self.dtype)
        if 0 in self.shape:
            return np.zeros(self.shape, self.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides))
        if not 0 <= self.offset <= last < flat.shape[0]:  # _tensor checked; re-check before as_strided
            raise ValueError(f"tensor view leaves storage {self.storage.key!r}")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * self.dtype.itemsize for s in self.strides),
            writeable=False,
        )
        return np.array(view, dtype=self.dtype, order="C", copy=True)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ValueError(f"tensor {what} must be a tuple of non-negative ints, got {value!r}")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: np.dtype | None = None) -> TensorRef:
    """Check a tensor's view of its storage (all in elements) and describe it."""
    if not isinstance(storage, Storage):
        raise ValueError(f"tensor storage must be a storage record, got {type(storage).__name__}")
    dtype = storage.dtype if dtype is None else dtype
    (offset,) = _ints((offset,), "offset")
    shape, strides = _ints(size, "size"), _ints(stride, "stride")
    if len(shape) != len(strides):
        raise ValueError(f"tensor size {shape} and stride {strides} differ in length")
    capacity = storage.data.nbytes // dtype.itemsize
    if 0 not in shape:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= capacity:
            raise ValueError(
                f"tensor (offset {offset}, size {shape}, stride {strides}) reaches element "
                f"{last} of storage {storage.key!r}, which holds only {capacity}"
            )
    elif math.prod(n for n in shape if n) > 2**40:
        raise ValueError(f"implausible empty tensor size {shape}")
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


def torch_allow_list() -> Mapping[tuple[str, str], object]:
    """The ``(module, name) -> stand-in`` table for ``torch.save`` pickles."""
    table: dict[tuple[str, str], object] = dict(PLAIN_CONTAINERS)
    for fn in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
               _rebuild_parameter_with_state):
        name = fn.__name__
        table[("torch._utils", name)] = AllowedCallable(f"torch._utils.{name}", fn)
    table[("torch", "Size")] = AllowedCallable("torch.Size", _size)
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


def materialize(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """Replace every ``TensorRef`` in a nested structure by a contiguous numpy copy.

    dicts (OrderedDict included, attributes such as ``_metadata`` kept) and lists are updated
    in place; tuples are rebuilt; a tensor referenced twice becomes one shared array.
    """
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, TensorRef):
        memo[id(obj)] = result = obj.materialize()
        return result
    if isinstance(obj, Storage):  # a storage saved on its own
        memo[id(obj)] = result = obj.data.copy()
        return result
    if isinstance(obj, dict):  # OrderedDict too
        memo[id(obj)] = obj
        for key, value in list(obj.items()):
            obj[key] = materialize(value, memo)
        return obj
    if isinstance(obj, list):
        memo[id(obj)] = obj
        obj[:] = [materialize(v, memo) for v in obj]
        return obj
    if isinstance(obj, tuple):
        result = tuple(materialize(v, memo) for v in obj)
        memo[id(obj)] = result
        return result
    return obj
