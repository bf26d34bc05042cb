"""`experiments/gpu_check.sh` end to end on the CPU (its tiny configuration), and its targets.

The run writes into a tmp dir (`--out_dir`, `--readme`), never the repository's files. The
reference part runs only when torch and a reference copy ($PULSE_REFERENCE_DIR) are there.
"""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

from experiments import measure, report
from support.harness import REPO

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")
README = f"# x\n\nhand-written\n\n{report.GPU_TABLE_START}\nold\n{report.GPU_TABLE_END}\n\nmore\n"


def _reference_available() -> bool:
  from experiments import reference_adapter as ra
  try:
    ra.import_torch()
    ra.check_reference_dir(os.environ.get("PULSE_REFERENCE_DIR"))
  except ra.ReferenceUnavailable:
    return False
  return True


def _run(tmp_path: Path, *flags: str) -> tuple[dict, str, str]:
  readme = tmp_path / "README.md"
  readme.write_text(README)
  env = {**os.environ, "GPU_CHECK_NO_INSTALL": "1", "PYTHON": sys.executable,
         "JAX_PLATFORMS": "cpu"}
  if not _reference_available():
    env["PULSE_REFERENCE_DIR"] = str(tmp_path / "no_reference")
  p = subprocess.run(["bash", str(REPO / "experiments" / "gpu_check.sh"), "--tiny",
                      f"--out_dir={tmp_path / 'out'}", f"--readme={readme}", "--name=check",
                      *flags], capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  results = json.loads((tmp_path / "out" / "check.json").read_text())
  return results, (tmp_path / "out" / "check.md").read_text(), readme.read_text()


def test_tiny_end_to_end(tmp_path):
  # --memory_budget_gb: the automatic micro-batch choice compiles, as on a GPU (a CPU reports
  # no memory limit); 2 restarts in float32 and bfloat16.
  results, md, readme = _run(tmp_path, "--restarts=2", "--memory_budget_gb=64")
  assert results["tiny"] and results["device"]["platform"] == "cpu"
  assert results["device"]["tf32_in_use"] is False
  assert results["device"]["matmul_rel_diff"] < 1e-4
  assert "jax_default_matmul_precision" in results["device"]
  jax_rows = [r for r in results["runs"] if r.get("side") == "pulse-jax"]
  assert {r["dtype"] for r in jax_rows} == {"float32", "bfloat16"}
  peak = measure.cpu_peak_gflops(results["machine"])
  for r in jax_rows:
    assert "error" not in r, r
    assert r["restarts"] == 2 and r["micro_batches"] == 1 and r["finite"]
    assert r["program"] == "driver chunk"  # the program the choice compiled, not a second one
    assert r["restart_steps_per_s"] > 0 and 0 < r["compile_s"] < 120
    assert r["micro_batches_choice_s"] >= r["compile_s"] * 0.5
    if peak:
      assert 0 < r["pct_of_roofline"] < 1 and "CPU fp32 peak" in r["roofline_basis"]
  if _reference_available():
    refs = [r for r in results["runs"] if r.get("side") == "reference"]
    assert [r["restarts"] for r in refs] == [1, 2] and all(r["finite"] for r in refs)
    fw = results["parity"]["forward"]
    assert fw["max_abs_diff"] < 1e-3 * fw["range_reference"]
  else:
    assert "reference not measured" in results["reference_status"]
    assert not [r for r in results["runs"] if r.get("side") == "reference"]
  targets = {t["target"]: t for t in results["targets"]}
  assert len(targets) == 4
  assert all(t["status"] == report.TINY_STATUS for t in targets.values())
  assert "of CPU fp32 peak" in targets["pulse-jax at >= 50% of the roofline"]["measured"]
  assert "largest measured: x2" in targets["256 restarts per device (1024)"]["measured"]
  assert "max " in targets["compile < 60 s (1024)"]["measured"]
  assert results["budget"]["used_s"] < results["budget"]["budget_s"]
  for text in (md, readme):
    assert "% of roofline" in text and "pulse-jax bf16" in text and "| target |" in text
    assert "256 restarts per device" in text and "compile < 60 s" in text
  assert "Tiny configuration" in md
  assert readme.count(report.GPU_TABLE_START) == 1 and "old" not in readme
  assert readme.startswith("# x\n\nhand-written\n\n") and readme.endswith("\n\nmore\n")
  assert "](out/check.md)" in readme


def test_time_budget_skips_and_says_so(tmp_path):
  results, md, _ = _run(tmp_path, "--restarts=1,4", "--budget_s=0.01")
  assert results["runs"] == []
  skipped = [s["what"] for s in results["skipped"]]
  assert {"pulse-jax f32 x1", "pulse-jax bf16 x4"} <= set(skipped)
  assert all("time budget" in s["reason"] for s in results["skipped"])
  assert "Skipped: " in md and "time budget" in md


def _row(dtype, n, rate, groups=1, compile_s=30.0, **kw):
  r = {"side": "pulse-jax", "variant": report.variant_name((dtype, False)), "dtype": dtype,
       "resolution": 1024, "restarts": n, "micro_batches": groups, "restart_steps_per_s": rate,
       "median_step_s": n / rate, "compile_s": compile_s, "finite": True,
       "device_memory": {"peak_bytes_in_use": 90 * 2**30}, **kw}
  got = report.roofline("NVIDIA H200", dtype, 1024)
  r.update(roofline_restart_steps_per_s=got[0], roofline_basis=got[1],
           pct_of_roofline=rate / got[0])
  return r


def _results(runs, skipped=(), tiny=False):
  return {"runs": list(runs), "skipped": list(skipped), "tiny": tiny, "reference": {"dir": "x"},
          "reference_status": "reference: x",
          "device": {"platform": "gpu", "device_kind": "NVIDIA H200"}}


def test_targets_on_a_gpu():
  assert report.roofline("NVIDIA H100 80GB HBM3", "float32", 1024)[0] == 1920
  assert report.roofline("NVIDIA H200", "bfloat16", 1024)[0] == 4800
  assert report.roofline("NVIDIA A100-SXM4-80GB", "float32", 1024) is None
  ref = {"side": "reference", "variant": "reference", "dtype": "float32", "resolution": 1024,
         "restarts": 16, "restart_steps_per_s": 50.0, "median_step_s": 0.32, "finite": True}
  runs = [ref, {**ref, "restarts": 1, "restart_steps_per_s": 20.0},
          _row("float32", 1, 30.0, compile_s=40.0), _row("float32", 256, 1300.0, groups=4),
          _row("bfloat16", 256, 2000.0, groups=2, compile_s=70.0)]
  t = {x["target"]: x for x in report.gpu_targets(_results(runs))}
  roof = t["pulse-jax at >= 50% of the roofline"]
  assert roof["status"] == "met" and "54.2%" in roof["measured"]  # 1300 / 2400 TF32
  speed = t[">= 10x the reference's best batch on the same device"]
  assert speed["status"] == "met" and "26.0x" in speed["measured"] and "40.0x" in speed["measured"]
  big = t["256 restarts per device (1024)"]
  assert big["status"] == "met" and "in 4 micro-batches" in big["measured"]
  comp = t["compile < 60 s (1024)"]
  assert comp["status"] == "not met" and "max 70.0 s" in comp["measured"]
  table = "\n".join(report.gpu_table(_results(runs)))
  assert "| 54.2% |" in table and "| 26.00 |" in table

  slow = [ref, _row("float32", 1, 30.0), _row("float32", 64, 400.0)]
  failed = {"side": "pulse-jax", "variant": "pulse-jax f32", "dtype": "float32",
            "resolution": 1024, "restarts": 256, "error": "killed (out of memory?)"}
  t = {x["target"]: x for x in report.gpu_targets(_results(slow + [failed]))}
  assert t["pulse-jax at >= 50% of the roofline"]["status"] == "not met"
  assert t[">= 10x the reference's best batch on the same device"]["status"] == "not met"
  assert t["256 restarts per device (1024)"]["status"] == "not met"
  assert t["compile < 60 s (1024)"]["status"] == "met"

  skipped = [{"what": "pulse-jax f32 x256", "reason": "time budget: ~150 s needed, 20 s left"}]
  no_ref = _results([_row("float32", 1, 30.0)], skipped)
  no_ref.update(reference=None, reference_status="reference not measured: no copy")
  t = {x["target"]: x for x in report.gpu_targets(no_ref)}
  assert t[">= 10x the reference's best batch on the same device"]["status"] == (
      "not measured (reference not measured: no copy)")
  assert t["256 restarts per device (1024)"]["status"] == (
      "not measured (time budget: ~150 s needed, 20 s left)")
  md_block = report.gpu_summary({**no_ref, "started_utc": "2026-12-01T00:00:00"}, "r/x.md")
  assert "Skipped for the time budget" in md_block and "[x.md](r/x.md)" in md_block
