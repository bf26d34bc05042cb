"""Runs the compiled search on a batch of images: placement, chunks, progress, resume, results.

`search_images` is the library entry point behind `python -m pulse_jax.run`. It
  - lays out N = B images x R restarts over a 1-D mesh of every device of every process
    (padded to a multiple of the device count; the extra rows are dropped and logged),
  - compiles the chunk program once per problem shape (cached: a second batch of the same
    shape and options does not recompile),
  - runs the chunks, reporting progress and optional best-so-far frames,
  - saves/restores the full state with orbax every `checkpoint_every` steps,
  - gathers every host's per-restart results, ranks restarts per image and renders the best.
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
from jax.sharding import NamedSharding, PartitionSpec as P

from pulse_jax.search import program as search
from pulse_jax.runtime import sharding
from pulse_jax.generators import Generator
from pulse_jax.forward import ForwardModel
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
  trace: name -> [steps, B, R] losses at each step (before its update); failed: [B, R] bool,
  restarts whose losses were never finite (best_step 0, total inf): ranked last.
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


class Stopped(Exception):
  """The search stopped early on a stop request (`pulse_jax.runtime.stopping`: SIGTERM, SIGINT).

  signum: the signal; step: the steps done; checkpoint: the directory holding a checkpoint
  of that step (the same search resumes from it), or None."""

  def __init__(self, signum: int, step: int, steps: int, checkpoint: str | None,
               why_none: str = "no --checkpoint_dir"):
    from pulse_jax.runtime import stopping
    self.signum, self.step, self.steps, self.checkpoint = signum, step, steps, checkpoint
    where = f"checkpoint saved in {checkpoint}" if checkpoint else f"no checkpoint: {why_none}"
    super().__init__(f"stopped by {stopping.name(signum)} at step {step}/{steps} ({where})")


_COMPILED: dict = {}
compile_count = 0  # number of chunk programs compiled by this process (for tests and reports)


def _signature(tree) -> tuple:
  return tuple((tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", None)))
               for x in jax.tree.leaves(tree))


def _abstract_state(problem: search.Problem, mesh, keys, ids, start):
  """The initial `SearchState` as `jax.ShapeDtypeStruct`s with the chunk's shardings."""
  state = jax.eval_shape(functools.partial(search.init_state, problem), keys, ids, start)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, sharding.state_shardings(state, mesh))


def _init_program(problem: search.Problem, mesh, keys, ids, start):
  """`search.init_state` jitted with the state laid out as the chunk expects (cached)."""
  key = ("init", problem, sharding.mesh_key(mesh), _signature((keys, ids, start)))
  if key not in _COMPILED:
    out = jax.tree.map(lambda a: a.sharding, _abstract_state(problem, mesh, keys, ids, start))
    _COMPILED[key] = jax.jit(functools.partial(search.init_state, problem), out_shardings=out)
  return _COMPILED[key]


def _prepare_program(generator: Generator, mesh):
  """`generator.prepare` jitted, its output replicated (cached): the run-time weights are
  computed once per search, not once per chunk."""
  key = ("prepare", generator, sharding.mesh_key(mesh))
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(generator.prepare, out_shardings=sharding.replicated(mesh))
  return _COMPILED[key]


def _abstract_prepared(generator: Generator, params, mesh):
  rep = sharding.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                      jax.eval_shape(generator.prepare, params))


def _chunk_program(problem: search.Problem, mesh, weights, state, ref, mask, fwd=None,
                   prepared: bool = True):
  """(compiled chunk, compile seconds) for these (concrete or abstract) arguments, cached.

  weights: the prepared weights (`generator.prepare(params)`), or with prepared=False the
  stored parameters (prepared inside the program, once per chunk: the old way, kept for the
  benchmark). Explicit shardings in and out: state rows on 'restarts', weights and scalars
  replicated, the trace [chunk, N] on 'restarts' along N; the state is donated. The compiled
  program has no cross-device communication (tests/test_sharding.py reads its HLO).
  """
  global compile_count
  fwd = {} if fwd is None else fwd
  args = (weights, state, ref, fwd) + ((mask,) if mask is not None else ())
  key = ("chunk", problem, prepared, sharding.mesh_key(mesh), _signature(args))
  if key not in _COMPILED:
    t = time.perf_counter()
    rows, rep = sharding.rows_sharding(mesh), sharding.replicated(mesh)
    state_sh = sharding.state_shardings(state, mesh)
    run = search.run_chunk_prepared if prepared else search.run_chunk
    fn = lambda weights, state, ref, fwd, mask=None: run(problem, weights, state, ref, mask, fwd)
    trace_shape = jax.eval_shape(fn, *args)[1]
    trace_sh = jax.tree.map(
        lambda x: NamedSharding(mesh, P(None, sharding.AXIS)) if x.ndim == 2 else rep, trace_shape)
    jitted = jax.jit(fn, in_shardings=(rep, state_sh, rows, rep)
                     + ((rows,) if mask is not None else ()),
                     out_shardings=(state_sh, trace_sh), donate_argnums=(1,))
    _COMPILED[key] = (jitted.lower(*args).compile(), time.perf_counter() - t)
    compile_count += 1
  return _COMPILED[key]


