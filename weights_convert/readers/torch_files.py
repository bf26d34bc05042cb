"""Read ``torch.save`` files without torch; every tensor comes back as a numpy array.

Two container formats exist:

* zip (torch >= 1.6): ``<folder>/data.pkl`` (any single top-level folder name: ``archive``,
  ``weights``, the file's stem, ...), one record ``<folder>/data/<key>`` of raw bytes per
  storage, and ``<folder>/byteorder`` ("little"/"big"; little when absent). Persistent ids
  are ``('storage', storage_type, key, location, numel)``.
* legacy (torch < 1.6): five pickles in a row - the magic number 0x1950a86a20f9469cfc6c,
  protocol version 1001, a sys_info dict, the main pickle with persistent ids
  ``('storage', storage_type, root_key, location, numel, view_metadata)``, the list of storage
  keys - then, per key, an int64 element count and the raw bytes, both little-endian.

The location ('cpu', 'cuda:0', ...) is ignored: everything lands in host numpy arrays.
Pickles are read with the allow-list unpickler (``safe_unpickle``) and the numpy stand-ins of
``torch_globals``; nothing from the file is imported or run.

A file cannot make the reader allocate much more than its own size (``weights_convert.readers.limits``):

* zip: every record read (``data.pkl``, ``byteorder``, ``data/<key>``) must be stored
  uncompressed, as torch writes them; a storage record must hold exactly ``numel * itemsize``
  bytes (torch pads nothing inside records); it is read with that size known in advance, never
  more; and all storages together may not exceed the file's size (records that overlap);
* legacy: each storage's declared size must fit in the file (all of them together) before it
  is allocated, and in the bytes left behind the pickle before it is read;
* tensors: a view must fit its storage and may not be larger than it (``torch_globals``), and
  all returned arrays together may take at most ``limits.OUTPUT_FACTOR`` x the file's size;
* a ``MemoryError`` is reported as ``WeightFileError`` naming the file and the tensor.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from typing import Any, BinaryIO

import numpy as np

from weights_convert.readers.errors import UnsafePickleError, WeightFileError, describe
from weights_convert.readers.limits import Budget, out_of_memory
from weights_convert.readers.safe_unpickle import safe_load
from weights_convert.readers.torch_globals import Storage, StorageType, materialize, torch_allow_list

__all__ = ["LEGACY_MAGIC", "read_torch_file"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
_WHAT = "torch weight files"
_HINT = (
    "If it is a trusted checkpoint that pickles more than tensors (a whole nn.Module, custom "
    "classes), load it with torch somewhere trusted and re-save only its state_dict; otherwise "
    "this is not a StyleGAN / torch weight file."
)


def read_torch_file(path: str | os.PathLike) -> Any:
  """Read a ``torch.save`` file (zip or legacy format) without torch.

  Returns the saved structure (dicts / OrderedDicts / lists / tuples / numbers / strings)
  with every tensor replaced by a C-contiguous numpy array of the tensor's shape and dtype
  (float32 -> float32, int64 -> int64, bfloat16 -> ml_dtypes.bfloat16, ...), in native byte
  order. Parameters come back as plain arrays; requires_grad and hooks are dropped.

  Raises:
    UnsafePickleError: the pickle names a global outside the allow-list (nothing was run).
    WeightFileError: the file is empty, truncated, corrupt, or not a torch.save file; or it
      describes more data than its bytes hold (see the module docstring), or reading it ran
      out of memory. The message names the file and the tensor / storage.
    OSError: the file cannot be opened.
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      size = os.fstat(f.fileno()).st_size
      if size == 0:
        raise WeightFileError(f"{describe(path)} is empty (0 bytes): not a torch.save file")
      head = f.read(4)
      f.seek(0)
      obj = _read_zip(path, f, size) if head == _ZIP_MAGIC else _read_legacy(path, f, size)
    try:
      return materialize(obj, source=path, budget=Budget.for_file(path, size))
    except RecursionError as e:
      raise WeightFileError(f"{describe(path)} nests its data implausibly deep") from e
  except MemoryError as e:  # the sites that allocate name the tensor; this is the backstop
    raise out_of_memory(path, "it", e) from e


