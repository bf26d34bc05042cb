"""Multi-process (multi-host) start-up through `jax.distributed`, and who writes outputs.

Every process runs the same program on the same inputs: the search lays its rows out over the
global device list, each process computes the rows of its own devices, and the ranking of the
restarts sees every host's results (`sharding.to_host` gathers them). Only process 0 writes
outputs; orbax checkpoints are written by all processes together (each its own shards).

`initialize` must run before any other jax call that touches devices.
"""
from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)

AUTO = "auto"  # coordinator_address value that asks jax to detect the cluster


def _detected_cluster() -> str | None:
  """Name of a multi-process launcher that jax can read its settings from, or None."""
  env = os.environ
  if "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
    return "SLURM"
  if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return "Open MPI"
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
  if len([h for h in hosts.split(",") if h.strip()]) > 1:
    return "TPU slice (GKE)"
  try:  # private flag; absent or renamed in some jax versions
    from jax._src import cloud_tpu_init
    if getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False):
      return "Cloud TPU VM"
  except Exception:  # pragma: no cover - depends on the jax build
    pass
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts `jax.distributed` when the run spans several processes. Returns whether it did.

  - Explicit values (`coordinator_address='host:port'`, `num_processes`, `process_id`): passed
    to `jax.distributed.initialize`; values left None are detected by jax where it can
    (SLURM, Open MPI, Cloud TPU). `num_processes=1` without an address: single process.
  - `coordinator_address='auto'`: `jax.distributed.initialize()` with no arguments (jax
    detects Cloud TPU pod slices, SLURM, Open MPI and Kubernetes).
  - Nothing given: the same no-argument call when a multi-process launcher is detected from
    the environment (SLURM or Open MPI with more than one task, a TPU slice); otherwise a
    plain single process and nothing is done.
  Calling it again after a successful start does nothing.
  """
  if getattr(jax.distributed, "is_initialized", lambda: False)():
    return True
  if coordinator_address == AUTO:
    jax.distributed.initialize()
    return True
  explicit = coordinator_address is not None or process_id is not None or (
      num_processes is not None and num_processes > 1)
  if explicit:
    if num_processes is not None and num_processes < 1:
      raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
      raise ValueError(f"process_id must be in 0..{num_processes - 1}, got {process_id}.")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    return True
  cluster = _detected_cluster()
  if cluster is None:
    return False
  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError) as e:
    if cluster != "Cloud TPU VM":
      raise
    # A single TPU VM without a reachable metadata server: jax still sees all its devices.
    log.warning("jax.distributed.initialize() on a %s failed (%s); running as one process.",
                cluster, e)
    return False
  log.info("jax.distributed started for %s: process %d of %d.", cluster, jax.process_index(),
           jax.process_count())
  return True


def is_writer() -> bool:
  """True in the one process that writes outputs (process 0)."""
  return jax.process_index() == 0