def compiled_chunk(generator: Generator, params, config: SearchConfig, *, rows: int, lr_size: int,
                   chunk_size: int = 25, micro_batches: int = 1, mesh=None,
                   with_mask: bool = False, forward: ForwardModel | None = None):
  """The compiled chunk `search_images` runs, from shapes only (nothing is allocated).

  params: the parameter tree, concrete or `jax.ShapeDtypeStruct`s; rows: N restarts in all
  (padded to a multiple of the device count x micro_batches here). For inspection:
  `.as_text()` (HLO), `.memory_analysis()` (bytes per device).
  """
  mesh = mesh or sharding.restart_mesh()
  factor = generator.resolution // lr_size
  forward = (forward or ForwardModel()).with_factor(factor)
  problem = search.Problem(generator, config, factor, chunk_size, micro_batches, forward)
  n = sharding.padded_count(rows, mesh, micro_batches)
  rows_sh, rep = sharding.rows_sharding(mesh), sharding.replicated(mesh)
  ids = jax.ShapeDtypeStruct((n,), jnp.uint32, sharding=rows_sh)
  state = _abstract_state(problem, mesh, ids, ids, None)
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), params)
  c = problem.lr_channels
  ref = jax.ShapeDtypeStruct((n, c, lr_size, lr_size), jnp.float32, sharding=rows_sh)
  mask = (jax.ShapeDtypeStruct((n, 1, lr_size, lr_size), jnp.float32, sharding=rows_sh)
          if with_mask else None)
  fwd = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                     forward.arrays())
  prepared = _abstract_prepared(generator, params, mesh)
  return _chunk_program(problem, mesh, prepared, state, ref, mask, fwd)[0]


def device_memory_budget(mesh, fraction: float = 0.9) -> int | None:
  """`fraction` of the smallest memory limit among this process's devices of `mesh` (bytes),
  or None where the backend does not report one (the CPU)."""
  limits = []
  for d in mesh.devices.flat:
    if d.process_index != jax.process_index():
      continue
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if not stats or not stats.get("bytes_limit"):
      return None
    limits.append(int(stats["bytes_limit"]))
  return int(min(limits) * fraction) if limits else None


def program_bytes(compiled) -> int:
  """Device bytes a compiled program needs: temporaries + arguments + outputs not aliased."""
  m = compiled.memory_analysis()
  return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)