def _check_storage_id(path: str, pid: Any, length: int) -> tuple[StorageType, str, int]:
  """Validate ('storage', storage_type, key, location, numel[, view_metadata])."""
  ok = (
      isinstance(pid, tuple)
      and len(pid) == length
      and pid[0] == "storage"
      and isinstance(pid[1], StorageType)
      and isinstance(pid[2], str)
      and isinstance(pid[3], str)
      and isinstance(pid[4], int)
      and not isinstance(pid[4], bool)
      and pid[4] >= 0
  )
  if not ok:
    form = "('storage', type, key, location, numel" + (", view)" if length == 6 else ")")
    raise UnsafePickleError(
        f"refused to load {describe(path)}: its pickle has the persistent id {_short(pid)}, "
        f"but {_WHAT} only use {form}. Nothing from the file was imported or run. {_HINT}"
    )
  return pid[1], pid[2], pid[4]


def _check_fits(path: str, key: str, nbytes: int, available: int) -> None:
  if nbytes > available:
    raise WeightFileError(
        f"{describe(path)} is truncated: storage {key!r} needs {nbytes} bytes but only "
        f"{available} are there; nothing was allocated for it. Re-download or re-save the file"
    )


def _storage_budget(path: str, size: int) -> Budget:
  """All storages of a file together hold at most the file's bytes."""
  return Budget(path, size, "the file's size", hint=(
      "Its storage records overlap or claim more than the file holds: the file is corrupt or "
      "crafted. Re-download it, or re-save it from a trusted copy with torch.save."))


# ----------------------------------------------------------------------------- zip format


def _read_zip(path: str, f: BinaryIO, size: int) -> Any:
  try:
    archive = zipfile.ZipFile(f)
  except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
    raise WeightFileError(
        f"{describe(path)} starts like a zip archive but is damaged or truncated ({e}); "
        "re-download or re-save it"
    ) from e
  with archive:
    prefix = _archive_prefix(path, archive.namelist())
    swap = _byteorder(path, archive, prefix) != sys.byteorder
    storages: dict[str, Storage] = {}
    budget = _storage_budget(path, size)

    def persistent_load(pid: Any) -> Storage:
      storage_type, key, numel = _check_storage_id(path, pid, 5)
      if key in storages:
        return _same_storage(path, storages[key], storage_type, numel)
      name = f"{prefix}/data/{key}"
      what = f"storage {key!r}"
      dtype = storage_type.dtype
      nbytes = numel * dtype.itemsize
      info = _record(path, archive, name, what)
      if info.file_size < nbytes:
        raise WeightFileError(
            f"{describe(path)} is truncated or corrupt: {what} is {numel} x {dtype} = "
            f"{nbytes} bytes but its record {name!r} holds only {info.file_size}; "
            "nothing was allocated for it. Re-download or re-save the file"
        )
      if info.file_size > nbytes:
        raise WeightFileError(
            f"{describe(path)} is corrupt: its record {name!r} holds {info.file_size} "
            f"bytes but the pickle says {what} is {numel} x {dtype} = {nbytes} bytes "
            "(torch.save writes exactly that many); the file was altered. Re-download "
            "or re-save it"
        )
      budget.charge(nbytes, what)
      raw = _read_record(path, archive, info, nbytes, what)
      try:
        storages[key] = _storage(key, dtype, raw, numel, swap)
      except MemoryError as e:
        raise out_of_memory(path, f"{what} ({numel} x {dtype})", e) from e
      return storages[key]

    name = f"{prefix}/data.pkl"
    info = _record(path, archive, name, "its pickle")
    if info.file_size > size:  # a (zip64) header claiming more than the file has
      raise WeightFileError(f"{describe(path)} is corrupt: its record {name!r} claims "
                            f"{info.file_size} bytes, more than the whole file ({size})")
    pkl = io.BytesIO(_read_record(path, archive, info, info.file_size, "its pickle"))
    return safe_load(pkl, source=path, allowed=torch_allow_list(), what=_WHAT,
                     hint=_HINT, persistent_load=persistent_load, encoding="utf-8")


