"""The anytime search (config.stop_within / stop_extra_steps): an image ends exactly at the step
its stop rule names, whatever the device count, micro-batches, chunk size or a kill and resume;
the batch runs fewer chunks; the results of an ended image are those of the uninterrupted
search at its end step.

Workers: tests/support/scale_worker.py, a 16 px StyleGAN, 2 images x 3 restarts, 12 steps,
eps 0.06 (so that restarts reach it mid-search: measured, image 0's second restart within eps at
step 7, image 1's at step 5). Stop rule K=2, M=1.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from support import scale_worker as w

from pulse_jax.search import rank

pytestmark = pytest.mark.slow  # subprocesses with fake devices: not in the quick tier

EPS, K, M, STEPS = 0.06, 2, 1, 12
COMMON = ["--steps=12", "--eps=0.06"]
STOP = ["--stop_within=2", "--stop_extra_steps=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp("anytime")
  p = {k: str(d / k) for k in ("off", "stop", "stop_mb_chunk5", "killed", "killed_ckpt")}
  killed = ["--out", p["killed"] + ".npz", "--checkpoint_dir", p["killed_ckpt"],
            "--checkpoint_every=2", *COMMON, *STOP]
  (rc, out), = w.launch(killed + ["--die_at_step=4"])
  assert rc == -9, out
  w.run_ok(["--out", p["off"] + ".npz", *COMMON],
           ["--out", p["stop"] + ".npz", "--devices=8", "--meshes=1,8", *COMMON, *STOP])
  w.run_ok(["--out", p["stop_mb_chunk5"] + ".npz", "--micro_batches=2", "--chunk=5", *COMMON,
            *STOP], killed)
  return {k: w.results(v + ".npz", 8 if k == "stop8" else 1) for k, v in p.items()
          if k != "killed_ckpt"} | {"stop8": w.results(p["stop"] + ".npz", 8)}


def _expected_ends(off: dict) -> np.ndarray:
  """[B] the step each image ends at, from the uninterrupted search's L2 trace."""
  l2 = off["trace_L2_raw"]                                  # [steps, B, R]
  hit = rank.within_eps(l2, EPS)
  first = np.where(hit.any(0), hit.argmax(0) + 1, 0)        # [B, R]
  ends = []
  for row in first:
    hits = np.sort(row[row > 0])
    ends.append(min(int(hits[K - 1]) + M, STEPS) if len(hits) >= K else STEPS)
  return np.array(ends)


def test_images_end_at_the_step_of_the_rule(runs):
  off, stop = runs["off"], runs["stop"]
  ends = _expected_ends(off)
  assert list(ends) == [8, 6], ends    # measured (module docstring): both end before step 12
  np.testing.assert_array_equal(stop["steps_run"], ends)
  assert stop["ended_early"].all() and not off["ended_early"].any()
  np.testing.assert_array_equal(off["steps_run"], [STEPS, STEPS])
  # fewer chunks: the batch stops at the first chunk end (chunks of 2) after both ended
  assert int(stop["batch_steps"]) == 8 and int(off["batch_steps"]) == STEPS
  assert int(stop["restart_steps"]) == 3 * (8 + 6) and int(off["restart_steps"]) == 3 * 2 * 12


def test_an_ended_image_keeps_the_uninterrupted_search_at_its_end(runs):
  off, stop = runs["off"], runs["stop"]
  for b, end in enumerate(stop["steps_run"]):
    # the trace: the same steps, then nothing (NaN) after the end
    np.testing.assert_array_equal(stop["trace_L2_raw"][:end, b], off["trace_L2_raw"][:end, b])
    assert np.isnan(stop["trace_L2_raw"][end:, b]).all()
    # the kept iterate: the one the uninterrupted search had kept at that step
    follower = rank.KeptFollower(3, EPS, [{"TOTAL": off["trace_TOTAL"][:end, b],
                                            "L2_raw": off["trace_L2_raw"][:end, b]}])
    np.testing.assert_array_equal(stop["total"][b], follower.total.astype(np.float32))
    np.testing.assert_array_equal(stop["l2"][b], follower.l2.astype(np.float32))
    assert (stop["within_eps"][b].sum() >= K)
  np.testing.assert_array_equal(stop["first_within_step"],
                                np.where(stop["first_within_step"] > 0,
                                         off["first_within_step"], 0))


def test_same_on_8_devices_and_with_micro_batches_and_another_chunk_size(runs):
  stop = runs["stop"]
  ran = int(stop["steps_run"].max())
  trimmed = lambda r: {k: v[:ran] if k.startswith("trace_") else v for k, v in r.items()}
  for other in ("stop8", "stop_mb_chunk5"):
    np.testing.assert_array_equal(runs[other]["steps_run"], stop["steps_run"], err_msg=other)
    w.assert_same(trimmed(runs[other]), trimmed(stop), exact=False)
    assert np.isnan(runs[other]["trace_L2_raw"][ran:]).all()  # the rest: steps no image ran
  assert int(runs["stop8"]["num_devices"]) == 8 and int(runs["stop8"]["padded_rows"]) == 2
  assert int(runs["stop_mb_chunk5"]["batch_steps"]) == 10    # chunks of 5: stops at step 10


def test_a_killed_run_resumes_to_the_same_end(runs):
  killed, stop = runs["killed"], runs["stop"]
  assert int(killed["resumed_from_step"]) == 4
  np.testing.assert_array_equal(killed["steps_run"], stop["steps_run"])
  w.assert_same(killed, stop, exact=True)
