"""Resuming a killed search from its orbax checkpoint gives the uninterrupted results; a
resume with other settings is refused.

Workers: tests/support/scale_worker.py (a 16 px StyleGAN, 2 images x 3 restarts, 6 steps, chunks
of 2, a checkpoint every 2 steps); the killed run SIGKILLs itself after the checkpoint at step 4.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from support import scale_worker as w

from pulse_jax.runtime import loop

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp("resume")
  p = {k: str(d / k) for k in ("full", "killed", "killed_4dev")}
  args = lambda k, *extra: ["--out", p[k] + ".npz", "--checkpoint_dir", p[k],
                            "--checkpoint_every=2", *extra]
  (rc_full, out_full), (rc_killed, out_killed) = w.launch(
      args("full"), args("killed", "--die_at_step=4"))
  assert rc_full == 0, out_full
  assert rc_killed == -9, out_killed
  assert not os.path.exists(p["killed"] + ".npz")
  assert sorted(os.listdir(p["killed"])) == ["2", "4"]  # max_to_keep=2
  shutil.copytree(p["killed"], p["killed_4dev"])
  # Restart with the same flags; and on 4 devices (6 rows padded to 8: the checkpoint's
  # 6 rows are read and re-padded).
  w.run_ok(args("killed"), args("killed_4dev", "--devices=4"))
  return p


def test_killed_run_resumes_to_the_same_results(runs):
  full, resumed = w.results(runs["full"] + ".npz", 1), w.results(runs["killed"] + ".npz", 1)
  assert int(full["resumed_from_step"]) == 0 and int(resumed["resumed_from_step"]) == 4
  w.assert_same(resumed, full, exact=True)  # same layout: bit for bit
  assert full["trace_TOTAL"].shape == resumed["trace_TOTAL"].shape == (6, 2, 3)


def test_resume_on_another_device_count(runs):
  resumed = w.results(runs["killed_4dev"] + ".npz", 4)
  assert int(resumed["resumed_from_step"]) == 4 and int(resumed["padded_rows"]) == 2
  w.assert_same(resumed, w.results(runs["full"] + ".npz", 1))


@pytest.mark.parametrize("change, match", [
    ("steps", r"config\.steps \(checkpoint: 6, now: 8\)"),
    ("seed", r"config\.seed"),
    ("restarts", r"restarts \(checkpoint: 3, now: 4\)"),
    ("ref", r"ref_sha256"),
    ("weights", r"weights_sha256"),
])
def test_resume_with_other_settings_is_refused(runs, tmp_path, change, match):
  ckpt = str(tmp_path / "ckpt")
  shutil.copytree(runs["full"], ckpt)
  generator, params, ref, config = w.tiny_problem(2, 8 if change == "steps" else 6,
                                                  1 if change == "seed" else 0)
  if change == "ref":
    ref = ref[::-1].copy()
  if change == "weights":
    params = {**params, "gaussian_fit": {"mean": params["gaussian_fit"]["mean"] + 1.0,
                                         "std": params["gaussian_fit"]["std"]}}
  with pytest.raises(ValueError, match=match) as e:
    loop.search_images(generator, params, ref, config=config,
                         restarts=4 if change == "restarts" else 3, chunk_size=2,
                         checkpoint_dir=ckpt, checkpoint_every=2)
  assert "holds checkpoints of a different search" in str(e.value)
  assert sorted(os.listdir(ckpt)) == ["4", "6"]  # nothing written


def test_same_settings_are_accepted(runs):
  """The settings check passes for the run that wrote the checkpoint (at step 6 = done)."""
  from pulse_jax.runtime import checkpoints
  generator, params, ref, config = w.tiny_problem(2, 6, 0)
  problem = loop.program.Problem(generator, config, 4, 2)
  settings = loop._settings(problem, params, ref, None, 3, np.arange(2), None)
  assert checkpoints.SearchCheckpoints(runs["full"], settings)._meta["step"] == 6
