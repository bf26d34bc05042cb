"""Runs the compiled search on a batch of images: placement, chunks, progress, resume, results.

`search_images` is the library entry point behind `python -m pulse_jax.run`. It
  - lays out N = B images x R restarts (padded to a multiple of the device count),
  - compiles the chunk program once per problem shape (cached: a second batch of the same
    shape and options does not recompile),
  - runs the chunks, reporting progress and optional best-so-far frames,
  - saves/restores the full state with orbax every `checkpoint_every` steps,
  - ranks restarts per image and renders the best ones.
A restart's result depends only on (seed, image key, restart index).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import search, sharding
from pulse_jax.generators import Generator
from pulse_jax.search_config import SearchConfig


@dataclasses.dataclass
class SearchResult:
  """Host results for B images x R restarts (K = images kept per input).

  total, l2, min_l2: [B, R] float32 (l2: unclamped L2 of the best iterate); terms: name -> [B, R];
  best_step: [B, R] int (1-based); within_eps: [B, R] bool; ranking: [B, R] restart indices,
  best first (within eps first, then lowest total loss); success_rate: [B];
  hr: [B, K, C, H, W], lr: [B, K, C, h, w] float32 in [0, 1] of the K best restarts (`selected`
  [B, K]); start_values: {'latent': [B, K, l, D], 'noise_<i>': [B, K, 1, r, r]};
  trace: name -> [steps, B, R] losses at each step (before its update).
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


@dataclasses.dataclass
class ChunkInfo:
  """What `progress` receives after each chunk."""
  step: int
  steps: int
  best_total: np.ndarray       # [B] best total loss over restarts so far
  best_l2: np.ndarray          # [B] unclamped L2 of that iterate
  elapsed_s: float
  frames: dict | None = None   # {'hr': [B, C, H, W], 'lr': [B, C, h, w]} best-so-far, if asked


_COMPILED: dict = {}
compile_count = 0  # number of chunk programs compiled by this process (for tests and reports)


def _compiled(fn, key, *args, **kw):
  global compile_count
  if key not in _COMPILED:
    t = time.perf_counter()
    _COMPILED[key] = (fn.lower(*args, **kw).compile(), time.perf_counter() - t)
    compile_count += 1
  return _COMPILED[key]


