"""jax's persistent compilation cache for the entry points: a second run compiles nothing.

Compiled XLA programs are stored under `$PULSE_JAX_COMPILE_CACHE` (default
`$PULSE_JAX_CACHE/xla`, i.e. `~/.cache/pulse_jax/xla`), keyed by jax on the program, the jax
and XLA versions, the backend and the compile options, so a repeated run, a second batch of the
same shape or a resumed job loads its programs instead of compiling them. jax writes each entry
atomically (several processes may share the folder). Opt out with `--nocompile_cache` or
`PULSE_JAX_NO_COMPILE_CACHE=1`.
"""
from __future__ import annotations

import os

from pulse_jax.io.cache import cache_root

ENV_DIR = "PULSE_JAX_COMPILE_CACHE"
ENV_OFF = "PULSE_JAX_NO_COMPILE_CACHE"


def cache_dir() -> str:
  """Where compiled programs are kept."""
  return os.environ.get(ENV_DIR) or os.path.join(cache_root(), "xla")


def disabled_by_env() -> bool:
  return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def enable(directory: str | None = None) -> str | None:
  """Turns the persistent cache on (every program, however fast it compiled); returns its folder,
  or None when `PULSE_JAX_NO_COMPILE_CACHE` is set. Call before the first compilation."""
  import jax
  if disabled_by_env():
    return None
  directory = directory or cache_dir()
  if jax.config.jax_compilation_cache_dir == directory:
    return directory
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  try:  # jax decides once, at its first compilation, whether a cache is used: ask again
    from jax._src import compilation_cache as _cc
    _cc.reset_cache()
  except (ImportError, AttributeError):  # another jax: the setting applies to new processes
    pass
  return directory
