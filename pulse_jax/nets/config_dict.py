"""The dict round trip of the networks' static configurations (frozen dataclasses)."""
from __future__ import annotations

import dataclasses


class DictConfig:
  """Base of a frozen dataclass config: `to_dict` / `from_dict` (the form weights files store),
  with unknown fields named in the error."""

  def to_dict(self) -> dict:
    """{field name: value} of every field (`dataclasses.asdict`)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict):
    """The config of `to_dict`'s dict. Raises ValueError naming unknown fields (and the valid
    ones); the dataclass' own checks apply to the values."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"Unknown {cls.__name__} fields {sorted(unknown)}; valid: {sorted(names)}.")
    return cls(**d)
