"""Smoke test of `python -m experiments.benchmark`: it runs and reports positive numbers.

Tiny generator (16 px), one timed step, pulse-jax only; the reference part runs only when torch
and a reference checkout ($PULSE_REFERENCE_DIR) are available. No timing assertions.
"""
from __future__ import annotations

import json
import os

import pytest

from experiments import measure, report

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

TINY = {"resolution": 16, "fmap_base": 64, "fmap_max": 16, "lr_size": 8, "schedule_steps": 10,
        "chunk_size": 1, "warmup_chunks": 1, "timed_chunks": 1, "seed": 0}


def test_benchmark_main_jax_side(tmp_path, capsys):
  from absl.testing import flagsaver
  from experiments import benchmark
  with flagsaver.flagsaver(
      resolutions=["16"], restarts=["2"], dtypes=["float32"], remat=["false"], fmap_base=64,
      fmap_max=16, lr_size=8, steps=1, memory_restarts=["4"], memory_resolutions=["16"],
      reference=False, update_readme=False, out_dir=str(tmp_path), name="smoke",
      in_process=True):
    benchmark.main(["benchmark"])
  assert "reference not measured" in capsys.readouterr().out
  res = json.loads((tmp_path / "smoke.json").read_text())
  (run,) = res["runs"]
  assert "error" not in run, run
  assert run["restart_steps_per_s"] > 0 and run["compile_s"] > 0 and run["finite"]
  assert run["peak_rss_bytes"] > 0 and run["cpu_s_per_restart_step"] > 0
  assert run["compiled_memory"]["temp_size_in_bytes"] > 0
  assert res["machine"]["cpu_count"] >= 1 and res["versions"]["jax"]
  (mem,) = res["memory"]
  assert mem["rows"][0]["restarts"] == 4 and mem["rows"][0]["temp_size_in_bytes"] > 0
  by_groups = {r["micro_batches"]: r["temp_size_in_bytes"] for r in mem["rows"]}
  assert set(by_groups) == {1, 4}  # 8 micro-batches do not divide 4 restarts
  assert by_groups[4] < by_groups[1]
  md = (tmp_path / "smoke.md").read_text()
  assert "pulse-jax f32" in md and report.NO_GPU in md


def test_summary_and_readme_block(tmp_path):
  run = {"resolution": 16, "restarts": 1, "variant": "pulse-jax f32", "side": "pulse-jax",
         "restart_steps_per_s": 4.0, "median_step_s": 0.25, "cpu_s_per_restart_step": 0.5,
         "compile_s": 1.0, "peak_rss_bytes": 2**30, "device": "cpu:cpu"}
  ref = {**run, "variant": "reference", "side": "reference", "restart_steps_per_s": 2.0,
         "cpu_s_per_restart_step": 1.0}
  results = {"runs": [ref, run], "machine": measure.machine_info(), "versions": {},
             "started_utc": "2026-01-01T00:00:00", "command": "python -m experiments.benchmark",
             "reference_status": "test", "parity": None}
  (x,) = report.ratios(results)
  assert x["speedup_wall"] == pytest.approx(2.0) and x["speedup_cpu_time"] == pytest.approx(2.0)
  readme = tmp_path / "README.md"
  readme.write_text("# Benchmarks\n\nhand-written text\n")
  for _ in range(2):  # the second call replaces the block instead of appending another
    report.update_readme(str(readme), report.summary(results, "results/x.md"))
  text = readme.read_text()
  assert text.count(report.SUMMARY_START) == 1 and "hand-written text" in text
  assert "2.00x" in text


def test_reference_side_when_available():
  from experiments import reference_adapter as ra
  try:
    ra.import_torch()
    ref_dir = ra.check_reference_dir(os.environ.get("PULSE_REFERENCE_DIR"))
  except ra.ReferenceUnavailable as e:
    pytest.skip(str(e))
  out = measure.measure_reference({**TINY, "restarts": 1, "reference_dir": ref_dir,
                                   "reference_device": "cpu"})
  assert out["restart_steps_per_s"] > 0 and out["finite"] and out["peak_rss_bytes"] > 0


def test_jax_side_in_micro_batches():
  """--micro_batches: the measured program computes 4 restarts in 2 groups; 0 (automatic) is
  one batch on the CPU, which reports no memory limit."""
  base = {**TINY, "restarts": 4, "dtype": "float32", "remat": False}
  two = measure.measure_jax({**base, "micro_batches": 2})
  auto = measure.measure_jax({**base, "micro_batches": 0})
  assert two["micro_batches"] == 2 and auto["micro_batches"] == 1
  assert two["finite"] and two["restart_steps_per_s"] > 0
  assert two["last_total_loss"] == pytest.approx(auto["last_total_loss"], rel=1e-5)


def test_memory_per_restart_runs_the_job_and_reads_its_peak():
  """`experiments.memory_per_restart` on a 32 px model: each `pulse_jax.run` child reports its
  own peak RSS (more than the compiled temp buffers), and the slope between the counts."""
  from experiments import memory_per_restart as mpr
  out = mpr.measure_all(32, [1, 2], [True], steps=1, lr_size=8, fixed_gib=0.0, log=lambda s: None)
  rows = out["rows"]
  assert [r["restarts"] for r in rows] == [1, 2] and not any("error" in r for r in rows)
  for r in rows:
    assert r["peak_rss_bytes"] > r["temp_bytes"] > 0
    assert r["issue_per_restart_bytes"] == pytest.approx(r["peak_rss_bytes"] / r["restarts"])
  assert "slope_per_restart_bytes" in rows[1] and "temp_slope_per_restart_bytes" in rows[1]
  assert "| True | 2 |" in mpr.markdown(out)
