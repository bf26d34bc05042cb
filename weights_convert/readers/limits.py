"""How much a weight file may make its reader allocate: about its own size, never more.

Every allocation whose size comes from the file is checked against the bytes the file really
holds *before* anything is allocated:

* pickles: ``safe_unpickle.check_pickle`` walks the opcodes first, so a counted string /
  bytes / bytearray / long or a protocol-4 frame longer than the bytes left, or an absurd memo
  index, is refused before the unpickler would allocate it;
* torch storages: a zip record must be uncompressed and hold exactly ``numel * itemsize``
  bytes, a legacy record's declared size must fit in the bytes left in the file, and all
  storages together may not exceed the file's size (overlapping zip records);
* tensors: a view must lie inside its storage and may not have more elements than the
  storage (so a stride-0 "expanded" view larger than its storage is refused);
* arrays handed back (tensors copied out of storages, numpy arrays rebuilt from a TF pickle):
  at most ``OUTPUT_FACTOR`` x the file's size + ``OUTPUT_SLACK`` bytes in all (``Budget``).

A refusal is a ``WeightFileError`` naming the file and the tensor. A ``MemoryError`` that
still happens (a genuine file too large for this machine) is reported the same way
(``out_of_memory``), never as a bare ``MemoryError``.
"""

from __future__ import annotations

import os

from weights_convert.readers.errors import WeightFileError, describe

__all__ = ["OUTPUT_FACTOR", "OUTPUT_SLACK", "Budget", "SizeRefusal", "out_of_memory"]

# The arrays read from one file may hold at most this many times the file's bytes (+ slack):
# 1x is what a plain state dict needs; 2x leaves room for a few views sharing a storage.
OUTPUT_FACTOR = 2
OUTPUT_SLACK = 1 << 20

_HINT = (
    "A genuine file never needs this: re-download it, or re-save it from a trusted copy "
    "(torch: save a state_dict of contiguous tensors, t.contiguous() / t.clone())."
)


class SizeRefusal(ValueError):
  """A pickle stand-in refusing sizes its data cannot back; it does not know the file, so
  ``safe_load`` turns it into ``WeightFileError("refused to load <file>: ...")``."""


class Budget:
  """Bytes a reader may still allocate for one file; ``charge`` before each allocation.

  Args:
    source: the file's path, for messages.
    limit: the most bytes that may be charged in all.
    of_what: what the limit is, for messages (e.g. "2 x the file's size + 1 MiB").
    hint: how to fix a refusal, appended to the message.
  """

  def __init__(self, source: str | os.PathLike | None, limit: int, of_what: str,
               hint: str = _HINT) -> None:
    self.source = source
    self.limit = int(limit)
    self.of_what = of_what
    self.hint = hint
    self.used = 0

  @classmethod
  def for_file(cls, source: str | os.PathLike | None, file_size: int) -> Budget:
    """The budget for the arrays handed back from a file of ``file_size`` bytes."""
    return cls(source, OUTPUT_FACTOR * file_size + OUTPUT_SLACK,
               f"{OUTPUT_FACTOR} x the file's {file_size} bytes + {OUTPUT_SLACK >> 20} MiB")

  def charge(self, nbytes: int, what: str) -> None:
    """Account for ``nbytes`` about to be allocated for ``what``, or refuse them.

    Raises:
      WeightFileError: the total would pass ``limit``; nothing was allocated.
    """
    if nbytes > self.limit - self.used:
      raise WeightFileError(
          f"refused to load {describe(self.source)}: {what} needs {nbytes} bytes, which "
          f"would bring what this file makes the reader allocate to {self.used + nbytes} "
          f"bytes, more than {self.of_what} ({self.limit} bytes); nothing was allocated "
          f"for it. {self.hint}"
      )
    self.used += nbytes


def out_of_memory(source: str | os.PathLike | None, what: str,
                  error: BaseException | None = None) -> WeightFileError:
  """The error to raise (``from`` the ``MemoryError``) when allocating ``what`` failed."""
  detail = f" ({error})" if error is not None and str(error) else ""
  return WeightFileError(
      f"{describe(source)}: ran out of memory while reading {what}{detail}. The file may be "
      "corrupt or hostile, or larger than this machine's free memory: check that it is the "
      "genuine weights file (re-download it), or free memory and retry"
  )
