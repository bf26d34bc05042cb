"""Periodic orbax checkpoints of a running search, and resuming from them.

A checkpoint (one orbax step directory per saved step) holds
  state: the full `SearchState` (variables, optimiser state, best-so-far, step) as sharded
         global arrays; every process writes its own shards (multi-host: the directory must be
         one that all hosts share: NFS, a bucket mount, or a gs:// URL orbax writes to),
  trace: the losses of every step so far, {name: [steps, N real rows]} numpy (the same on
         every process; orbax writes numpy from process 0),
  meta:  JSON: the search's settings (options, a hash of inputs, weights and start values,
         restarts) and the padded row count of the layout that wrote it.
Resuming with other settings raises a ValueError (`SettingsMismatch`) naming what differs; a
checkpoint that cannot be read (truncated or garbage files) is skipped with a message naming
the directory, and the previous one is used (or the batch starts over). A save that fails or
hangs raises `CheckpointError` (after at most `SAVE_TIMEOUT_S`). Resuming on another
device count works: the real rows are restored and re-padded for the new layout.
"""
from __future__ import annotations

import os
import threading
from typing import Callable

import jax
import numpy as np

from pulse_jax.runtime import sharding

FORMAT = "pulse_jax.search.program/1"


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


class CheckpointError(RuntimeError):
  """A checkpoint could not be saved (a full or read-only disk, a save that did not finish in
  `SAVE_TIMEOUT_S`); the message names the directory and the step. The search goes on
  without checkpoints (`loop.search_images`)."""


class SettingsMismatch(ValueError):
  """The checkpoint directory holds checkpoints of a different search (or not pulse-jax's)."""


# A save that has not finished in this many seconds is abandoned (a hung NFS mount, a full
# disk that blocks): the search goes on without checkpoints and the process ends on time.
SAVE_TIMEOUT_S = 600.0


