"""The compiled programs of a search, cached per shape, and the micro-batch count that fits.

Every program is compiled once per (problem, mesh, argument shapes and shardings) in this
process (`_COMPILED`; `compile_count` counts the chunk programs) and, across processes, by
JAX's persistent cache (`runtime.compile_cache`). `compiled_chunk` builds the chunk program
from shapes alone (for memory analysis, HLO inspection and `choose_micro_batches`).
"""
from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from pulse_jax.forward import ForwardModel
from pulse_jax.generators import Generator
from pulse_jax.runtime import sharding
from pulse_jax.search import program
from pulse_jax.search.config import SearchConfig

# (kind, problem, mesh, shapes) -> jitted / compiled program: every program of this process, kept
# for the next search with the same shapes (a notebook's repeated calls compile nothing).
_COMPILED: dict = {}
compile_count = 0  # number of chunk programs compiled by this process (for tests and reports)


def clear_compiled() -> int:
  """Drops this process's compiled search programs (and jax's own caches): their memory, and
  the code pages each compiled program maps, are freed. Returns how many were held. A later
  search compiles again (from the persistent cache when it is on: `runtime.compile_cache`)."""
  held = len(_COMPILED)
  _COMPILED.clear()
  jax.clear_caches()
  return held


def _signature(tree) -> tuple:
  return tuple((tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", None)))
               for x in jax.tree.leaves(tree))


def abstract_state(problem: program.Problem, mesh, keys, ids, start):
  """The initial `SearchState` as `jax.ShapeDtypeStruct`s with the chunk's shardings."""
  state = jax.eval_shape(functools.partial(program.init_state, problem), keys, ids, start)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, sharding.state_shardings(state, mesh))


def init_program(problem: program.Problem, mesh, keys, ids, start):
  """`program.init_state` jitted with the state laid out as the chunk expects (cached)."""
  key = ("init", problem, sharding.mesh_key(mesh), _signature((keys, ids, start)))
  if key not in _COMPILED:
    out = jax.tree.map(lambda a: a.sharding, abstract_state(problem, mesh, keys, ids, start))
    _COMPILED[key] = jax.jit(functools.partial(program.init_state, problem), out_shardings=out)
  return _COMPILED[key]


def prepare_program(generator: Generator, mesh):
  """`generator.prepare` jitted, its output replicated (cached): the run-time weights are
  computed once per search, not once per chunk."""
  key = ("prepare", generator, sharding.mesh_key(mesh))
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(generator.prepare, out_shardings=sharding.replicated(mesh))
  return _COMPILED[key]


def abstract_prepared(generator: Generator, params, mesh):
  rep = sharding.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                      jax.eval_shape(generator.prepare, params))


def chunk_program(problem: program.Problem, mesh, weights, state, ref, mask, fwd=None):
  """(compiled chunk, compile seconds of this call: 0 when cached) for these (concrete or
  abstract) arguments, cached.

  weights: the prepared weights (`generator.prepare(params)`, see `prepare_program`); state:
  the `SearchState` (leading axis N_pad); ref: [N_pad, C', h, w]; mask: [N_pad, 1, h, w] or
  None; fwd: the forward model's arrays. Explicit shardings in and out: state rows on
  'restarts', weights and scalars replicated, the trace [chunk, N] on 'restarts' along N; the
  state is donated. The compiled program has no cross-device communication
  (tests/runtime/test_sharding.py reads its HLO).
  """
  global compile_count
  fwd = {} if fwd is None else fwd
  args = (weights, state, ref, fwd) + ((mask,) if mask is not None else ())
  key = ("chunk", problem, sharding.mesh_key(mesh), _signature(args))
  if key not in _COMPILED:
    t = time.perf_counter()
    rows, rep = sharding.rows_sharding(mesh), sharding.replicated(mesh)
    state_sh = sharding.state_shardings(state, mesh)
    fn = lambda weights, state, ref, fwd, mask=None: program.run_chunk_prepared(
        problem, weights, state, ref, mask, fwd)
    trace_shape = jax.eval_shape(fn, *args)[1]
    trace_sh = jax.tree.map(
        lambda x: NamedSharding(mesh, P(None, sharding.AXIS)) if x.ndim == 2 else rep, trace_shape)
    jitted = jax.jit(fn, in_shardings=(rep, state_sh, rows, rep)
                     + ((rows,) if mask is not None else ()),
                     out_shardings=(state_sh, trace_sh), donate_argnums=(1,))
    _COMPILED[key] = (jitted.lower(*args).compile(), time.perf_counter() - t)
    compile_count += 1
    return _COMPILED[key]
  return _COMPILED[key][0], 0.0   # compiled before: no compile time now


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
  problem = program.Problem(generator, config, factor, chunk_size, micro_batches, forward)
  n = sharding.padded_count(rows, mesh, micro_batches)
  rows_sh, rep = sharding.rows_sharding(mesh), sharding.replicated(mesh)
  ids = jax.ShapeDtypeStruct((n,), jnp.uint32, sharding=rows_sh)
  state = abstract_state(problem, mesh, ids, ids, None)
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), params)
  c = problem.lr_channels
  ref = jax.ShapeDtypeStruct((n, c, lr_size, lr_size), jnp.float32, sharding=rows_sh)
  mask = (jax.ShapeDtypeStruct((n, 1, lr_size, lr_size), jnp.float32, sharding=rows_sh)
          if with_mask else None)
  fwd = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                     forward.arrays())
  prepared = abstract_prepared(generator, params, mesh)
  return chunk_program(problem, mesh, prepared, state, ref, mask, fwd)[0]


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