def _record(path: str, archive: zipfile.ZipFile, name: str, what: str) -> zipfile.ZipInfo:
  """The zip entry ``name`` (for ``what``), checked to be stored as torch stores it."""
  try:
    info = archive.getinfo(name)
  except KeyError:
    raise WeightFileError(
        f"{describe(path)} is incomplete: its pickle uses {what} but the archive has no "
        f"record {name!r}"
    ) from None
  if info.compress_type != zipfile.ZIP_STORED:
    raise WeightFileError(
        f"refused to load {describe(path)}: its record {name!r} ({what}) is compressed "
        f"(zip method {info.compress_type}), but torch.save stores every record "
        "uncompressed, and a compressed record could expand far beyond the file's size. "
        "The file was re-packed or altered: re-save it with torch.save (or re-download it)"
    )
  if info.flag_bits & 0x1:
    raise WeightFileError(f"{describe(path)}: its record {name!r} ({what}) is encrypted; "
                          "torch.save files never are. Re-download or re-save it")
  if info.compress_size != info.file_size:
    raise WeightFileError(
        f"{describe(path)} is corrupt: its uncompressed record {name!r} ({what}) claims "
        f"{info.file_size} bytes in its header but {info.compress_size} in the archive. "
        "Re-download or re-save it"
    )
  return info


def _read_record(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, nbytes: int,
                 what: str) -> bytes:
  """Exactly the ``nbytes`` of a stored record; at most ``nbytes + 1`` are ever read."""
  try:
    with archive.open(info) as member:
      raw = member.read(nbytes + 1)
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
    raise WeightFileError(
        f"{describe(path)}: its record {info.filename!r} ({what}) is damaged ({e}); "
        "re-download or re-save the file"
    ) from e
  if len(raw) < nbytes:
    raise WeightFileError(
        f"{describe(path)} is truncated: its record {info.filename!r} ({what}) should hold "
        f"{nbytes} bytes but only {len(raw)} are there. Re-download or re-save the file"
    )
  if len(raw) > nbytes:
    raise WeightFileError(
        f"{describe(path)} is corrupt: its record {info.filename!r} ({what}) holds more "
        f"than the {nbytes} bytes its header states. Re-download or re-save the file"
    )
  return raw


def _archive_prefix(path: str, names: list[str]) -> str:
  """The top-level folder holding ``data.pkl`` (torch names it after the file; any name)."""
  found = sorted({n[: -len("/data.pkl")] for n in names
                  if n.endswith("/data.pkl") and n.count("/") == 1})
  if len(found) == 1:
    return found[0]
  if not found:
    raise WeightFileError(
        f"{describe(path)} is a zip archive without '<folder>/data.pkl', so not a "
        "torch.save file (an .npz? read it with numpy.load)"
    )
  raise WeightFileError(f"{describe(path)} holds several torch pickles {found}; expected one")


def _byteorder(path: str, archive: zipfile.ZipFile, prefix: str) -> str:
  name = f"{prefix}/byteorder"
  try:
    archive.getinfo(name)
  except KeyError:
    return "little"  # files written before torch recorded it were little-endian
  info = _record(path, archive, name, "its byte order")
  if info.file_size > 16:
    raise WeightFileError(f"{describe(path)} has a byteorder record of {info.file_size} "
                          "bytes; torch writes 'little' or 'big'")
  raw = _read_record(path, archive, info, info.file_size, "its byte order")
  order = raw.decode("ascii", "replace").strip()
  if order not in ("little", "big"):
    raise WeightFileError(f"{describe(path)} has an unknown byteorder record {order!r}")
  return order


def _storage(key: str, dtype: np.dtype, raw: bytes, numel: int, swap: bool) -> Storage:
  data = np.frombuffer(raw, dtype=dtype, count=numel)  # read-only, shares raw: no copy
  return Storage(key, data.byteswap() if swap else data)


def _same_storage(path: str, storage: Storage, storage_type: StorageType, numel: int) -> Storage:
  if storage.dtype != storage_type.dtype or storage.numel != numel:
    raise WeightFileError(
        f"{describe(path)} is corrupt: storage {storage.key!r} is described twice, as "
        f"{storage.numel} x {storage.dtype} and as {numel} x {storage_type.dtype}"
    )
  return storage


# -------------------------------------------------------------------------- legacy format