def choose_micro_batches(generator: Generator, params, config: SearchConfig, *, rows: int,
                         lr_size: int, chunk_size: int, mesh, with_mask: bool,
                         budget_bytes: int | None, log: Callable[[str], None],
                         forward: ForwardModel | None = None) -> int:
  """The fewest micro-batches whose compiled chunk fits in `budget_bytes` per device.

  Only divisors of the rows per device are tried (no extra padding), fewest first; each try
  compiles the chunk (cached: the chosen one is the program the search then runs). Without a
  budget (a backend that reports no memory limit, and none given) the answer is 1.
  """
  if budget_bytes is None:
    return 1
  per_device = sharding.padded_count(rows, mesh) // mesh.devices.size
  divisors = [g for g in range(1, per_device + 1) if per_device % g == 0]
  g = 1
  while True:
    need = program_bytes(compiled_chunk(generator, params, config, rows=rows, lr_size=lr_size,
                                        chunk_size=chunk_size, micro_batches=g, mesh=mesh,
                                        with_mask=with_mask, forward=forward))
    if need <= budget_bytes:
      if g > 1:
        log(f"micro-batches: {g} ({per_device // g} restarts at a time per device; the chunk "
            f"needs {need / 2**30:.1f} GiB of the {budget_bytes / 2**30:.1f} GiB budget).")
      return g
    if g == per_device:
      raise ValueError(
          f"The search does not fit in {budget_bytes / 2**30:.1f} GiB per device even one "
          f"restart at a time (needs {need / 2**30:.1f} GiB). Use --compute_dtype=bfloat16, "
          "a smaller generator, or a device with more memory.")
    want = -(-g * need // budget_bytes)  # activation memory shrinks about as 1 / g
    g = next(d for d in divisors if d > g and d >= min(want, per_device))


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


def _rank(within: np.ndarray, total: np.ndarray, l2: np.ndarray) -> np.ndarray:
  """[B, R] restart indices, best first: within eps first, then lowest total, then lowest L2.

  (Within eps the clamped L2 term ties, so the total alone would not order by fit.) NaN last.
  """
  t = np.where(np.isfinite(total), total, np.inf)
  d = np.where(np.isfinite(l2), l2, np.inf)
  return np.lexsort((d, t, ~within), axis=-1)


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


def _settings(problem: search.Problem, params, ref, mask, restarts: int, image_keys,
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


def _trace_to_host(pending: list, n: int) -> list[dict]:
  """Device traces [(trace {name: [chunk, N_pad]}, active steps)] -> host {name: [active, n]}."""
  return [{k: sharding.to_host(v)[:active, :n] for k, v in trace.items() if k != "active"}
          for trace, active in pending]


def _concat(chunks: list[dict]) -> dict:
  return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]} if chunks else {}


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
  problem = search.Problem(generator, config, 1)
  keys = np.repeat(np.asarray(image_keys, np.int64), restarts).astype(np.uint32)
  ids = np.tile(np.arange(restarts), b).astype(np.uint32)
  state = search.init_state(problem, keys, ids)
  return {k: np.array(v).reshape((b, restarts) + v.shape[1:])
          for k, v in search.start_values_of(problem, state).items()}


