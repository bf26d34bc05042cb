"""Errors raised by the weight-file readers.

Both are ``ValueError`` subclasses, so callers that only want "this file could not be
read" can catch ``WeightFileError`` (which also covers ``UnsafePickleError``).
"""

from __future__ import annotations

import os


class WeightFileError(ValueError):
  """A weight file is empty, truncated, corrupt, or not of the expected format."""


class UnsafePickleError(WeightFileError):
  """A pickle asked for something outside the reader's allow-list; nothing was run."""


def describe(path: str | os.PathLike | None) -> str:
  """How error messages name a file: its path in quotes, or a placeholder."""
  return repr(os.fspath(path)) if path is not None else "<in-memory pickle>"


def name_mismatch(in_file, in_table) -> str:
  """'' when a file's tensor names are exactly its name table's; else the two lines an error
  message adds, naming every name the table lacks and every name the file lacks."""
  leftover = sorted(set(in_file) - set(in_table))
  missing = sorted(set(in_table) - set(in_file))
  if not (leftover or missing):
    return ""
  return (f"\n  in the file but not in the name table ({len(leftover)}): {leftover}"
          f"\n  in the name table but not in the file ({len(missing)}): {missing}")
