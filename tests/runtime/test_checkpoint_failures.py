"""Checkpoint failures never hang a run or fail its batch, and a corrupt newest checkpoint is
not a traceback (issue 19: a run never hangs; corrupt checkpoints).

A failing save (a read-only or full disk: `os.makedirs` of the step's temporary folder
raises) and a hung save (orbax never finishes) are injected into a real `python -m
pulse_jax.run` process, run with a timeout: the batch goes on without checkpoints, with a
warning, and the process ends with its status. Built-in DCGAN, the shipped samples.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal

import pytest

from pulse_jax.job.settings import RunOptions
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLE, run_python

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

# Runs pulse_jax.run after an injection (argv[1]: Python code run first).
_WRAPPER = """
import runpy, sys
exec(sys.argv[1])
sys.argv = ["pulse_jax.run"] + sys.argv[2:]
runpy.run_module("pulse_jax.run", run_name="__main__")
"""

# The save of step 20 cannot make its folder (EROFS), as on a disk remounted read-only after
# the first checkpoint (step 10).
_READ_ONLY = """
import errno, os
_makedirs = os.makedirs
def makedirs(path, *a, **k):
  if "20.orbax-checkpoint-tmp" in os.fspath(path):
    raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
  return _makedirs(path, *a, **k)
os.makedirs = makedirs
"""

# From step 20 on, orbax's background write never finishes (a hung mount): a thread that is
# not a daemon blocks for ever; the save times out after 2 s.
_HUNG = """
import threading, orbax.checkpoint as ocp
from pulse_jax.runtime import checkpoints
checkpoints.SAVE_TIMEOUT_S = 2.0
_save = ocp.CheckpointManager.save
_forever = threading.Event()
def save(self, step, *a, **k):
  if step >= 20:
    threading.Thread(target=_forever.wait, name="hung-write").start()
    self.wait_until_finished = _forever.wait
    return True
  return _save(self, step, *a, **k)
ocp.CheckpointManager.save = save
"""


def _run(tmp_path: pathlib.Path, inject: str, timeout: float = 120):
  args = [f"--output_dir={tmp_path / 'out'}", "--steps=30", "--restarts=2", "--chunk_size=5",
          f"--checkpoint_dir={tmp_path / 'ckpt'}", "--checkpoint_every=10"]
  return run_python("-c", _WRAPPER, inject, *args, timeout=timeout)


def _assert_finished(p, tmp_path, why: str):
  assert p.returncode == 0, p.stdout + p.stderr
  assert "Traceback" not in p.stderr, p.stderr
  assert "warning: checkpoints disabled for this batch:" in p.stderr and why in p.stderr, p.stderr
  s = json.loads((tmp_path / "out" / "summary.json").read_text())
  assert s["exit_code"] == 0 and s["failed"] == 0 and s["searched"] == 2
  assert (tmp_path / "out" / "index.html").is_file()


def test_failed_checkpoint_save_does_not_hang_or_fail_the_batch(tmp_path):
  p = _run(tmp_path, _READ_ONLY)
  _assert_finished(p, tmp_path, "Read-only file system")
  assert "at step 20" in p.stderr, p.stderr


def test_hung_checkpoint_save_times_out(tmp_path):
  p = _run(tmp_path, _HUNG)
  _assert_finished(p, tmp_path, "did not finish within 2 s")
  assert "background thread(s) did not finish" in p.stderr, p.stderr


# ----------------------------------------------------------------------- corrupt checkpoints

FAST = dict(steps=8, restarts=2, chunk_size=2, eps=0.0, checkpoint_every=2)


def _in_process(tmp_path, ckpt, out="out", **kw):
  lines, warnings = [], []
  s = run_job(RunOptions(input=str(SAMPLE), output_dir=str(tmp_path / out),
                         checkpoint_dir=str(ckpt), **{**FAST, **kw}),
              log=lines.append, warn=warnings.append)
  return s, lines, warnings


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """A batch's checkpoint folder with steps 4 and 6 of 8: a run stopped (as by SIGTERM) after
  its progress line of step 4, which saves the step it reached (6) and ends 143."""
  from pulse_jax.runtime import stopping
  d = tmp_path_factory.mktemp("ckpt")

  def log(line):
    if "step 4/8" in line:
      stopping.request(signal.SIGTERM)
  try:
    s = run_job(RunOptions(input=str(SAMPLE), output_dir=str(d / "out"),
                           checkpoint_dir=str(d / "ckpt"), **FAST), log=log,
                warn=lambda s: None)
  finally:
    stopping.clear()
  assert s["exit_code"] == 143 and s["interrupted"] == 1
  (batch,) = list((d / "ckpt").iterdir())
  assert sorted(os.listdir(batch)) == ["4", "6"]
  return batch


def _copy(checkpoints, tmp_path) -> pathlib.Path:
  root = tmp_path / "ckpt"
  shutil.copytree(checkpoints, root / checkpoints.name)
  return root


def _settings_of(batch: pathlib.Path, step: int) -> pathlib.Path:
  return batch / str(step) / "meta" / "metadata"


@pytest.mark.parametrize("damage", ["meta_garbage", "meta_not_json", "meta_missing_keys",
                                    "state_truncated"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(checkpoints, tmp_path, damage):
  """The checkpoint at step 6 is damaged: the run resumes from step 4, with a warning naming
  the checkpoint folder, and finishes (no JSONDecodeError / KeyError traceback)."""
  root = _copy(checkpoints, tmp_path)
  batch = root / checkpoints.name
  meta = _settings_of(batch, 6)
  if damage == "meta_garbage":
    meta.write_bytes(b"\x00\xff garbage")
  elif damage == "meta_not_json":
    meta.write_text('{"format": "pulse_jax.search.program/1", "settings": ')
  elif damage == "meta_missing_keys":
    doc = json.loads(meta.read_text())
    del doc["rows"]
    meta.write_text(json.dumps(doc))
  else:  # every data file of the state cut to half its length
    for f in (batch / "6" / "state").rglob("*"):
      if f.is_file() and f.stat().st_size > 16:
        f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
  s, lines, warnings = _in_process(tmp_path, root)
  assert s["exit_code"] == 0, warnings
  text = "\n".join(warnings)
  assert f"the checkpoint at step 6 in {batch} cannot be read" in text, text
  assert "using the previous one (step 4)" in text, text
  assert any("resumed from step 4 of 8" in l for l in lines), lines
  assert (batch / "corrupt-step-6").is_dir()  # kept aside for a look, out of orbax's way


def test_every_checkpoint_corrupt_starts_the_batch_over(checkpoints, tmp_path):
  root = _copy(checkpoints, tmp_path)
  batch = root / checkpoints.name
  for step in (4, 6):
    _settings_of(batch, step).write_text("not json")
  s, lines, warnings = _in_process(tmp_path, root)
  assert s["exit_code"] == 0, warnings
  assert "starting this batch over" in "\n".join(warnings), warnings
  assert not any("resumed from step" in l for l in lines), lines