def _signature(tree) -> tuple:
  return tuple((tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", None)))
               for x in jax.tree.leaves(tree))


def _layout(num_images: int, restarts: int, image_keys, mesh) -> tuple[np.ndarray, ...]:
  n = num_images * restarts
  n_pad = sharding.padded_count(n, mesh)
  image_index = np.repeat(np.arange(num_images), restarts)
  restart_ids = np.tile(np.arange(restarts), num_images)
  if n_pad > n:  # extra rows: more restarts of the last image, computed and then dropped
    image_index = np.concatenate([image_index, np.full(n_pad - n, num_images - 1)])
    restart_ids = np.concatenate([restart_ids, restarts + np.arange(n_pad - n)])
  keys = np.asarray(image_keys, np.int64)[image_index]
  return image_index, restart_ids, keys, n_pad


def _rank(within: np.ndarray, total: np.ndarray) -> np.ndarray:
  """[B, R] restart indices, best first: within eps first, then lowest total (NaN last)."""
  t = np.where(np.isfinite(total), total, np.inf)
  return np.lexsort((t, ~within), axis=-1)


def _fingerprint(problem: search.Problem, ref: np.ndarray, restarts: int, image_keys, start) -> str:
  import hashlib
  h = hashlib.sha256()
  h.update(repr((problem, restarts, list(map(int, image_keys)))).encode())
  h.update(np.ascontiguousarray(ref, np.float32).tobytes())
  for k in sorted(start or {}):
    h.update(k.encode())
    h.update(np.ascontiguousarray(start[k], np.float32).tobytes())
  return h.hexdigest()


def search_images(generator: Generator, params: dict, ref: np.ndarray, *,
                  config: SearchConfig, restarts: int, image_keys=None, start: dict | None = None,
                  mask: np.ndarray | None = None, keep: int = 1, chunk_size: int = 25,
                  mesh=None, progress: Callable[[ChunkInfo], None] | None = None,
                  frames: bool = False, checkpoint_dir: str | None = None,
                  checkpoint_every: int = 0) -> SearchResult:
  """Searches B images with R restarts each.

  ref: [B, C, h, w] float32 in [0, 1] with H / h an integer factor; mask: [B, 1, h, w] or None;
  image_keys: [B] ints feeding the restart keys (default 0..B-1); start: start values
  {'latent': [R or B*R, l, D], 'noise_<i>': ...}; keep: HR images returned per input.
  """
  ref = np.asarray(ref, np.float32)
  if ref.ndim != 4:
    raise ValueError(f"ref must be [B, C, h, w], got shape {ref.shape}.")
  b, c, h, w = ref.shape
  if h != w or generator.resolution % h:
    valid = [generator.resolution // f for f in range(1, generator.resolution + 1)
             if generator.resolution % f == 0]
    raise ValueError(f"input size {h}x{w} is not square with the generator size "
                     f"{generator.resolution} an integer multiple of it; valid sizes: {valid}.")
  if c != generator.num_channels:
    raise ValueError(f"ref has {c} channels; the generator makes {generator.num_channels}.")
  if restarts < 1 or keep < 1 or keep > restarts:
    raise ValueError(f"need restarts >= 1 and 1 <= keep <= restarts (got {restarts}, {keep}).")
  if not np.all(np.isfinite(ref)):
    raise ValueError("ref contains NaN or infinite values.")
  problem = search.Problem(generator, config, generator.resolution // h, chunk_size)
  mesh = mesh or sharding.restart_mesh()
  image_keys = np.arange(b) if image_keys is None else np.asarray(image_keys)
  image_index, restart_ids, keys, n_pad = _layout(b, restarts, image_keys, mesh)
  n = b * restarts

  rows = {"image_keys": keys.astype(np.uint32), "restart_ids": restart_ids.astype(np.uint32),
          "ref": ref[image_index]}
  if mask is not None:
    rows["mask"] = np.asarray(mask, np.float32)[image_index]
  start_rows = None
  if start is not None:
    st = search.start_from_npz_dict(problem, start, n, b)
    start_rows = {"noise": {k: np.concatenate([v, v[-1:].repeat(n_pad - n, 0)]) if n_pad > n else v
                            for k, v in st["noise"].items()}}
    if "latent" in st:
      v = st["latent"]
      start_rows["latent"] = np.concatenate([v, v[-1:].repeat(n_pad - n, 0)]) if n_pad > n else v
  dev = sharding.shard_rows(rows, mesh)
  dev_start = sharding.shard_rows(start_rows, mesh) if start_rows is not None else None
  params = sharding.replicate(params, mesh)
  mask_dev = dev.get("mask")

  t0 = time.perf_counter()
  state = search.init_state(problem, dev["image_keys"], dev["restart_ids"], dev_start)
  resumed_from = 0
  manager = None
  fingerprint = _fingerprint(problem, ref, restarts, image_keys, start)
  trace_chunks: list[dict] = []
  if checkpoint_dir:
    from pulse_jax import resume
    manager = resume.SearchCheckpoints(checkpoint_dir, fingerprint)
    restored = manager.restore_latest(state)
    if restored is not None:
      state, trace_chunks = restored
      resumed_from = int(state.step)

  chunk_fn, compile_s = _compiled(
      search.run_chunk, ("chunk", problem, _signature((params, state, dev["ref"], mask_dev))),
      problem, params, state, dev["ref"], mask_dev)
  search_t = time.perf_counter()
  steps = config.steps
  while int(state.step) < steps:
    state, trace = chunk_fn(params, state, dev["ref"], mask_dev)
    trace = {k: sharding.to_host(v) for k, v in trace.items()}
    trace_chunks.append(trace)
    done = int(state.step)
    if manager is not None and checkpoint_every and (done % checkpoint_every < chunk_size
                                                     or done >= steps):
      manager.save(done, state, trace_chunks)
    if progress is not None:
      bt = sharding.to_host(state.best_total)[:n].reshape(b, restarts)
      bl = sharding.to_host(state.best_l2)[:n].reshape(b, restarts)
      top = np.argmin(np.where(np.isfinite(bt), bt, np.inf), axis=1)
      info = ChunkInfo(done, steps, bt[np.arange(b), top], bl[np.arange(b), top],
                       time.perf_counter() - search_t)
      if frames:
        info.frames = _render_rows(problem, params, state, dev["ref"], mask_dev,
                                   np.arange(b) * restarts + top, mesh)
      progress(info)
  jax.block_until_ready(state)
  search_s = time.perf_counter() - search_t

  host = {k: sharding.to_host(v)[:n].reshape(b, restarts) for k, v in
          (("total", state.best_total), ("l2", state.best_l2), ("best_step", state.best_step),
           ("min_l2", state.min_l2))}
  terms = {k: sharding.to_host(v)[:n].reshape(b, restarts) for k, v in state.best_terms.items()}
  within = host["l2"] <= config.eps
  ranking = _rank(within, host["total"])
  selected = ranking[:, :keep]
  flat_rows = (np.arange(b)[:, None] * restarts + selected).reshape(-1)
  images = _render_rows(problem, params, state, dev["ref"], mask_dev, flat_rows, mesh)
  sv = search.start_values_of(problem, state)
  start_values = {k: _take_rows(v, flat_rows).reshape((b, keep) + v.shape[1:])
                  for k, v in sv.items()}
  trace = {}
  if trace_chunks:
    for k in trace_chunks[0]:
      if k == "active":
        continue
      full = np.concatenate([t[k] for t in trace_chunks], axis=0)
      act = np.concatenate([t["active"] for t in trace_chunks], axis=0)
      trace[k] = full[act][:, :n].reshape(-1, b, restarts)
  return SearchResult(
      total=host["total"], terms=terms, l2=host["l2"], min_l2=host["min_l2"],
      best_step=host["best_step"], within_eps=within, ranking=ranking,
      success_rate=within.mean(axis=1), selected=selected,
      hr=images["hr"].reshape((b, keep) + images["hr"].shape[1:]),
      lr=images["lr"].reshape((b, keep) + images["lr"].shape[1:]),
      start_values=start_values, trace=trace,
      timings={"compile_s": compile_s, "search_s": search_s,
               "init_s": search_t - t0 - compile_s, "steps": steps,
               "restart_steps_per_s": n * max(steps - resumed_from, 0) / max(search_s, 1e-9)},
      num_devices=int(mesh.devices.size), padded_rows=n_pad - n, resumed_from_step=resumed_from)


@jax.jit
def _gather(tree, rows):
  return jax.tree.map(lambda a: jnp.take(a, rows, axis=0), tree)


def _take_rows(x, rows: np.ndarray) -> np.ndarray:
  return sharding.to_host(_gather(x, jnp.asarray(rows)))


def _render_rows(problem, params, state, ref, mask, rows: np.ndarray, mesh) -> dict:
  """Renders the best iterate of the given rows (the final best-of-N gather)."""
  rows_j = jnp.asarray(rows, jnp.int32)
  sub = search.SearchState(
      step=state.step, vars={}, fixed_noise=_gather(state.fixed_noise, rows_j), opt_state=(),
      best_vars=_gather(state.best_vars, rows_j), best_total=None, best_terms={}, best_l2=None,
      best_step=None, min_l2=None)
  sub_ref = _gather(ref, rows_j)
  sub_mask = _gather(mask, rows_j) if mask is not None else None
  out = search.render_best(problem, params, sub, sub_ref, sub_mask)
  return {k: sharding.to_host(v) for k, v in out.items()}