def _read_legacy(path: str, f: BinaryIO, size: int) -> Any:
  def load(**kwargs: Any) -> Any:
    kwargs.setdefault("allowed", {})
    return safe_load(f, source=path, what=_WHAT, hint=_HINT, encoding="utf-8", **kwargs)

  def not_torch(pid: Any) -> None:
    raise WeightFileError(_not_torch_message(path))

  try:
    magic = load(persistent_load=not_torch)
  except UnsafePickleError:  # a pickle naming a forbidden global: say which
    raise
  except WeightFileError:
    magic = None
  if type(magic) is not int or magic != LEGACY_MAGIC:
    raise WeightFileError(_not_torch_message(path))
  version = load()
  if version != LEGACY_PROTOCOL:
    raise WeightFileError(
        f"{describe(path)} has legacy protocol version {version!r}; only "
        f"{LEGACY_PROTOCOL} is known"
    )
  if not isinstance(load(), dict):
    raise WeightFileError(f"{describe(path)} is corrupt: its sys_info record is not a dict")

  roots: dict[str, Storage] = {}
  views: dict[str, Storage] = {}
  budget = _storage_budget(path, size)

  def persistent_load(pid: Any) -> Storage:
    typename = pid[0] if isinstance(pid, tuple) and pid else None
    if typename == "storage" and len(pid) == 6 and pid[5] is None:
      return root(pid)
    if typename == "storage" and len(pid) == 6 and _is_view(pid[5]):
      base = root(pid)
      view_key, offset, count = pid[5]
      if view_key not in views:
        if offset + count > base.numel:
          raise WeightFileError(f"{describe(path)} is corrupt: view {view_key!r} "
                                f"exceeds storage {base.key!r}")
        views[view_key] = Storage(view_key, base.data[offset : offset + count])
      return views[view_key]
    _check_storage_id(path, pid, 6)  # raises for any other form
    raise UnsafePickleError(f"refused to load {describe(path)}: persistent id {_short(pid)} "
                            f"has a malformed view record. Nothing was run. {_HINT}")

  def root(pid: tuple) -> Storage:
    storage_type, key, numel = _check_storage_id(path, pid, 6)
    if key in roots:
      return _same_storage(path, roots[key], storage_type, numel)
    dtype = storage_type.dtype
    nbytes = numel * dtype.itemsize
    _check_fits(path, key, nbytes, size)
    budget.charge(nbytes, f"storage {key!r} ({numel} x {dtype})")  # all storages <= the file
    try:
      roots[key] = Storage(key, np.zeros(numel, dtype))  # filled below
    except MemoryError as e:
      raise out_of_memory(path, f"storage {key!r} ({numel} x {dtype})", e) from e
    return roots[key]

  result = load(allowed=torch_allow_list(), persistent_load=persistent_load)
  keys = load()
  if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
    raise WeightFileError(f"{describe(path)} is corrupt: its storage key list is not a list of str")
  for key in keys:
    _fill_legacy_storage(path, f, size, key, roots.get(key))
  missing = sorted(set(roots) - set(keys))
  if missing:
    raise WeightFileError(
        f"{describe(path)} is incomplete: its pickle uses storages {missing} that have no "
        "record in the file"
    )
  return result


def _fill_legacy_storage(path: str, f: BinaryIO, size: int, key: str,
                         storage: Storage | None) -> None:
  if storage is None:
    raise WeightFileError(
        f"{describe(path)} is corrupt: it has a record for storage {key!r}, which its "
        "pickle never uses"
    )
  head = f.read(8)
  if len(head) < 8:
    raise WeightFileError(f"{describe(path)} is truncated: the record of storage {key!r} is missing")
  count = int.from_bytes(head, "little", signed=True)
  if count != storage.numel:
    raise WeightFileError(
        f"{describe(path)} is corrupt: storage {key!r} has {count} elements on disk but "
        f"{storage.numel} in the pickle"
    )
  nbytes = count * storage.dtype.itemsize
  _check_fits(path, key, nbytes, size - f.tell())  # before reading
  got = f.readinto(storage.data.view(np.uint8))  # straight into the storage: no copy
  _check_fits(path, key, nbytes, got)
  if sys.byteorder != "little":
    storage.data.byteswap(inplace=True)


def _is_view(meta: Any) -> bool:
  return (isinstance(meta, tuple) and len(meta) == 3 and isinstance(meta[0], str)
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in meta[1:]))


def _not_torch_message(path: str) -> str:
  try:
    old_tar = tarfile.is_tarfile(path)
  except OSError:
    old_tar = False
  if old_tar:
    return (f"{describe(path)} is a tar archive, not a torch zip or legacy file (if it is a torch < 0.4 checkpoint, "
            "re-save it with a newer torch)")
  return (f"{describe(path)} is neither a torch zip archive nor a legacy torch file (it does "
          "not start with torch's magic number): not a torch.save file")


def _short(obj: Any, limit: int = 120) -> str:
  text = repr(obj)
  return text if len(text) <= limit else text[: limit - 3] + "..."
