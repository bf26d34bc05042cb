"""Restarts sharded over devices: the same results on 1, 2 and 8 devices, uneven counts padded,
and a compiled search without cross-device communication.

Each case runs in a subprocess with fake CPU devices (tests/support/scale_worker.py): a 16 px
StyleGAN, 2 images x 3 restarts, 6 steps in chunks of 2.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from support import scale_worker as w

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

COLLECTIVE = re.compile(
    r"\b(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter)(-start)?\(")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp("sharding")
  even, uneven, micro = str(d / "2x3.npz"), str(d / "1x5.npz"), str(d / "2x3_micro.npz")
  w.run_ok(["--out", even, "--devices=8", "--meshes=1,2,8", "--images=2", "--restarts=3", "--hlo"],
           ["--out", uneven, "--devices=2", "--meshes=2", "--images=1", "--restarts=5"],
           ["--out", micro, "--devices=8", "--meshes=1,8", "--images=2", "--restarts=3",
            "--micro_batches=2", "--hlo"])
  return even, uneven, micro


def test_same_results_on_1_2_8_devices(runs):
  one, two, eight = (w.results(runs[0], k) for k in (1, 2, 8))
  assert [int(r["num_devices"]) for r in (one, two, eight)] == [1, 2, 8]
  assert [int(r["padded_rows"]) for r in (one, two, eight)] == [0, 0, 2]  # 6 rows -> 8 on 8
  assert one["trace_TOTAL"].shape == (6, 2, 3)
  w.assert_same(two, one)
  w.assert_same(eight, one)


def test_uneven_restarts_on_2_devices(runs):
  """1 image x 5 restarts on 2 devices (padded to 6): restarts 0-2 equal those of the same
  image in the 2 x 3 search on 1 device, since a restart depends on (seed, input, index) only."""
  five = w.results(runs[1], 2)
  assert int(five["padded_rows"]) == 1 and five["total"].shape == (1, 5)
  one = w.results(runs[0], 1)
  image0 = {k: (v[:, :1] if k.startswith("trace_") else v[:1]) for k, v in one.items()
            if np.ndim(v)}
  w.assert_same(five, image0, restarts=slice(0, 3))


def test_compiled_search_has_no_collectives(runs):
  hlo = open(runs[0] + ".hlo.txt").read()
  assert "num_partitions=8" in hlo  # really partitioned over the 8 devices
  assert re.search(r"f32\[1,6,512\].*parameter", hlo)  # latent rows: 1 of 8 per device
  assert not COLLECTIVE.findall(hlo), sorted(set(m[0] for m in COLLECTIVE.findall(hlo)))
  control = open(runs[0] + ".control.hlo.txt").read()  # a sum over rows needs an all-reduce
  assert COLLECTIVE.search(control)


def test_micro_batches_same_results_and_no_collectives(runs):
  """Restarts computed in 2 sequential groups per step: the same search (6 rows on 1 device,
  padded to 16 on 8), and the regrouping stays on each device."""
  one = w.results(runs[0], 1)
  micro_one, micro_eight = (w.results(runs[2], k) for k in (1, 8))
  assert [int(r["padded_rows"]) for r in (micro_one, micro_eight)] == [0, 10]
  w.assert_same(micro_one, one)
  w.assert_same(micro_eight, one)
  hlo = open(runs[2] + ".hlo.txt").read()
  assert "num_partitions=8" in hlo
  assert not COLLECTIVE.findall(hlo), sorted(set(m[0] for m in COLLECTIVE.findall(hlo)))
