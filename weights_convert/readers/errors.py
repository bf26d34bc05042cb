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
