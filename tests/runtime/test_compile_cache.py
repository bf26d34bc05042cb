"""A second identical run compiles nothing: jax's persistent compilation cache (issue 14 §3)."""
from __future__ import annotations

import pytest

import json
import os

from support.harness import cli

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")


def _run(tmp_path, out: str, **env_extra) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "PULSE_JAX_NO_COMPILE_CACHE"}
  env.update(PULSE_JAX_COMPILE_CACHE=str(tmp_path / "xla"), **env_extra)
  p = cli("pulse_jax.run", f"--output_dir={tmp_path / out}", "--steps=6", "--restarts=2",
          "--chunk_size=3", "--quiet", env=env, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  return json.load(open(tmp_path / out / "summary.json"))


def test_second_run_loads_its_programs(tmp_path):
  first = _run(tmp_path, "a")
  cached = os.listdir(tmp_path / "xla")
  assert cached, "no program was written to the cache"
  second = _run(tmp_path, "b")
  assert second["compile_s"] < 1.0, (first["compile_s"], second["compile_s"])
  assert second["compile_s"] < first["compile_s"]


def test_opt_out_by_environment(tmp_path):
  _run(tmp_path, "a", PULSE_JAX_NO_COMPILE_CACHE="1")
  assert not (tmp_path / "xla").exists() or not os.listdir(tmp_path / "xla")
