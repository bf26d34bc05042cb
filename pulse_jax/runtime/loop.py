"""Runs the compiled search on a batch of images: placement, chunks, progress, resume, results.

`search_images` is the library entry point behind `python -m pulse_jax.run`. It
  - lays out N = B images x R restarts over a 1-D mesh of every device of every process
    (padded to a multiple of the device count; the extra rows are dropped and logged),
  - compiles the chunk program once per problem shape (`runtime.compile`, cached: a second
    batch of the same shape and options does not recompile),
  - runs the chunks (`BatchSearch`), reporting progress and optional best-so-far frames one
    chunk behind, so the host never makes the device wait,
  - saves/restores the full state with orbax every `checkpoint_every` steps (`_Checkpoints`),
  - gathers every host's per-restart results, ranks restarts per image (`search/rank.py`) and
    renders the best.
A restart's result depends only on (seed, image key, restart index), not on the device or
process count (see docs/scaling.md).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.forward import ForwardModel
from pulse_jax.generators import Generator
from pulse_jax.runtime import checkpoints, compile, sharding, stopping
from pulse_jax.search import candidates, ilo, program, rank
from pulse_jax.search.config import SearchConfig

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class SearchResult:
  """Host results for B images x R restarts (K = images kept per input).

  total, l2, min_l2: [B, R] float32 (l2: unclamped L2 of the best iterate); terms: name -> [B, R];
  best_step: [B, R] int (1-based); within_eps: [B, R] bool; ranking: [B, R] restart indices,
  best first (within eps first, then lowest total loss); success_rate: [B];
  hr: [B, K, C, H, W], lr: [B, K, C, h, w] float32 in [0, 1] of the K best restarts (`selected`
  [B, K]); start_values: {'latent': [B, K, l, D], 'noise_<i>': [B, K, 1, r, r]} of those K;
  all_start_values: the same for every restart, {'latent': [B, R, l, D], 'noise_<i>':
  [B, R, 1, r, r]} (row r: restart r's best iterate; `start_values` is its `selected` rows);
  trace: name -> [steps, B, R] losses at each step (before its update; NaN after the image's
  `steps_run`); failed: [B, R] bool, restarts whose losses were never finite (best_step 0,
  total inf): ranked last.
  Candidates (`search/candidates.py`): `selected` is in `selection` order ('diverse': the best,
  then greedy farthest point among the within-eps restarts; 'l2': the ranking); filled: [B]
  how many kept are not within eps (too few were); diversity: [B] float64 mean pairwise RMS
  difference of the kept HR images (NaN for one); spread: [B, H, W] float32 per-pixel spread of
  every within-eps restart's HR image (NaN where fewer than 2 are within eps), spread_count: [B]
  restarts it is over, spread_mean: [B] its mean (NaN without a map).
  Anytime search (config.stop_within): steps_run: [B] steps each image's restarts ran;
  ended_early: [B] bool (ended before the last step by the stop rule); first_within_step:
  [B, R] 1-based step at which each restart's L2 was first <= eps (0: never).
  ILO (config.ilo, `search/ilo.py`): ilo_layers: the cut points searched after the latent
  search; ilo_kept_layer: the last one entered (the kept images are rendered from its
  activation, `start_values['ilo.<layer>']`), None before the first; ilo_moved: {layer: [B, R]
  float32} for each layer entered, how far the kept activation there is from the point it was
  entered with (||a - c||_1 / ||c||_1, at most config.ilo_radius; 0: the search there did not
  improve on the kept image).
  num_devices / num_processes: where it ran; padded_rows: extra rows (restarts of the last
  image) added so every device holds as many rows, computed and dropped; micro_batches: the
  sequential groups of restarts per step (as given, or chosen when 0 was given).
  """
  total: np.ndarray
  terms: dict
  l2: np.ndarray
  min_l2: np.ndarray
  best_step: np.ndarray
  within_eps: np.ndarray
  ranking: np.ndarray
  success_rate: np.ndarray
  selected: np.ndarray
  hr: np.ndarray
  lr: np.ndarray
  start_values: dict
  trace: dict
  timings: dict
  num_devices: int
  padded_rows: int
  resumed_from_step: int = 0
  num_processes: int = 1
  micro_batches: int = 1
  all_start_values: dict = dataclasses.field(default_factory=dict)
  failed: np.ndarray | None = None   # [B, R] bool: restarts with no finite iterate (diverged)
  selection: str = "l2"
  filled: np.ndarray | None = None
  diversity: np.ndarray | None = None
  spread: np.ndarray | None = None
  spread_count: np.ndarray | None = None
  spread_mean: np.ndarray | None = None
  steps_run: np.ndarray | None = None
  ended_early: np.ndarray | None = None
  first_within_step: np.ndarray | None = None
  ilo_layers: tuple = ()
  ilo_kept_layer: str | None = None
  ilo_moved: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.failed is None:
      self.failed = ~np.isfinite(self.total)


@dataclasses.dataclass
class ChunkInfo:
  """What `progress` receives after each chunk."""
  step: int
  steps: int
  best_total: np.ndarray       # [B] best total loss over restarts so far
  best_l2: np.ndarray          # [B] unclamped L2 of that iterate
  elapsed_s: float
  frames: dict | None = None   # {'hr': [B, C, H, W], 'lr': [B, C, h, w]} best-so-far, if asked
  ended: int = 0               # images whose search has ended (anytime search) at this step


class Stopped(Exception):
  """The search stopped early on a stop request (`pulse_jax.runtime.stopping`: SIGTERM, SIGINT).

  signum: the signal; step: the steps done; checkpoint: the directory holding a checkpoint
  of that step (the same search resumes from it), or None."""

  def __init__(self, signum: int, step: int, steps: int, checkpoint: str | None,
               why_none: str = "no --checkpoint_dir"):
    self.signum, self.step, self.steps, self.checkpoint = signum, step, steps, checkpoint
    where = f"checkpoint saved in {checkpoint}" if checkpoint else f"no checkpoint: {why_none}"
    super().__init__(f"stopped by {stopping.name(signum)} at step {step}/{steps} ({where})")


def _layout(num_images: int, restarts: int, image_keys, mesh,
            micro_batches: int = 1) -> tuple[np.ndarray, ...]:
  n = num_images * restarts
  n_pad = sharding.padded_count(n, mesh, micro_batches)
  image_index = np.repeat(np.arange(num_images), restarts)
  restart_ids = np.tile(np.arange(restarts), num_images)
  if n_pad > n:  # extra rows: more restarts of the last image, computed and then dropped
    image_index = np.concatenate([image_index, np.full(n_pad - n, num_images - 1)])
    restart_ids = np.concatenate([restart_ids, restarts + np.arange(n_pad - n)])
  keys = np.asarray(image_keys, np.int64)[image_index]
  return image_index, restart_ids, keys, n_pad


def _digest(*arrays) -> str | None:
  if all(a is None for a in arrays):
    return None
  h = hashlib.sha256()
  for a in arrays:
    if a is not None:
      a = np.ascontiguousarray(a)
      h.update(repr((a.shape, str(a.dtype))).encode())
      h.update(a.tobytes())
  return h.hexdigest()


def _settings(problem: program.Problem, params, ref, mask, restarts: int, image_keys,
              start) -> dict:
  """What a checkpoint must match to be resumed (JSON): everything that changes the results.

  Not included: the chunk size, micro-batches, the device and process counts, remat (same
  results).
  """
  g = problem.generator
  start = start or {}
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {
      "generator": {"kind": g.kind, "config": repr(g.config), "compute_dtype": g.compute_dtype},
      "config": dataclasses.asdict(problem.config),
      "factor": problem.factor,
      "forward": problem.forward.describe(),
      "restarts": int(restarts),
      "image_keys": [int(k) for k in image_keys],
      "ref_sha256": _digest(np.asarray(ref, np.float32)),
      "mask_sha256": None if mask is None else _digest(np.asarray(mask, np.float32)),
      "start_sha256": _digest(*[np.asarray(start[k], np.float32) for k in sorted(start)])
                      if start else None,
      "start_keys": sorted(start),
      "weights_sha256": _digest(np.array(repr([p for p, _ in leaves])),
                                *[sharding.to_host(x) for _, x in leaves]),
  }


def _trace_to_host(trace: dict, active: int, n: int) -> dict:
  """A chunk's device trace {name: [chunk, N_pad]} -> host {name: [active, n]} (the steps run,
  the real rows; 'active' and 'running' dropped)."""
  return {k: sharding.to_host(v)[:active, :n] for k, v in trace.items()
          if k not in ("active", "running")}


def _concat(chunks: list[dict]) -> dict:
  return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]} if chunks else {}


class _Checkpoints:
  """A batch's checkpoints in `directory` (orbax, `runtime.checkpoints`), or none.

  A checkpoint that cannot be saved turns checkpoints off for this batch, which goes on
  (single process; with several processes it raises: they would disagree about the next save).
  """

  def __init__(self, directory: str | None, settings: Callable[[], dict],
               warn: Callable[[str], None]):
    self.requested = bool(directory)
    self.warn = warn
    self.manager = None
    self.saved_step = -1  # the newest step saved (or resumed from) by this search
    if directory:
      try:
        self.manager = checkpoints.SearchCheckpoints(  # raises here when the settings differ
            directory, settings(), log=warn)
      except OSError as e:  # cannot create or list the directory (read-only, full disk)
        self._off(checkpoints.CheckpointError(
            f"{directory} cannot be used: {type(e).__name__}: {e}"))

  def _off(self, e: Exception) -> None:
    self.manager = None
    if jax.process_count() > 1:
      raise e
    self.warn(f"warning: checkpoints disabled for this batch: {e}")

  @property
  def on(self) -> bool:
    return self.manager is not None

  def restore(self, abstract_state, n_pad: int, n: int):
    """(state, trace {name: [steps, n]}) of the newest readable checkpoint, or None."""
    if self.manager is None:
      return None
    restored = self.manager.restore_latest(abstract_state, n_pad, n)
    if restored is not None and int(restored[0].step):
      self.saved_step = int(restored[0].step)
    return restored

  def due(self, prev: int, done: int, steps: int, every: int) -> bool:
    """Whether the chunk from step `prev` to `done` ends at a save: the last step, or the
    first chunk end at or past a multiple of `every` (0: only the last)."""
    return self.manager is not None and (
        done == steps or bool(every and done // every > prev // every))

  def save(self, step: int, state, trace: dict, n_pad: int, blocking: bool) -> None:
    """Saves `state` (not donated again until written, or a copy) and the host trace."""
    if self.manager is None:
      return
    try:
      self.manager.save(step, state, trace, n_pad, blocking=blocking)
      self.saved_step = step
    except checkpoints.CheckpointError as e:
      self._off(e)

  def wait(self) -> None:
    if self.manager is None:
      return
    try:
      self.manager.wait_until_finished()
    except checkpoints.CheckpointError as e:
      self._off(e)

  def stopped(self, signum: int, done: int, steps: int) -> Stopped:
    """The `Stopped` of a stop request at step `done`, naming the checkpoint of that step."""
    saved = self.manager is not None and self.saved_step == done and done > 0
    why_none = ("no --checkpoint_dir" if not self.requested else "nothing searched yet"
                if done == 0 else "checkpoints disabled for this batch")
    return Stopped(signum, done, steps, self.manager.directory if saved else None, why_none)


@dataclasses.dataclass
class _ChunkDone:
  """One dispatched chunk whose host work (progress, frames, checkpoint) is still to do."""
  step: int              # steps done after it
  trace: dict            # device trace {name: [chunk, N_pad]}
  active: int            # steps it ran (the rest of the trace rows are masked)
  frames: dict | None    # device arrays of each image's best-so-far images, or None
  snapshot: object       # a copy of the state to checkpoint, or None


class BatchSearch:
  """One batch's search on the devices: its problem, mesh, row layout, placed inputs, weights,
  compiled chunk programs and current state. `search_images` builds one and `_run` loops:

    s.start(ckpt, log)        # restore the newest checkpoint, or draw the initial state
    s.compile_programs()      # weights prepared once; the chunk (and last-chunk) programs
    while s.done < s.steps:   # between chunks: stop requests
      chunk = s.run_chunk(...)  # dispatched (with frames, a state copy to save), not waited for
      ... host work of the previous chunk: s.kept.add, checkpoint, s.progress_info
    s.result(keep, timings)   # gathered, ranked, best images rendered

  Rows: N = B images x R restarts, image-major (n = b * R + r), padded to N_pad (more restarts
  of the last image, computed and dropped).
  """

  def __init__(self, problem: program.Problem, mesh, params, ref: np.ndarray, *, restarts: int,
               image_keys: np.ndarray, start: dict | None, mask: np.ndarray | None,
               log: Callable[[str], None]):
    """ref: [B, C', h, w] float32; mask: [B, 1, h, w] or None; params: host generator
    parameters; start: start values (`program.start_from_npz_dict`'s input) or None."""
    self.problem, self.mesh = problem, mesh
    micro_batches = problem.micro_batches
    b = ref.shape[0]
    self.images, self.restarts = b, restarts
    image_index, restart_ids, keys, n_pad = _layout(b, restarts, image_keys, mesh,
                                                    micro_batches)
    n = b * restarts
    self.n, self.n_pad = n, n_pad
    self.num_devices = int(mesh.devices.size)
    if n_pad > n:
      groups = f" x {micro_batches} micro-batches" if micro_batches > 1 else ""
      log(f"{n} restarts ({b} images x {restarts}) padded to {n_pad} rows for "
          f"{self.num_devices} devices{groups}: {n_pad - n} extra restarts are computed and "
          "dropped.")
    rows = {"image_keys": keys.astype(np.uint32), "restart_ids": restart_ids.astype(np.uint32),
            "ref": ref[image_index]}
    if mask is not None:
      rows["mask"] = np.asarray(mask, np.float32)[image_index]
    start_rows = None
    if start is not None:
      st = program.start_from_npz_dict(problem, start, n, b)
      pad = lambda v: np.concatenate([v, v[-1:].repeat(n_pad - n, 0)]) if n_pad > n else v
      start_rows = {"noise": {k: pad(v) for k, v in st["noise"].items()}}
      if "latent" in st:
        start_rows["latent"] = pad(st["latent"])
    dev = sharding.shard_rows(rows, mesh)
    self.ref, self.mask = dev["ref"], dev.get("mask")
    self.init_args = (dev["image_keys"], dev["restart_ids"],
                      sharding.shard_rows(start_rows, mesh) if start_rows is not None else None)
    self.params = sharding.replicate(params, mesh)
    self.fwd = sharding.replicate(problem.forward.arrays(), mesh)
    self.weights = None        # prepared weights (replicated), by `compile_programs`
    self.chunk_fn = self.tail_fn = None
    self.state: program.SearchState | None = None
    self.done = self.resumed_from = 0
    self.kept: rank.KeptFollower | None = None
    self.late_compile_s = 0.0  # the last chunk's program, compiled when reached
    self.images_ended = 0      # images ended at the last chunk whose host work is done

  @property
  def steps(self) -> int:
    """Steps of the whole search (config.steps plus the ILO layers' steps)."""
    return self.problem.total_steps

  def start(self, ckpt: _Checkpoints, log: Callable[[str], None]) -> None:
    """The state to search from: the newest checkpoint's, or the initial draw."""
    trace_host: list[dict] = []
    restored = ckpt.restore(compile.abstract_state(self.problem, self.mesh, *self.init_args),
                            self.n_pad, self.n)
    if restored is not None:
      self.state, trace = restored
      trace_host = [trace] if trace else []
      self.resumed_from = self.done = int(self.state.step)
      log(f"resumed from step {self.resumed_from} of {self.steps} (checkpoint in "
          f"{ckpt.manager.directory})")
    else:
      self.state = compile.init_program(self.problem, self.mesh, *self.init_args)(
          *self.init_args)
    self.kept = rank.KeptFollower(self.n, self.problem.config.eps, trace_host)

  def compile_programs(self) -> float:
    """Prepares the weights (once per search) and compiles the chunk programs: one of
    `chunk_size` steps and, when the steps left are not a multiple of it, one of the exact
    remainder for the last chunk (no masked steps are computed). Returns the seconds taken."""
    t = time.perf_counter()
    self.weights = jax.block_until_ready(
        compile.prepare_program(self.problem.generator, self.mesh)(self.params))
    compile_s = time.perf_counter() - t  # compile + one preparation
    if self.done >= self.steps:
      return compile_s
    args = (self.weights, self.state, self.ref, self.mask, self.fwd)
    self.chunk_fn, chunk_s = compile.chunk_program(self.problem, self.mesh, *args)
    compile_s += chunk_s
    if not self.problem.stops_early:
      compile_s += self._compile_tail()
    return compile_s

  def _compile_tail(self) -> float:
    """Compiles the last chunk's program (the exact remainder of the steps), if there is one;
    the anytime search compiles it only when it gets there. Returns the seconds taken."""
    tail = (self.steps - self.done) % self.problem.chunk_size
    if not tail or self.tail_fn is not None:
      return 0.0
    args = (self.weights, self.state, self.ref, self.mask, self.fwd)
    self.tail_fn, tail_s = compile.chunk_program(
        dataclasses.replace(self.problem, chunk_size=tail), self.mesh, *args)
    return tail_s

  def ended(self) -> bool:
    """Anytime search: whether every image of the batch has ended (reads the current state's
    `ends_at`, waiting for the chunk that made it). Always False otherwise."""
    if not self.problem.stops_early:
      return False
    ends_at = sharding.to_host(self.state.ends_at)[:self.n]
    return bool(np.all(ends_at <= self.done))
  def run_chunk(self, frames: bool, checkpoint_due: Callable[[int, int], bool]) -> _ChunkDone:
    """Dispatches the next chunk (and, if asked, the best-so-far frames and a copy of the state
    to checkpoint when `checkpoint_due(prev, done)`); reads nothing back."""
    chunk_size = self.problem.chunk_size
    if self.steps - self.done < chunk_size:
      self.late_compile_s += self._compile_tail()  # counted as compile, not search, time
    fn = self.tail_fn if self.steps - self.done < chunk_size else self.chunk_fn
    margs = (self.mask,) if self.mask is not None else ()
    self.state, trace = fn(self.weights, self.state, self.ref, self.fwd, *margs)
    prev, self.done = self.done, min(self.done + chunk_size, self.steps)
    frames_dev = self.best_so_far() if frames else None
    snapshot = (jax.tree.map(jnp.copy, self.state) if checkpoint_due(prev, self.done)
                else None)  # a copy: the state is donated to the next chunk
    return _ChunkDone(self.done, trace, self.done - prev, frames_dev, snapshot)

  def best_so_far(self) -> dict:
    """Device arrays {'hr': [B, C, H, W], 'lr', losses} of each image's best restart so far."""
    rows = _best_rows(self.state.best_total, self.state.best_l2, self.problem.config.eps,
                      self.images, self.restarts, self.n)
    rows = jax.device_put(rows, sharding.replicated(self.mesh))
    return self._render_rows(rows, to_host=False)

  def progress_info(self, step: int, elapsed_s: float, frames: dict | None) -> ChunkInfo:
    """The `ChunkInfo` of step `step` from the kept losses followed on the host."""
    b, r = self.images, self.restarts
    bt, bl = self.kept.total.reshape(b, r), self.kept.l2.reshape(b, r)
    top = rank.best_restart(bt, bl, self.problem.config.eps)
    info = ChunkInfo(step, self.steps, bt[np.arange(b), top], bl[np.arange(b), top], elapsed_s,
                     ended=self.images_ended)
    if frames is not None:
      info.frames = {k: sharding.to_host(v) for k, v in frames.items()}
    return info

  def _render_rows(self, rows, to_host: bool = True) -> dict:
    """Renders the best iterate of the given rows (host or device int array [K]) on the
    prepared weights: {'hr': [K, C, H, W], 'lr': [K, C', h, w], losses [K]}."""
    rows_j = (sharding.replicate(np.asarray(rows, np.int32), self.mesh)
              if isinstance(rows, np.ndarray) else rows)
    state = self.state
    sub = program.SearchState(
        step=state.step, vars={}, fixed_noise=_gather(state.fixed_noise, rows_j), opt_state=(),
        best_vars=_gather(state.best_vars, rows_j), best_total=None, best_terms={},
        best_l2=None, best_step=None, min_l2=None, ends_at=None,
        ilo=None if state.ilo is None else state.ilo._replace(
            acts={}, centres={}, opt_state={}, best_acts=_gather(state.ilo.best_acts, rows_j)))
    sub_ref = _gather(self.ref, rows_j)
    sub_mask = _gather(self.mask, rows_j) if self.mask is not None else None
    out = program.render_best_prepared(self.problem, self.weights, sub, sub_ref, sub_mask,
                                       self.fwd)
    return {k: sharding.to_host(v) for k, v in out.items()} if to_host else out

  def result(self, keep: int, timings: dict, selection: str = "diverse") -> SearchResult:
    """Every host's per-restart results gathered, restarts ranked per image, the `keep`
    candidates chosen (`selection`: 'diverse' or 'l2', `search/candidates.py`) and rendered,
    the spread of each image's within-eps restarts mapped (a collective across processes)."""
    b, r, n, state = self.images, self.restarts, self.n, self.state
    eps = self.problem.config.eps
    host = {k: sharding.to_host(v)[:n].reshape(b, r) for k, v in
            (("total", state.best_total), ("l2", state.best_l2),
             ("best_step", state.best_step), ("min_l2", state.min_l2),
             ("ends_at", state.ends_at))}
    terms = {k: sharding.to_host(v)[:n].reshape(b, r) for k, v in state.best_terms.items()}
    within = rank.within_eps(host["l2"], eps)
    ranking = rank.ranking(host["total"], host["l2"], eps)
    kept = self._candidates(ranking, within, keep, selection)
    selected = kept["selected"]
    flat_rows = (np.arange(b)[:, None] * r + selected).reshape(-1)
    images = self._render_rows(flat_rows)
    all_values = {k: sharding.to_host(v)[:n].reshape((b, r) + v.shape[1:])
                  for k, v in program.start_values_of(self.problem, state).items()}
    start_values = {k: v[np.arange(b)[:, None], selected] for k, v in all_values.items()}
    trace = {k: v.reshape(-1, b, r) for k, v in _concat(self.kept.chunks).items()}
    steps_run = np.minimum(host["ends_at"][:, 0], self.done).astype(np.int64)
    return SearchResult(
        total=host["total"], terms=terms, l2=host["l2"], min_l2=host["min_l2"],
        best_step=host["best_step"], within_eps=within, ranking=ranking,
        success_rate=within.mean(axis=1), selected=selected,
        hr=images["hr"].reshape((b, keep) + images["hr"].shape[1:]),
        lr=images["lr"].reshape((b, keep) + images["lr"].shape[1:]),
        start_values=start_values, all_start_values=all_values, trace=trace, timings=timings,
        num_devices=self.num_devices, padded_rows=self.n_pad - n,
        resumed_from_step=self.resumed_from, micro_batches=self.problem.micro_batches,
        num_processes=jax.process_count(), selection=selection, filled=kept["filled"],
        diversity=kept["diversity"], spread=kept["spread"], spread_count=kept["spread_count"],
        spread_mean=kept["spread_mean"], steps_run=steps_run,
        ended_early=steps_run < self.steps, first_within_step=_first_within(trace, eps, b, r),
        **self._ilo_fields())

  def _ilo_fields(self) -> dict:
    """SearchResult's ILO fields (see there) from the state."""
    layers = self.problem.ilo_layers
    if not layers:
      return {}
    b, r, n, st = self.images, self.restarts, self.n, self.state.ilo
    entered = int(ilo.kept_phase(self.problem.ilo_starts, self.state.step))
    moved = {layer: sharding.to_host(ilo.moved(st.best_acts[layer], st.centres[layer]))[:n]
             .reshape(b, r) for layer in layers[:entered]}
    return {"ilo_layers": layers, "ilo_kept_layer": layers[entered - 1] if entered else None,
            "ilo_moved": moved}

  def _candidates(self, ranking: np.ndarray, within: np.ndarray, keep: int,
                  selection: str) -> dict:
    """Renders every restart's kept iterate (one image's restarts at a time, at most
    RENDER_ROWS rows per call) for the image features and the spread map; chooses the kept
    candidates. Returns {'selected': [B, keep], 'filled': [B], 'diversity': [B],
    'spread': [B, H, W], 'spread_count': [B], 'spread_mean': [B]}."""
    if selection not in candidates.SELECTIONS:
      raise ValueError(f"selection must be one of {candidates.SELECTIONS}, got {selection!r}")
    b, r = self.images, self.restarts
    g = self.problem.generator
    side = g.resolution
    out = {"selected": np.zeros((b, keep), np.int64), "filled": np.zeros(b, np.int64),
           "diversity": np.full(b, np.nan), "spread": np.full((b, side, side), np.nan, np.float32),
           "spread_count": np.zeros(b, np.int64), "spread_mean": np.full(b, np.nan)}
    block = min(r, RENDER_ROWS)
    for i in range(b):
      feats, spread = [], candidates.SpreadAccumulator()
      for start in range(0, r, block):
        restarts = np.arange(start, min(start + block, r))
        rows = i * r + np.concatenate([restarts, np.full(block - len(restarts), restarts[-1])])
        hr = self._render_rows(rows)["hr"][:len(restarts)]   # one compiled shape: [block]
        feats.append(candidates.image_features(hr))
        spread.add(hr[within[i, restarts]])
      feats = np.concatenate(feats)
      if selection == "diverse":
        sel, filled = candidates.diverse_selection(feats, ranking[i], within[i], keep)
      else:
        sel, filled = candidates.l2_selection(ranking[i], within[i], keep)
      out["selected"][i], out["filled"][i] = sel, filled
      out["diversity"][i] = candidates.mean_pairwise_distance(feats[sel])
      m = spread.map()
      out["spread_count"][i] = spread.count
      if m is not None:
        out["spread"][i], out["spread_mean"][i] = m, float(m.mean())
    return out


def _first_within(trace: dict, eps: float, b: int, r: int) -> np.ndarray:
  """[B, R] int64: the 1-based step at which each restart's L2 was first <= eps (0: never),
  from the host trace {'L2_raw': [steps, B, R]}."""
  l2 = trace.get("L2_raw")
  if l2 is None or not len(l2):
    return np.zeros((b, r), np.int64)
  hit = rank.within_eps(l2, eps)
  return np.where(hit.any(axis=0), hit.argmax(axis=0) + 1, 0).astype(np.int64)


RENDER_ROWS = 32  # restarts rendered per call when the candidates are chosen


@jax.jit
def _gather(tree, rows):
  return jax.tree.map(lambda a: jnp.take(a, rows, axis=0), tree)


@functools.partial(jax.jit, static_argnames=("eps", "b", "restarts", "n"))
def _best_rows(best_total, best_l2, eps: float, b: int, restarts: int, n: int):
  """[B] row of each image's best restart so far (`rank.best_restart`), on the device (no
  host read). best_total, best_l2: [N_pad]."""
  t = best_total[:n].reshape(b, restarts)
  l2 = best_l2[:n].reshape(b, restarts)
  return jnp.arange(b) * restarts + rank.best_restart(t, l2, eps)


def initial_start_values(generator: Generator, config: SearchConfig, restarts: int,
                         image_keys) -> dict:
  """The random starts a search without `start` draws, in the start-values format.

  {'latent': [B, R, l, D], 'noise_<i>': [B, R, 1, r, r]} (every non-zero noise map) for
  B = len(image_keys) images: restart r of image b starts from row [b, r], a function of
  (config.seed, image_keys[b], r) only. Passing these rows as `start` reproduces the search
  without `start` exactly; `pulse_jax.run --init` fills the restarts it has no row for with
  them.
  """
  b = len(image_keys)
  problem = program.Problem(generator, config, 1)
  keys = np.repeat(np.asarray(image_keys, np.int64), restarts).astype(np.uint32)
  ids = np.tile(np.arange(restarts), b).astype(np.uint32)
  state = program.init_state(problem, keys, ids)
  return {k: np.array(v).reshape((b, restarts) + v.shape[1:])
          for k, v in program.start_values_of(problem, state).items()}


def _checked_forward(generator: Generator, ref: np.ndarray, forward: ForwardModel | None, *,
                     restarts: int, keep: int, checkpoint_every: int,
                     micro_batches: int) -> ForwardModel:
  """Checks `search_images`' arguments (ValueError naming the problem); returns the forward
  model with its factor set. ref: [B, C', h, w] float32."""
  if ref.ndim != 4:
    raise ValueError(f"ref must be [B, C, h, w], got shape {ref.shape}.")
  _, c, h, w = ref.shape
  if h != w or generator.resolution % h:
    valid = [generator.resolution // f for f in range(1, generator.resolution + 1)
             if generator.resolution % f == 0]
    raise ValueError(f"input size {h}x{w} is not square with the generator size "
                     f"{generator.resolution} an integer multiple of it; valid sizes: {valid}.")
  forward = (forward or ForwardModel()).with_factor(generator.resolution // h)
  want_c = forward.target_channels or generator.num_channels
  if c != want_c:
    raise ValueError(f"ref has {c} channels; the forward model makes {want_c}.")
  if restarts < 1 or keep < 1 or keep > restarts:
    raise ValueError(f"need restarts >= 1 and 1 <= keep <= restarts (got {restarts}, {keep}).")
  if not np.all(np.isfinite(ref)):
    raise ValueError("ref contains NaN or infinite values.")
  if checkpoint_every < 0:
    raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}.")
  if micro_batches < 0:
    raise ValueError(f"micro_batches must be >= 0 (0: automatic), got {micro_batches}.")
  return forward


def search_images(generator: Generator, params: dict, ref: np.ndarray, *,
                  config: SearchConfig, restarts: int, image_keys=None, start: dict | None = None,
                  mask: np.ndarray | None = None, keep: int = 1, chunk_size: int = 25,
                  micro_batches: int = 1, memory_budget_bytes: int | None = None,
                  mesh=None, progress: Callable[[ChunkInfo], None] | None = None,
                  frames: bool = False, checkpoint_dir: str | None = None,
                  checkpoint_every: int = 0, log: Callable[[str], None] | None = None,
                  forward: ForwardModel | None = None,
                  warn: Callable[[str], None] | None = None,
                  should_stop: Callable[[], int | None] | None = None,
                  selection: str = "diverse") -> SearchResult:
  """Searches B images with R restarts each, over every device of every process.

  ref: [B, C', h, w] float32 in [0, 1] with H / h an integer factor (C' = the forward model's
  target channels); mask: [B, 1, h, w] known-pixel weights or None; forward: the degradation
  (`pulse_jax.forward.ForwardModel`, its factor set here; default: the reference's bicubic);
  image_keys: [B] ints feeding the restart keys (default 0..B-1); start: start values
  {'latent': [R or B*R, l, D], 'noise_<i>': ...}; keep: HR images returned per input;
  micro_batches: compute each step's restarts in this many sequential groups (peak activation
  memory of N / micro_batches restarts; same results; N is padded to a multiple of
  micro_batches x the device count); 0: the fewest that fit in `memory_budget_bytes` per device
  (`compile.choose_micro_batches`; default budget: 90% of the device's memory limit); mesh: a
  1-D mesh (default: all devices, `sharding.restart_mesh()`); checkpoint_dir and
  checkpoint_every: resume from the newest checkpoint in `checkpoint_dir`, save the full
  state there every `checkpoint_every` steps (at the first chunk end at or past each multiple;
  0: only at the end) and at the end; log: receives notices
  (padding, resuming; default: the `logging` module). progress: called after each chunk with
  a `ChunkInfo`, one chunk behind (chunk k+1 is dispatched before chunk k's progress, frames
  and checkpoint are read: the device never waits for the host); frames: with progress, each
  image's best-so-far HR and LR images in `ChunkInfo.frames`.
  warn: receives warnings (default: the `logging` module): a checkpoint that cannot be saved
  (full or read-only disk, a save hung past `checkpoints.SAVE_TIMEOUT_S`) turns checkpoints
  off for this search, which goes on (single-process; multi-process runs raise). should_stop:
  checked between chunks (default `pulse_jax.runtime.stopping.requested`); when it returns a
  signal number the search saves a checkpoint of the current step (with `checkpoint_dir`) and
  raises `Stopped`. selection: how the `keep` candidates are chosen ('diverse': the best,
  then greedy farthest point among the within-eps restarts; 'l2': the ranking's first).
  Anytime search (config.stop_within > 0): an image ends once that many of its restarts are
  within eps (+ config.stop_extra_steps), exact to the step; the batch stops at the first chunk
  end where all its images have ended (fewer chunks run); a checkpoint is saved there.
  Multi-process: every process calls this with the same arguments; all get the same result.
  """
  log = log or logger.info
  warn = warn or logger.warning
  should_stop = should_stop or stopping.requested
  ref = np.asarray(ref, np.float32)
  forward = _checked_forward(generator, ref, forward, restarts=restarts, keep=keep,
                             checkpoint_every=checkpoint_every, micro_batches=micro_batches)
  b, _, h, _ = ref.shape
  mesh = mesh or sharding.restart_mesh()
  if micro_batches == 0:
    micro_batches = compile.choose_micro_batches(
        generator, params, config, rows=b * restarts, lr_size=h, chunk_size=chunk_size,
        mesh=mesh, with_mask=mask is not None,
        budget_bytes=memory_budget_bytes or compile.device_memory_budget(mesh), log=log,
        forward=forward)
  if config.stop_within > restarts:
    raise ValueError(f"stop_within={config.stop_within} exceeds restarts={restarts}: no image "
                     "could ever end early.")
  layout = {"images": b, "restarts": restarts} if config.stop_within else {}
  problem = program.Problem(generator, config, generator.resolution // h, chunk_size,
                            micro_batches, forward, **layout)
  image_keys = np.arange(b) if image_keys is None else np.asarray(image_keys)
  s = BatchSearch(problem, mesh, params, ref, restarts=restarts, image_keys=image_keys,
                  start=start, mask=mask, log=log)
  ckpt = _Checkpoints(
      checkpoint_dir,
      lambda: _settings(problem, params, ref, mask, restarts, image_keys, start), warn)
  return _run(s, ckpt, keep=keep, log=log, progress=progress, frames=frames,
              checkpoint_every=checkpoint_every, should_stop=should_stop, selection=selection)


def _run(s: BatchSearch, ckpt: _Checkpoints, *, keep: int, log: Callable[[str], None],
         progress: Callable[[ChunkInfo], None] | None, frames: bool, checkpoint_every: int,
         should_stop: Callable[[], int | None], selection: str = "diverse") -> SearchResult:
  """The chunk loop of `search_images`: chunk k+1 is dispatched before chunk k's host work
  (progress, frames, checkpoint), so the device never waits for the host; stop requests are
  checked between chunks (then the state at that step is checkpointed and `Stopped` raised)."""
  t0 = time.perf_counter()
  s.start(ckpt, log)
  compile_s = s.compile_programs()
  search_t = time.perf_counter()
  steps = s.steps
  due = lambda prev, done: ckpt.due(prev, done, steps, checkpoint_every)

  def host_work(chunk: _ChunkDone) -> None:
    """Progress, frames and checkpoint of one finished chunk (reads its device arrays)."""
    s.kept.add(_trace_to_host(chunk.trace, chunk.active, s.n))
    if "running" in chunk.trace:  # [chunk, N_pad] bool: which rows ran each step
      running = sharding.to_host(chunk.trace["running"])[chunk.active - 1, :s.n]
      s.images_ended = int(np.sum(~running.reshape(s.images, s.restarts).any(axis=1)))
    if chunk.snapshot is not None:  # written in the background (orbax async)
      ckpt.save(chunk.step, chunk.snapshot, _concat(s.kept.chunks), s.n_pad, blocking=False)
    if progress is not None:
      progress(s.progress_info(chunk.step, time.perf_counter() - search_t, chunk.frames))

  stop = pending = None
  while s.done < steps:
    stop = should_stop()
    if stop is not None:  # between chunks: the state is at step `s.done`
      break
    if s.ended():  # anytime search: every image has ended
      log(f"all {s.images} image(s) of the batch ended by step {s.done} of {steps} "
          f"(--stop_within={s.problem.config.stop_within})")
      break
    chunk = s.run_chunk(frames=progress is not None and frames, checkpoint_due=due)
    if pending is not None:
      host_work(pending)
    pending = chunk
  if pending is not None:
    host_work(pending)
  ended_early = stop is None and s.done < steps
  if ((stop is not None or ended_early) and ckpt.on and s.done > s.resumed_from
      and ckpt.saved_step != s.done):
    # the state is not donated again: no copy
    ckpt.save(s.done, s.state, _concat(s.kept.chunks), s.n_pad, blocking=True)
  ckpt.wait()
  if stop is not None:
    raise ckpt.stopped(stop, s.done, steps)
  jax.block_until_ready(s.state)
  search_s = time.perf_counter() - search_t - s.late_compile_s
  ran = max(s.done - s.resumed_from, 0)
  result = s.result(keep, timings={
      "compile_s": compile_s + s.late_compile_s, "search_s": search_s,
      "init_s": search_t - t0 - compile_s, "steps": s.done,
      "restart_steps_per_s": s.n * ran / max(search_s, 1e-9),
      "row_steps": s.n_pad * ran}, selection=selection)
  result.timings["restart_steps"] = int(
      np.sum(np.maximum(result.steps_run - s.resumed_from, 0)) * s.restarts)
  return result
