"""Periodic orbax checkpoints of a running search, and resuming from them.

A checkpoint (one orbax step directory per saved step) holds
  state: the full `SearchState` (variables, optimiser state, best-so-far, step) as sharded
         global arrays; every process writes its own shards (multi-host: the directory must be
         one that all hosts share: NFS, a bucket mount, or a gs:// URL orbax writes to),
  trace: the losses of every step so far, {name: [steps, N real rows]} numpy (the same on
         every process; orbax writes numpy from process 0),
  meta:  JSON: the search's settings (options, a hash of inputs, weights and start values,
         restarts) and the padded row count of the layout that wrote it.
Resuming with other settings raises a ValueError naming what differs. Resuming on another
device count works: the real rows are restored and re-padded for the new layout.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from pulse_jax import sharding

FORMAT = "pulse_jax.search/1"


def _differences(stored: dict, now: dict) -> list[str]:
  out = []
  for k in sorted(set(stored) | set(now)):
    a, b = stored.get(k), now.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += [f"{k}.{d}" for d in _differences(a, b)]
    elif a != b:
      short = lambda v: (v[:12] + "...") if isinstance(v, str) and len(v) > 16 else v
      out.append(f"{k} (checkpoint: {short(a)!r}, now: {short(b)!r})")
  return out


class SearchCheckpoints:
  """orbax CheckpointManager over `directory` for one search with the given settings."""

  def __init__(self, directory: str, settings: dict, max_to_keep: int = 2):
    """Opens (or creates) `directory`; raises ValueError at once when its newest checkpoint
    was made by a search with other settings."""
    import orbax.checkpoint as ocp
    # orbax needs absolute paths; URLs (gs://...) are passed as they are
    self.directory = directory if "://" in directory else os.path.abspath(directory)
    self.settings = settings
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "trace", "meta"),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
    self._meta = None
    step = self._manager.latest_step()
    if step is not None:
      self._meta = self._read_meta(step)

  def _read_meta(self, step: int) -> dict:
    import orbax.checkpoint as ocp
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = meta["meta"]
    except Exception as e:  # orbax raises several types for a missing or foreign item
      raise ValueError(f"{self.directory} holds a checkpoint at step {step} that is not a "
                       f"pulse-jax search checkpoint ({type(e).__name__}: {e}). Use another "
                       "--checkpoint_dir.") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
      raise ValueError(f"{self.directory} holds checkpoints that are not pulse-jax search "
                       "checkpoints. Use another --checkpoint_dir.")
    diff = _differences(meta["settings"], self.settings)
    if diff:
      raise ValueError(
          f"{self.directory} holds checkpoints of a different search; differing settings: "
          f"{'; '.join(diff)}. Resume with the same inputs and options, or use another "
          "--checkpoint_dir (or delete it) to start over.")
    return meta

  def save(self, step: int, state, trace: dict[str, np.ndarray], rows: int,
           blocking: bool = True) -> None:
    """Saves `state` and the host `trace` {name: [step, N real rows]} at `step`.

    blocking=False: returns once orbax holds the data (device-to-host copy) and writes the
    files in the background (the next save or `wait_until_finished` waits for them); `state`
    must then not be donated or deleted meanwhile (the driver passes a copy)."""
    import orbax.checkpoint as ocp
    meta = {"format": FORMAT, "settings": self.settings, "rows": int(rows), "step": int(step)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        trace=ocp.args.StandardSave({k: np.asarray(v) for k, v in trace.items()}),
        meta=ocp.args.JsonSave(meta)), force=True)
    if blocking:
      self._manager.wait_until_finished()

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def restore_latest(self, abstract_state, rows: int, real_rows: int):
    """(state, trace) from the newest checkpoint, or None when there is none.

    abstract_state: `SearchState` of `jax.ShapeDtypeStruct`s with shardings, for `rows` padded
    rows of which the first `real_rows` are real. A checkpoint written with another padded
    row count (another device count) is read whole on every process and re-padded.
    """
    import orbax.checkpoint as ocp
    if self._meta is None:
      return None
    step = self._meta["step"]
    stored_rows = int(self._meta["rows"])
    if stored_rows == rows:
      target = abstract_state
    else:  # another device count: read every row everywhere, keep the real ones, re-pad
      rep = sharding.replicated(jax.tree.leaves(abstract_state)[0].sharding.mesh)
      target = jax.tree.map(
          lambda a: jax.ShapeDtypeStruct((stored_rows,) + a.shape[1:] if a.ndim else a.shape,
                                         a.dtype, sharding=rep), abstract_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), trace=ocp.args.StandardRestore()))
    state = restored["state"]
    if stored_rows != rows:
      state = jax.tree.map(lambda x, a: _relayout(x, a, rows, real_rows), state, abstract_state)
    trace = {k: np.asarray(v) for k, v in dict(restored["trace"]).items()}
    return state, trace


def _relayout(x: jax.Array, abstract, rows: int, real_rows: int) -> jax.Array:
  """Replicated restored leaf -> `rows` rows (real rows kept, padding = copies of the last)."""
  host = np.asarray(x)
  if host.ndim:
    host = host[:real_rows]
    host = np.concatenate([host, np.repeat(host[-1:], rows - real_rows, axis=0)])
  return sharding.put(host, abstract.sharding)
