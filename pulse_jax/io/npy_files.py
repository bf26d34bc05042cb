"""Reading user `.npy` and `.npz` files with their sizes checked from the headers first.

A `.npy` header states the array's shape, dtype and order; a few bytes (or a few KB of
deflated zeros in an `.npz`) may claim gigabytes. Every reader of user arrays (`--mask`,
`--blur_kernel`, `--init`, `render --latents`) goes through here, so that:
  - the header is read and checked (shape, dtype: real numbers only, never objects or
    pickles) by the caller's rule *before* any data is read;
  - an `.npz` member's stored size must match its header (so nothing more is ever read), and
    only the rows the caller can use are read (`NpzMember.read(rows=...)`);
  - a zip archive named `.npy`, a truncated file or a bad header is an `NpyError` naming the
    file, never a traceback.
Nothing here imports JAX.
"""
from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from typing import Callable

import numpy as np
from numpy.lib import format as npformat

ZIP_MAGIC = b"PK\x03\x04"
MAX_MEMBERS = 256          # arrays in an .npz (a run's latents.npz has a few dozen at most)
REAL_KINDS = "biuf"        # bool, ints, floats: what masks, kernels and latents may hold


class NpyError(ValueError):
  """A `.npy` / `.npz` file that cannot be used; the message names the file (and member)."""


@dataclasses.dataclass(frozen=True)
class Header:
  """A `.npy` header: shape, dtype, Fortran order, and where the data start."""
  shape: tuple[int, ...]
  dtype: np.dtype
  fortran_order: bool
  offset: int

  @property
  def nbytes(self) -> int:
    return math.prod(self.shape) * self.dtype.itemsize


def read_header(f, name: str, kinds: str = REAL_KINDS) -> Header:
  """The header of the `.npy` stream `f` (positioned at its start); NpyError naming `name`
  for a bad magic string, an unreadable header, or a dtype outside `kinds` (object and
  structured dtypes are always refused)."""
  start = f.read(len(ZIP_MAGIC))
  if start == ZIP_MAGIC:
    raise NpyError(f"{name}: is a zip archive (an .npz?), not a .npy array; save one 2-D array "
                   "with numpy.save.")
  try:
    version = npformat.read_magic(_Prefixed(start, f))
    if version == (1, 0):
      shape, fortran, dtype = npformat.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):   # 3.0 only differs in the header's text encoding
      shape, fortran, dtype = npformat.read_array_header_2_0(f)
    else:
      raise ValueError(f"unsupported .npy format version {version}")
  except Exception as e:  # pylint: disable=broad-except  # not an .npy, a corrupt header
    raise NpyError(f"{name}: not a .npy array ({type(e).__name__}: {_short(e)}).") from None
  dtype = np.dtype(dtype)
  if dtype.hasobject or dtype.fields is not None or dtype.kind not in kinds:
    raise NpyError(f"{name}: must hold real numbers, got dtype {_short(dtype)} (object "
                   "arrays are never read).")
  return Header(tuple(int(s) for s in shape), dtype, bool(fortran), int(f.tell()))


class _Prefixed:
  """`f` with `prefix` (already read) put back in front, for `read_magic`."""

  def __init__(self, prefix: bytes, f):
    self.prefix, self.f = prefix, f

  def read(self, n: int) -> bytes:
    head, self.prefix = self.prefix[:n], self.prefix[n:]
    return head + (self.f.read(n - len(head)) if n > len(head) else b"")


def _read_data(f, header: Header, name: str, rows: int | None) -> np.ndarray:
  """The array (its first `rows` rows when given: C order only reads those bytes)."""
  shape = header.shape
  if rows is not None and shape and rows < shape[0] and not header.fortran_order:
    shape = (rows,) + shape[1:]
  count = math.prod(shape)
  data = f.read(count * header.dtype.itemsize)
  if len(data) != count * header.dtype.itemsize:
    raise NpyError(f"{name}: truncated: its header says {_dims(header.shape)} "
                   f"{header.dtype}, the file holds less.")
  a = np.frombuffer(data, header.dtype, count)
  a = a.reshape(shape[::-1]).T if header.fortran_order else a.reshape(shape)
  if rows is not None and a.ndim and rows < a.shape[0]:
    a = a[:rows]
  return np.array(a)   # writable, own memory, native order


