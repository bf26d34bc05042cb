"""Two processes (jax.distributed on 127.0.0.1, 2 fake CPU devices each) search like one.

Workers: tests/support/scale_worker.py (a 16 px StyleGAN, 2 images x 3 restarts, 6 steps, chunks
of 2; 6 rows padded to 8 over the 4 global devices). Every launch is bounded by a timeout and its
processes are always killed and reaped.
"""
from __future__ import annotations

import os

import pytest

from support import scale_worker as w

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")


def _pair(out: str, ckpt: str, *extra: str) -> list[list[str]]:
  port = w.free_port()
  return [["--out", out, "--devices=2", f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
           f"--process_id={i}", "--checkpoint_dir", ckpt, "--checkpoint_every=2", *extra]
          for i in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """1 process x 1 device; 2 processes uninterrupted; 2 processes killed at step 2."""
  d = tmp_path_factory.mktemp("multiprocess")
  paths = {k: str(d / f"{k}.npz") for k in ("one", "two", "resumed")}
  ckpt_two, ckpt_killed = str(d / "ckpt_two"), str(d / "ckpt_killed")
  outs = w.launch(["--out", paths["one"], "--devices=1"],
                  *_pair(paths["two"], ckpt_two),
                  *_pair(paths["resumed"], ckpt_killed, "--die_at_step=2"))
  for rc, out in outs[:3]:
    assert rc == 0, out
  # Each process SIGKILLs itself after the checkpoint at step 2 (one may instead be brought
  # down by its peer's death): no results, a complete checkpoint at step 2.
  assert any(rc == -9 for rc, _ in outs[3:]) and all(rc != 0 for rc, _ in outs[3:]), outs[3:]
  assert "2" in os.listdir(ckpt_killed) and not os.path.exists(paths["resumed"])
  w.run_ok(*_pair(paths["resumed"], ckpt_killed))
  return paths


def test_two_processes_match_one(runs):
  one, two = w.results(runs["one"], 1), w.results(runs["two"], 4)
  assert (int(two["num_processes"]), int(two["num_devices"]), int(two["padded_rows"])) == (2, 4, 2)
  w.assert_same(two, one)


def test_two_processes_resume_after_kill(runs):
  """Both processes killed after the step-2 checkpoint, restarted with the same flags: the
  same results as the uninterrupted 2-process run (bit for bit) and as 1 process."""
  resumed, two = w.results(runs["resumed"], 4), w.results(runs["two"], 4)
  assert int(resumed["resumed_from_step"]) == 2 and int(two["resumed_from_step"]) == 0
  w.assert_same(resumed, two, exact=True)
  w.assert_same(resumed, w.results(runs["one"], 1))


def test_initialize_detects_launchers(monkeypatch):
  """No launcher: a plain single process (jax.distributed untouched); SLURM / Open MPI with more
  than one task, or a multi-host TPU slice: jax's own detection is called."""
  import jax
  from pulse_jax.runtime import distributed
  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False, raising=False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE",
              "TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(var, raising=False)
  assert distributed.initialize() is False and calls == []
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert distributed.initialize() is False and calls == []
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.initialize() is True and calls == [((), {})]
  monkeypatch.delenv("SLURM_JOB_ID")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0,w1")
  assert distributed.initialize() is True and len(calls) == 2
  assert distributed.initialize(coordinator_address="auto") is True and calls[-1] == ((), {})
  assert distributed.initialize("10.0.0.1:1234", 2, 1) is True
  assert calls[-1] == ((), {"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                            "process_id": 1})
  with pytest.raises(ValueError, match="process_id"):
    distributed.initialize("10.0.0.1:1234", 2, 2)