class SearchCheckpoints:
  """orbax CheckpointManager over `directory` for one search with the given settings."""

  def __init__(self, directory: str, settings: dict, max_to_keep: int = 2,
               log: Callable[[str], None] | None = None):
    """Opens (or creates) `directory`; raises SettingsMismatch (a ValueError) at once when its
    newest readable checkpoint was made by a search with other settings. Checkpoints that
    cannot be read (truncated or garbage files) are skipped with a message to `log` (the
    previous one is used, or the search starts over) and moved aside (`_discard`)."""
    import orbax.checkpoint as ocp
    # orbax needs absolute paths; URLs (gs://...) are passed as they are
    self.directory = directory if "://" in directory else os.path.abspath(directory)
    self.settings = settings
    self.log = log or (lambda s: None)
    # Directories made in the calling thread: a failure (read-only, full disk) raises here
    # and leaves no orbax thread waiting for a directory that never comes (it kept the
    # process alive for ever); background writes are bounded by the timeout.
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "trace", "meta"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            async_options=ocp.AsyncOptions(timeout_secs=int(SAVE_TIMEOUT_S),
                                           create_directories_asynchronously=False)))
    self._meta = None
    self._bad: set[int] = set()
    self._newest_readable()

  def _steps(self) -> list[int]:
    """The checkpointed steps, newest first, without those found unreadable."""
    return sorted((s for s in self._manager.all_steps() if s not in self._bad), reverse=True)

  def _newest_readable(self) -> None:
    """Sets `_meta` to the newest checkpoint whose metadata can be read (None: none)."""
    self._meta = None
    for step in self._steps():
      try:
        self._meta = self._read_meta(step)
        return
      except _Unreadable as e:
        self._discard(step, e)

  def _discard(self, step: int, why: Exception) -> None:
    """Reports the unreadable checkpoint at `step` and moves it out of the way (renamed to
    `corrupt-step-<step>[-<i>]` in the directory, kept for inspection; deleted for URLs)."""
    self._bad.add(step)
    older = [s for s in self._steps() if s < step]
    then = (f"using the previous one (step {older[0]})" if older
            else "starting this batch over")
    moved = ""
    try:
      if jax.process_index() != 0:  # process 0 moves it for every process
        pass
      elif "://" in self.directory:
        self._manager.delete(step)
      else:
        src, i = os.path.join(self.directory, str(step)), 0
        dst = os.path.join(self.directory, f"corrupt-step-{step}")
        while os.path.lexists(dst):
          i += 1
          dst = os.path.join(self.directory, f"corrupt-step-{step}-{i}")
        os.rename(src, dst)
        moved = f"; moved to {dst}"
    except Exception as e:  # pylint: disable=broad-except
      moved = f"; could not be moved aside ({_short(e)})"
    self.log(f"warning: the checkpoint at step {step} in {self.directory} cannot be read "
             f"({_short(why)}){moved}: {then}")
    try:
      self._manager.reload()
    except Exception:  # pylint: disable=broad-except
      pass

  def _read_meta(self, step: int) -> dict:
    import orbax.checkpoint as ocp
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = meta["meta"]
    except Exception as e:  # orbax raises several types for missing, truncated or bad files
      raise _Unreadable(e) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
      raise SettingsMismatch(f"{self.directory} holds checkpoints that are not pulse-jax "
                             "search checkpoints. Use another --checkpoint_dir.")
    try:
      settings, _, _ = meta["settings"], int(meta["rows"]), int(meta["step"])
    except (KeyError, TypeError, ValueError) as e:
      raise _Unreadable(e) from e
    if not isinstance(settings, dict):
      raise _Unreadable(TypeError("settings is not a JSON object"))
    diff = _differences(settings, self.settings)
    if diff:
      raise SettingsMismatch(
          f"{self.directory} holds checkpoints of a different search; differing settings: "
          f"{'; '.join(diff)}. Resume with the same inputs and options, or use another "
          "--checkpoint_dir (or delete it) to start over.")
    return meta

  def save(self, step: int, state, trace: dict[str, np.ndarray], rows: int,
           blocking: bool = True) -> None:
    """Saves `state` and the host `trace` {name: [step, N real rows]} at `step`.

    blocking=False: returns once orbax holds the data (device-to-host copy) and writes the
    files in the background (the next save or `wait_until_finished` waits for them); `state`
    must then not be donated or deleted meanwhile (the loop passes a copy).
    Raises CheckpointError when the save fails or does not finish in time."""
    import orbax.checkpoint as ocp
    meta = {"format": FORMAT, "settings": self.settings, "rows": int(rows), "step": int(step)}
    self.wait_until_finished()  # the previous save, with the deadline (orbax waits for ever)
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          trace=ocp.args.StandardSave({k: np.asarray(v) for k, v in trace.items()}),
          meta=ocp.args.JsonSave(meta)), force=True)
    except Exception as e:  # pylint: disable=broad-except  # OSError, orbax's ValueErrors
      raise CheckpointError(f"saving the checkpoint at step {step} in {self.directory} "
                            f"failed: {_short(e)}") from e
    if blocking:
      self.wait_until_finished()

  def wait_until_finished(self, timeout_s: float | None = None) -> None:
    """Waits for the background save, at most `timeout_s` (default `SAVE_TIMEOUT_S`);
    CheckpointError when it failed or is still running then (it is abandoned)."""
    timeout_s = SAVE_TIMEOUT_S if timeout_s is None else timeout_s
    error: list[BaseException] = []

    def wait():
      try:
        self._manager.wait_until_finished()
      except BaseException as e:  # pylint: disable=broad-except
        error.append(e)
    waiter = threading.Thread(target=wait, name="pulse_jax-checkpoint-wait", daemon=True)
    waiter.start()
    waiter.join(timeout_s)
    if waiter.is_alive():
      raise CheckpointError(f"the checkpoint save in {self.directory} did not finish within "
                            f"{timeout_s:g} s (abandoned)")
    if error:
      raise CheckpointError(f"saving a checkpoint in {self.directory} failed: "
                            f"{_short(error[0])}") from error[0]

  def restore_latest(self, abstract_state, rows: int, real_rows: int):
    """(state, trace) from the newest checkpoint that can be read, or None when there is none.

    abstract_state: `SearchState` of `jax.ShapeDtypeStruct`s with shardings, for `rows` padded
    rows of which the first `real_rows` are real. A checkpoint written with another padded
    row count (another device count) is read whole on every process and re-padded. One that
    cannot be read is reported and moved aside, and the previous one is tried.
    """
    while self._meta is not None:
      step = int(self._meta["step"])
      try:
        return self._restore(step, int(self._meta["rows"]), abstract_state, rows, real_rows)
      except Exception as e:  # pylint: disable=broad-except  # truncated or garbage files
        self._discard(step, e)
        self._newest_readable()
    return None

  def _restore(self, step: int, stored_rows: int, abstract_state, rows: int, real_rows: int):
    import orbax.checkpoint as ocp
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
    if int(state.step) != step or any(v.shape[0] != step for v in trace.values()):
      raise ValueError(f"its contents are of step {int(state.step)}, not {step}")
    return state, trace


class _Unreadable(Exception):
  """A checkpoint's files cannot be read (the cause is chained)."""

  def __init__(self, cause: BaseException):
    super().__init__(_short(cause))


def _short(e: BaseException, limit: int = 300) -> str:
  """`Type: message` on one line, at most `limit` characters."""
  if isinstance(e, _Unreadable):
    return str(e)
  text = " ".join(f"{type(e).__name__}: {e}".split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _relayout(x: jax.Array, abstract, rows: int, real_rows: int) -> jax.Array:
  """Replicated restored leaf -> `rows` rows (real rows kept, padding = copies of the last)."""
  host = np.asarray(x)
  if host.ndim:
    host = host[:real_rows]
    host = np.concatenate([host, np.repeat(host[-1:], rows - real_rows, axis=0)])
  return sharding.put(host, abstract.sharding)
