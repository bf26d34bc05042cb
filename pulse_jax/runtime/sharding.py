"""Placing the search on devices: restarts sharded over a 1-D mesh, parameters replicated.

Per-restart arrays (leading axis N) are split over the mesh axis 'restarts'; the
generator parameters and scalars (the step, optimiser counts) are replicated. The
compiled search then needs no cross-device communication: restarts are independent.
Works with one or many processes (`jax.distributed`): global arrays are assembled from
host data with `jax.make_array_from_callback`, which every process calls with the same
data, and `to_host` gathers a global array back onto every host.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "restarts"


def restart_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process), axis type Auto."""
  devices = list(jax.devices() if devices is None else devices)
  arr = np.array(devices)
  axis_type = getattr(jax.sharding, "AxisType", None)
  if axis_type is not None:
    try:
      return Mesh(arr, (AXIS,), axis_types=(axis_type.Auto,))
    except TypeError:
      pass
  return Mesh(arr, (AXIS,))


def mesh_key(mesh: Mesh) -> tuple:
  """Hashable identity of a mesh (its devices in order): part of compiled-program cache keys."""
  return tuple(d.id for d in mesh.devices.flat) + tuple(mesh.axis_names)


def rows_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_shardings(tree, mesh: Mesh):
  """Shardings for a per-restart pytree: leading axis on 'restarts', scalars replicated."""
  rows, rep = rows_sharding(mesh), replicated(mesh)
  return jax.tree.map(lambda x: rows if np.ndim(x) else rep, tree)


def padded_count(n: int, mesh: Mesh, micro_batches: int = 1) -> int:
  """Smallest multiple of (device count x micro_batches) >= n."""
  d = mesh.devices.size * micro_batches
  return int(math.ceil(n / d) * d)


def put(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """One host array (the same on every process) -> a global array with `sharding`."""
  host = np.asarray(host)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_rows(tree, mesh: Mesh):
  """Host arrays with leading axis N (a multiple of the device count) -> sharded global arrays."""
  s = rows_sharding(mesh)
  return jax.tree.map(lambda a: put(a, s), tree)


def replicate(tree, mesh: Mesh):
  """Host (or device) arrays -> arrays replicated on every device of the mesh."""
  s = replicated(mesh)
  return jax.tree.map(lambda a: put(np.asarray(a), s), tree)


def to_host(x) -> np.ndarray:
  """A (possibly multi-process) global array as one numpy array on every host.

  Across processes this is a collective: every process must call it, in the same order.
  """
  if getattr(x, "is_fully_addressable", True) or getattr(x, "is_fully_replicated", False):
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
