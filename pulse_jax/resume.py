"""Periodic orbax checkpoints of a running search, and resuming from them.

A checkpoint holds the full `SearchState` (variables, optimiser state, best-so-far,
step) and the loss trace so far. It is tagged with a fingerprint of the problem
(options, inputs, restarts, start values); a run started with different settings
refuses to resume from it instead of silently mixing results.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

FINGERPRINT_FILE = "search_fingerprint.json"


class SearchCheckpoints:
  def __init__(self, directory: str, fingerprint: str, max_to_keep: int = 2):
    import orbax.checkpoint as ocp
    self.directory = os.path.abspath(directory)
    self.fingerprint = fingerprint
    os.makedirs(self.directory, exist_ok=True)
    fp_path = os.path.join(self.directory, FINGERPRINT_FILE)
    if os.path.exists(fp_path):
      with open(fp_path) as f:
        stored = json.load(f).get("fingerprint")
      if stored != fingerprint:
        raise ValueError(
            f"{self.directory} holds checkpoints of a different search (other inputs or "
            "options). Use another --checkpoint_dir, or delete it to start over.")
    elif jax.process_index() == 0:
      with open(fp_path, "w") as f:
        json.dump({"fingerprint": fingerprint}, f)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def save(self, step: int, state, trace_chunks: list[dict]) -> None:
    import orbax.checkpoint as ocp
    trace = {}
    if trace_chunks:
      for k in trace_chunks[0]:
        trace[k] = np.concatenate([np.asarray(t[k]) for t in trace_chunks], axis=0)
        if trace[k].dtype == bool:
          trace[k] = trace[k].astype(np.int8)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        trace=ocp.args.StandardSave(trace)), force=True)
    self._manager.wait_until_finished()

  def restore_latest(self, like_state):
    """(state, trace_chunks) from the newest checkpoint, or None when there is none."""
    import orbax.checkpoint as ocp
    step = self._manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), trace=ocp.args.StandardRestore()))
    state = restored["state"]
    trace = {k: np.asarray(v) for k, v in dict(restored["trace"]).items()}
    if "active" in trace:
      trace["active"] = trace["active"].astype(bool)
    return state, ([trace] if trace else [])