def load_npy(path: str | os.PathLike, check: Callable[[Header], None],
             kinds: str = REAL_KINDS) -> np.ndarray:
  """Reads a `.npy` file after `check(header)` (which raises for a shape or dtype the caller
  cannot use) passed; NpyError naming the file for anything else."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      header = read_header(f, path, kinds)
      check(header)
      if os.fstat(f.fileno()).st_size < header.offset + header.nbytes:
        raise NpyError(f"{path}: truncated: its header says {_dims(header.shape)} "
                       f"{header.dtype}, the file holds less.")
      return _read_data(f, header, path, None)
  except OSError as e:
    raise NpyError(f"{path}: cannot be read ({e.strerror or e}).") from None


@dataclasses.dataclass(frozen=True)
class NpzMember:
  """One array of an `.npz`: its name (without `.npy`), header, and how to read it."""
  archive: str
  name: str
  info: zipfile.ZipInfo
  header: Header

  @property
  def label(self) -> str:
    return f"{self.archive}: '{self.name}'"

  def read(self, rows: int | None = None) -> np.ndarray:
    """The array, or only its first `rows` rows (the other rows' bytes are never read)."""
    try:
      with zipfile.ZipFile(self.archive) as z, z.open(self.info) as f:
        f.read(self.header.offset)
        return _read_data(f, self.header, self.label, rows)
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as e:
      if isinstance(e, NpyError):
        raise
      raise NpyError(f"{self.label}: cannot be read ({type(e).__name__}: {_short(e)}).") from None


def npz_members(path: str | os.PathLike, kinds: str = REAL_KINDS) -> dict[str, NpzMember]:
  """{name: member} of an `.npz`, from the headers only (no array data is read); NpyError
  naming the file for a non-zip file, too many members, a member that is not a `.npy` array,
  a dtype outside `kinds`, or a stored size that does not match the header."""
  path = os.fspath(path)
  try:
    with zipfile.ZipFile(path) as z:
      infos = z.infolist()
      if len(infos) > MAX_MEMBERS:
        raise NpyError(f"{path}: {len(infos)} arrays, more than {MAX_MEMBERS}; not an .npz "
                       "this program writes.")
      out = {}
      for info in infos:
        if not info.filename.endswith(".npy") or info.filename[:-4] in out:
          raise NpyError(f"{path}: member {_short(info.filename)!s} is not a .npy array (or "
                         "is there twice).")
        name = info.filename[:-4]
        with z.open(info) as f:
          header = read_header(f, f"{path}: '{_short(name)}'", kinds)
        if info.file_size != header.offset + header.nbytes:
          raise NpyError(f"{path}: '{_short(name)}': its header says {_dims(header.shape)} "
                         f"{header.dtype} ({header.nbytes:,} bytes), but it stores "
                         f"{max(info.file_size - header.offset, 0):,} bytes.")
        out[name] = NpzMember(path, name, info, header)
      return out
  except NpyError:
    raise
  except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as e:
    raise NpyError(f"{path}: not a readable .npz ({type(e).__name__}: {_short(e)}).") from None


def _dims(shape) -> str:
  return "x".join(map(str, shape)) if shape else "a scalar"


def _short(x, limit: int = 200) -> str:
  s = str(x)
  return s if len(s) <= limit else s[:limit - 3] + "..."


def listing(names, limit: int = 8, width: int = 60) -> str:
  """'a, b, c' (at most `limit` names of at most `width` characters, then '... and N more'):
  how messages list names."""
  names = [_short(n, width) for n in names]
  head = ", ".join(names[:limit])
  return head + (f" ... and {len(names) - limit} more" if len(names) > limit else "")
