"""ILO at scale: the intermediate-layer search (config.ilo) gives the same results on 1 and 8
devices, with micro-batches and another chunk size, and a run killed inside an ILO phase resumes
bit for bit.

Workers: tests/support/scale_worker.py, a 16 px StyleGAN (cut points b4, b8, b16), 2 images x 3
restarts, 4 latent steps then 3 steps at b4 (steps 4..6) and 3 at b8 (steps 7..9).
"""
from __future__ import annotations

import numpy as np
import pytest

from support import scale_worker as w

pytestmark = pytest.mark.slow  # subprocesses with fake devices: not in the quick tier

STEPS, ILO_STEPS, LAYERS = 4, 3, ("b4", "b8")
COMMON = [f"--steps={STEPS}", "--ilo", f"--ilo_steps={ILO_STEPS}", "--ilo_layers=" + ",".join(LAYERS)]
TOTAL = STEPS + len(LAYERS) * ILO_STEPS
KILLED_AT = 6   # chunks of 2: the checkpoint at step 6, one step before the end of b4's phase


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp("ilo_scale")
  p = {k: str(d / k) for k in ("plain", "mb_chunk5", "killed", "killed_ckpt")}
  killed = ["--out", p["killed"] + ".npz", "--checkpoint_dir", p["killed_ckpt"],
            "--checkpoint_every=2", *COMMON]
  (rc_killed, out_killed), (rc, out) = w.launch(
      killed + [f"--die_at_step={KILLED_AT}"],
      ["--out", p["plain"] + ".npz", "--devices=8", "--meshes=1,8", *COMMON])
  assert rc_killed == -9, out_killed
  assert rc == 0, out
  w.run_ok(["--out", p["mb_chunk5"] + ".npz", "--micro_batches=2", "--chunk=5", *COMMON], killed)
  return {k: w.results(v + ".npz", 1) for k, v in p.items() if k != "killed_ckpt"} | {
      "plain8": w.results(p["plain"] + ".npz", 8)}


def test_the_search_runs_every_layer(runs):
  plain = runs["plain"]
  np.testing.assert_array_equal(plain["steps_run"], [TOTAL, TOTAL])
  assert plain["trace_TOTAL"].shape == (TOTAL, 2, 3) and np.all(np.isfinite(plain["trace_TOTAL"]))
  assert sorted(k for k in plain if k.startswith("ilo")) == [
      "ilo.b8", "ilo_moved_b4", "ilo_moved_b8"]   # the kept activation of the last layer
  assert plain["ilo.b8"].shape == (2, 3, 8, 8, 16)
  for layer in LAYERS:
    moved = plain[f"ilo_moved_{layer}"]
    assert np.all(moved <= 0.1 * (1 + 1e-5)) and np.all(moved > 0), (layer, moved)
  # entering a layer re-expresses the kept iterate exactly: the first step's loss is the kept one
  total = plain["trace_TOTAL"]
  kept = np.minimum.accumulate(total, axis=0)
  for start in (STEPS, STEPS + ILO_STEPS):
    np.testing.assert_allclose(total[start], kept[start - 1], rtol=1e-6)


def test_same_on_8_devices_and_with_micro_batches_and_another_chunk_size(runs):
  assert int(runs["plain8"]["num_devices"]) == 8 and int(runs["plain8"]["padded_rows"]) == 2
  for other in ("plain8", "mb_chunk5"):
    w.assert_same(runs[other], runs["plain"], exact=False)
    np.testing.assert_array_equal(runs[other]["steps_run"], runs["plain"]["steps_run"])


def test_a_run_killed_inside_an_ilo_phase_resumes_bit_for_bit(runs):
  killed, plain = runs["killed"], runs["plain"]
  assert int(killed["resumed_from_step"]) == KILLED_AT
  assert STEPS < KILLED_AT < STEPS + ILO_STEPS  # inside b4's phase
  w.assert_same(killed, plain, exact=True)