def search_images(generator: Generator, params: dict, ref: np.ndarray, *,
                  config: SearchConfig, restarts: int, image_keys=None, start: dict | None = None,
                  mask: np.ndarray | None = None, keep: int = 1, chunk_size: int = 25,
                  micro_batches: int = 1, memory_budget_bytes: int | None = None,
                  mesh=None, progress: Callable[[ChunkInfo], None] | None = None,
                  frames: bool = False, checkpoint_dir: str | None = None,
                  checkpoint_every: int = 0, log: Callable[[str], None] | None = None,
                  forward: ForwardModel | None = None, overlap: bool = True,
                  warn: Callable[[str], None] | None = None,
                  should_stop: Callable[[], int | None] | None = None) -> SearchResult:
  """Searches B images with R restarts each, over every device of every process.

  ref: [B, C', h, w] float32 in [0, 1] with H / h an integer factor (C' = the forward model's
  target channels); mask: [B, 1, h, w] known-pixel weights or None; forward: the degradation
  (`pulse_jax.forward.ForwardModel`, its factor set here; default: the reference's bicubic);
  image_keys: [B] ints feeding the restart keys (default 0..B-1); start: start values
  {'latent': [R or B*R, l, D], 'noise_<i>': ...}; keep: HR images returned per input;
  micro_batches: compute each step's restarts in this many sequential groups (peak activation
  memory of N / micro_batches restarts; same results; N is padded to a multiple of
  micro_batches x the device count); 0: the fewest that fit in `memory_budget_bytes` per device
  (`choose_micro_batches`; default budget: 90% of the device's memory limit); mesh: a 1-D mesh
  (default: all devices, `sharding.restart_mesh()`); checkpoint_dir and checkpoint_every:
  resume from the newest checkpoint in `checkpoint_dir`, save the full
  state there every `checkpoint_every` steps (at the first chunk end at or past each multiple;
  0: only at the end) and at the end; log: receives notices
  (padding, resuming; default: the `logging` module). overlap: dispatch chunk k+1 before
  reading chunk k's progress, frames and checkpoint (the device never waits for the host;
  progress is reported one chunk behind) on weights prepared once per search; False: the
  old synchronous loop, weights prepared in every chunk (kept to measure the difference).
  warn: receives warnings (default: the `logging` module): a checkpoint that cannot be saved
  (full or read-only disk, a save hung past `resume.SAVE_TIMEOUT_S`) turns checkpoints off for
  this search, which goes on (single-process; multi-process runs raise). should_stop: checked
  between chunks (default `pulse_jax.runtime.stopping.requested`); when it returns a signal number the
  search saves a checkpoint of the current step (with `checkpoint_dir`) and raises `Stopped`.
  Multi-process: every process calls this with the same arguments; all get the same result.
  """
  from pulse_jax.runtime import checkpoints as resume
  from pulse_jax.runtime import stopping
  log = log or logger.info
  warn = warn or logger.warning
  should_stop = should_stop or stopping.requested
  ref = np.asarray(ref, np.float32)
  if ref.ndim != 4:
    raise ValueError(f"ref must be [B, C, h, w], got shape {ref.shape}.")
  b, c, h, w = ref.shape
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
  mesh = mesh or sharding.restart_mesh()
  if micro_batches == 0:
    micro_batches = choose_micro_batches(
        generator, params, config, rows=b * restarts, lr_size=h, chunk_size=chunk_size,
        mesh=mesh, with_mask=mask is not None,
        budget_bytes=memory_budget_bytes or device_memory_budget(mesh), log=log, forward=forward)
  problem = search.Problem(generator, config, generator.resolution // h, chunk_size,
                           micro_batches, forward)
  image_keys = np.arange(b) if image_keys is None else np.asarray(image_keys)
  image_index, restart_ids, keys, n_pad = _layout(b, restarts, image_keys, mesh, micro_batches)
  n = b * restarts
  num_devices = int(mesh.devices.size)
  if n_pad > n:
    groups = f" x {micro_batches} micro-batches" if micro_batches > 1 else ""
    log(f"{n} restarts ({b} images x {restarts}) padded to {n_pad} rows for {num_devices} "
        f"devices{groups}: {n_pad - n} extra restarts are computed and dropped.")

  rows = {"image_keys": keys.astype(np.uint32), "restart_ids": restart_ids.astype(np.uint32),
          "ref": ref[image_index]}
  if mask is not None:
    rows["mask"] = np.asarray(mask, np.float32)[image_index]
  start_rows = None
  if start is not None:
    st = search.start_from_npz_dict(problem, start, n, b)
    pad = lambda v: np.concatenate([v, v[-1:].repeat(n_pad - n, 0)]) if n_pad > n else v
    start_rows = {"noise": {k: pad(v) for k, v in st["noise"].items()}}
    if "latent" in st:
      start_rows["latent"] = pad(st["latent"])
  dev = sharding.shard_rows(rows, mesh)
  dev_start = sharding.shard_rows(start_rows, mesh) if start_rows is not None else None
  mask_dev = dev.get("mask")
  manager = None
  single = jax.process_count() == 1

  def checkpoints_off(e: Exception) -> None:
    """A checkpoint failure: checkpoints off for this search (it goes on), or raise."""
    nonlocal manager
    manager = None
    if not single:  # the processes would disagree about the next save
      raise e
    warn(f"warning: checkpoints disabled for this batch: {e}")

  if checkpoint_dir:
    try:
      manager = resume.SearchCheckpoints(  # raises here when the settings differ
          checkpoint_dir, _settings(problem, params, ref, mask, restarts, image_keys, start),
          log=warn)
    except OSError as e:  # cannot create or list the directory (read-only, full disk)
      checkpoints_off(resume.CheckpointError(
          f"{checkpoint_dir} cannot be used: {type(e).__name__}: {e}"))
  params = sharding.replicate(params, mesh)
  fwd = sharding.replicate(forward.arrays(), mesh)

  t0 = time.perf_counter()
  keys_ids = (dev["image_keys"], dev["restart_ids"], dev_start)
  state = None
  resumed_from = 0
  trace_host: list[dict] = []
  if manager is not None:
    restored = manager.restore_latest(_abstract_state(problem, mesh, *keys_ids), n_pad, n)
    if restored is not None:
      state, trace = restored
      trace_host = [trace] if trace else []
      resumed_from = int(state.step)
      log(f"resumed from step {resumed_from} of {config.steps} (checkpoint in "
          f"{manager.directory})")
  if state is None:
    state = _init_program(problem, mesh, *keys_ids)(*keys_ids)

  steps = config.steps
  compile_s = 0.0
  done = resumed_from
  weights, weights_prepared = params, False
  if done < steps:
    if overlap:
      t = time.perf_counter()
      weights = jax.block_until_ready(_prepare_program(generator, mesh)(params))
      weights_prepared = True
      compile_s += time.perf_counter() - t  # compile + one preparation, before the loop
    chunk_fn, chunk_compile_s = _chunk_program(problem, mesh, weights, state, dev["ref"],
                                               mask_dev, fwd, prepared=overlap)
    compile_s += chunk_compile_s
    tail = (steps - done) % chunk_size
    if tail and overlap:  # the last chunk runs exactly the steps left: no masked steps
      tail_fn, tail_compile_s = _chunk_program(dataclasses.replace(problem, chunk_size=tail),
                                               mesh, weights, state, dev["ref"], mask_dev, fwd)
      compile_s += tail_compile_s
    margs = (mask_dev,) if mask_dev is not None else ()
  search_t = time.perf_counter()
  tracker = _KeptTracker(n, config.eps, trace_host)
  deferred = None  # chunk k's host work, done after chunk k+1 is dispatched

  saved_step = resumed_from if manager is not None and resumed_from else -1

  def save(k_done, snapshot, blocking):
    nonlocal saved_step
    if manager is None:
      return
    try:
      manager.save(k_done, snapshot, _concat(tracker.chunks), n_pad, blocking=blocking)
      saved_step = k_done
    except resume.CheckpointError as e:
      checkpoints_off(e)

  def host_work(item):
    """Progress, frames and checkpoint of one finished chunk (reads its device arrays)."""
    k_done, trace, frames_dev, snapshot = item
    tracker.add(_trace_to_host([trace], n))
    if snapshot is not None:  # overlap: a copy, written in the background (orbax async)
      save(k_done, snapshot, blocking=not overlap)
    if progress is not None:
      bt, bl = (a.reshape(b, restarts) for a in tracker.kept())
      top = _rank(bl <= config.eps, bt, bl)[:, 0]
      info = ChunkInfo(k_done, steps, bt[np.arange(b), top], bl[np.arange(b), top],
                       time.perf_counter() - search_t)
      if frames_dev is not None:
        info.frames = {k: sharding.to_host(v) for k, v in frames_dev.items()}
      progress(info)

  stop = None
  while done < steps:
    stop = should_stop()
    if stop is not None:  # between chunks: the state is at step `done`
      break
    fn = tail_fn if overlap and steps - done < chunk_size else chunk_fn
    state, trace = fn(weights, state, dev["ref"], fwd, *margs)
    prev, done = done, min(done + chunk_size, steps)
    frames_dev = snapshot = None
    if progress is not None and frames:  # dispatched now, read one chunk later
      frames_dev = _render_top(problem, weights, state, dev["ref"], mask_dev, fwd, b,
                               restarts, n, mesh, prepared=overlap)
    if manager is not None and (done == steps or (
        checkpoint_every and done // checkpoint_every > prev // checkpoint_every)):
      snapshot = jax.tree.map(jnp.copy, state) if overlap else state  # state is donated next
    item = (done, (trace, done - prev), frames_dev, snapshot)
    if not overlap:
      host_work(item)
      continue
    if deferred is not None:
      host_work(deferred)
    deferred = item
  if deferred is not None:
    host_work(deferred)
  if stop is not None and manager is not None and done > resumed_from and saved_step != done:
    save(done, state, blocking=True)  # the state is not donated again: no copy
  if manager is not None:
    try:
      manager.wait_until_finished()
    except resume.CheckpointError as e:
      checkpoints_off(e)
  if stop is not None:
    saved = manager is not None and saved_step == done and done > 0
    raise Stopped(stop, done, steps, manager.directory if saved else None,
                  "no --checkpoint_dir" if not checkpoint_dir else "nothing searched yet"
                  if done == 0 else "checkpoints disabled for this batch")
  trace_host = tracker.chunks
  jax.block_until_ready(state)
  search_s = time.perf_counter() - search_t

  # The best-of-N over every device and host: per-restart results gathered, ranked on the host.
  host = {k: sharding.to_host(v)[:n].reshape(b, restarts) for k, v in
          (("total", state.best_total), ("l2", state.best_l2), ("best_step", state.best_step),
           ("min_l2", state.min_l2))}
  terms = {k: sharding.to_host(v)[:n].reshape(b, restarts) for k, v in state.best_terms.items()}
  within = host["l2"] <= config.eps
  ranking = _rank(within, host["total"], host["l2"])
  selected = ranking[:, :keep]
  flat_rows = (np.arange(b)[:, None] * restarts + selected).reshape(-1)
  images = _render_rows(problem, weights, state, dev["ref"], mask_dev, fwd, flat_rows, mesh,
                        prepared=weights_prepared)
  all_values = {k: sharding.to_host(v)[:n].reshape((b, restarts) + v.shape[1:])
                for k, v in search.start_values_of(problem, state).items()}
  start_values = {k: v[np.arange(b)[:, None], selected] for k, v in all_values.items()}
  trace = {k: v.reshape(-1, b, restarts) for k, v in _concat(trace_host).items()}
  return SearchResult(
      total=host["total"], terms=terms, l2=host["l2"], min_l2=host["min_l2"],
      best_step=host["best_step"], within_eps=within, ranking=ranking,
      success_rate=within.mean(axis=1), selected=selected,
      hr=images["hr"].reshape((b, keep) + images["hr"].shape[1:]),
      lr=images["lr"].reshape((b, keep) + images["lr"].shape[1:]),
      start_values=start_values, all_start_values=all_values, trace=trace,
      timings={"compile_s": compile_s, "search_s": search_s,
               "init_s": search_t - t0 - compile_s, "steps": steps,
               "restart_steps_per_s": n * max(steps - resumed_from, 0) / max(search_s, 1e-9)},
      num_devices=num_devices, padded_rows=n_pad - n, resumed_from_step=resumed_from,
      micro_batches=micro_batches,
      num_processes=jax.process_count())


@jax.jit
def _gather(tree, rows):
  return jax.tree.map(lambda a: jnp.take(a, rows, axis=0), tree)


def _render_rows(problem, weights, state, ref, mask, fwd, rows, mesh, prepared: bool = False,
                 to_host: bool = True) -> dict:
  """Renders the best iterate of the given rows (frames, the final best-of-N gather).

  rows: host or device int array; weights: prepared weights (prepared=True) or parameters."""
  rows_j = (sharding.replicate(np.asarray(rows, np.int32), mesh) if isinstance(rows, np.ndarray)
            else rows)
  sub = search.SearchState(
      step=state.step, vars={}, fixed_noise=_gather(state.fixed_noise, rows_j), opt_state=(),
      best_vars=_gather(state.best_vars, rows_j), best_total=None, best_terms={}, best_l2=None,
      best_step=None, min_l2=None)
  sub_ref = _gather(ref, rows_j)
  sub_mask = _gather(mask, rows_j) if mask is not None else None
  render = search.render_best_prepared if prepared else search.render_best
  out = render(problem, weights, sub, sub_ref, sub_mask, fwd)
  return {k: sharding.to_host(v) for k, v in out.items()} if to_host else out


@functools.partial(jax.jit, static_argnames=("eps", "b", "restarts", "n"))
def _top_rows(best_total, best_l2, eps: float, b: int, restarts: int, n: int):
  """[B] row of each image's best restart so far (within eps first, then lowest total), on
  the device (no host read)."""
  t = best_total[:n].reshape(b, restarts)
  l2 = best_l2[:n].reshape(b, restarts)
  t = jnp.where(jnp.isfinite(t), t, jnp.inf)
  within = l2 <= eps
  key = jnp.where(within.any(axis=1, keepdims=True), jnp.where(within, t, jnp.inf), t)
  return jnp.arange(b) * restarts + jnp.argmin(key, axis=1)


def _render_top(problem, weights, state, ref, mask, fwd, b, restarts, n, mesh, prepared):
  """Device arrays {'hr', 'lr', ...} of each image's best restart so far (frames)."""
  rows = _top_rows(state.best_total, state.best_l2, problem.config.eps, b, restarts, n)
  rows = jax.device_put(rows, sharding.replicated(mesh))
  return _render_rows(problem, weights, state, ref, mask, fwd, rows, mesh, prepared,
                      to_host=False)


class _KeptTracker:
  """The kept iterate's total and L2 per restart, followed on the host from the traces (the
  rule of `search._better`), so progress needs no read of the device state."""

  def __init__(self, n: int, eps: float, chunks: list[dict]):
    self.eps = eps
    self.total = np.full(n, np.inf)
    self.l2 = np.full(n, np.inf)
    self.chunks: list[dict] = []
    for c in chunks:
      self.add([c])

  def add(self, chunks: list[dict]) -> None:
    for c in chunks:
      self.chunks.append(c)
      for total, l2 in zip(c.get("TOTAL", ()), c.get("L2_raw", ())):
        within, kept_within = l2 <= self.eps, self.l2 <= self.eps
        better = (np.isfinite(total) & np.isfinite(l2)
                  & ((within & ~kept_within) | ((within == kept_within) & (total < self.total))))
        self.total = np.where(better, total, self.total)
        self.l2 = np.where(better, l2, self.l2)

  def kept(self) -> tuple[np.ndarray, np.ndarray]:
    return self.total, self.l2
