"""Where pulse-jax keeps what it can make again: converted built-in models, compiled programs.

`$PULSE_JAX_CACHE`, default `~/.cache/pulse_jax` (sub-folders: one per built-in model, `xla/`).
"""
from __future__ import annotations

import os


def cache_root() -> str:
  """The cache folder (not created here)."""
  return os.environ.get("PULSE_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                        "pulse_jax"))
