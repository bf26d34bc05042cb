"""Running the same `python -m pulse_jax.run` command again: complete outputs are kept,
interrupted ones are searched again (from their newest checkpoint with --checkpoint_dir), and
the final outputs are those of an uninterrupted run. Built-in DCGAN, 8x8 inputs, few steps."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from pulse_jax.job.settings import RunOptions
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLE, assert_same_results, cli, module_command

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

STEMS = ("a", "b", "c")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Three 8x8 inputs (the sample and two flips): three batches with --batch_size=1."""
  d = tmp_path_factory.mktemp("inputs")
  src = np.asarray(Image.open(SAMPLE).convert("RGB"))
  for stem, a in zip(STEMS, (src, src[::-1], src[:, ::-1])):
    Image.fromarray(np.ascontiguousarray(a)).save(d / f"{stem}.png")
  return d


def _job(**kw):
  lines, warnings = [], []
  summary = run_job(RunOptions(**kw), log=lines.append, warn=warnings.append)
  return summary, lines, warnings


def _assert_same_outputs(a: pathlib.Path, b: pathlib.Path) -> None:
  assert_same_results(a, b, STEMS)


# ----------------------------------------------------------------------------- kill -9, run again

def _flags(inputs_dir, out, *extra) -> list[str]:
  """pulse_jax.run's flags: 40 steps, chunks of 5, one input a batch."""
  return [f"--input={inputs_dir}", f"--output_dir={out}", "--steps=40", "--restarts=2",
          "--duplicates=2", "--chunk_size=5", "--batch_size=1", "--eps=0", *extra]


def _batch_dir(ckpt: pathlib.Path, stem: str) -> pathlib.Path | None:
  found = sorted(ckpt.glob(f"batch-{stem}-*")) if ckpt.is_dir() else []
  return found[0] if found else None


def _finished_steps(d: pathlib.Path | None) -> list[int]:
  """The steps of the finalised orbax checkpoints in a batch's folder."""
  if d is None or not d.is_dir():
    return []
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())


def test_killed_run_resumes_when_the_same_command_is_run_again(inputs, tmp_path):
  full, out, ckpt = tmp_path / "full", tmp_path / "out", tmp_path / "ckpt"
  resume = ("--checkpoint_dir=" + str(ckpt), "--checkpoint_every=10")
  uninterrupted = subprocess.Popen(module_command("pulse_jax.run", *_flags(inputs, full)),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  killed = subprocess.Popen(module_command("pulse_jax.run", *_flags(inputs, out, *resume)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:  # kill -9 during the second batch: batch 1 written, batch 2 checkpointed, not done
    deadline = time.monotonic() + 240
    while not ((out / "a" / "report.json").exists()
               and _finished_steps(_batch_dir(ckpt, "b"))):
      assert killed.poll() is None, "the run ended before it could be killed"
      assert time.monotonic() < deadline, "no checkpoint of batch 2 in time"
      time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(60) == -signal.SIGKILL
    assert uninterrupted.wait(240) == 0, uninterrupted.stdout.read()
  finally:
    for p in (killed, uninterrupted):
      if p.poll() is None:
        p.kill()
        p.wait()
  assert not (out / "b" / "report.json").exists() and not (out / "summary.json").exists()
  a_before = {p.name: p.stat().st_mtime_ns for p in (out / "a").iterdir()}

  again = cli("pulse_jax.run", *_flags(inputs, out, *resume), timeout=240)
  assert again.returncode == 0, again.stdout + again.stderr
  log = again.stdout
  assert re.search(r"batch 1/3 \(1 x 8x8 -> 64x64\): skipped: the outputs of \S+a\.png are "
                   r"complete", log), log
  step = re.search(r"batch 2/3 \(1 x 8x8 -> 64x64\): resumed from step (\d+) of 40", log)
  assert step and 10 <= int(step.group(1)) < 40, log
  assert "batch 1/3 (1 x 8x8 -> 64x64) step" not in log  # batch 1 was not searched again
  assert "batch 3/3 (1 x 8x8 -> 64x64) step 40/40" in log
  assert {p.name: p.stat().st_mtime_ns for p in (out / "a").iterdir()} == a_before
  s = json.loads((out / "summary.json").read_text())
  assert s["exit_code"] == 0 and s["kept"] == 1 and s["searched"] == 3
  assert [f.get("kept") for f in s["files"]] == [True, False, False]
  _assert_same_outputs(out, full)  # bit for bit the uninterrupted run's images and latents


# ------------------------------------------------------------------------ the rules, in process

FAST = dict(steps=4, restarts=2, chunk_size=2, eps=0.0, batch_size=1)


@pytest.fixture(scope="module")
def done(inputs, tmp_path_factory):
  """A finished run of the three inputs."""
  out = tmp_path_factory.mktemp("done")
  s, _, _ = _job(input=str(inputs), output_dir=str(out), **FAST)
  assert s["exit_code"] == 0 and s["searched"] == 3
  return out


def _copy(done, tmp_path) -> pathlib.Path:
  out = tmp_path / "out"
  shutil.copytree(done, out)
  return out


def _no_search(monkeypatch):
  from pulse_jax.runtime import loop
  def refuse(*a, **k):
    raise AssertionError("searched although every output is complete")
  monkeypatch.setattr(loop, "search_images", refuse)


def test_the_same_command_again_keeps_everything(inputs, done, tmp_path, monkeypatch):
  out = _copy(done, tmp_path)
  _no_search(monkeypatch)
  # chunk size, micro-batches and the batch size do not change results: still the same command
  s, lines, _ = _job(input=str(inputs), output_dir=str(out), **{**FAST, "chunk_size": 4})
  assert s["exit_code"] == 0 and s["kept"] == 3 and s["failed"] == 0
  assert s["seconds_per_image"] is None
  assert sum("skipped: the outputs of" in l for l in lines) == 3
  _assert_same_outputs(out, done)


def test_other_settings_are_refused(inputs, done, tmp_path):
  out = _copy(done, tmp_path)
  with pytest.raises(UsageError, match=r"exist.*steps \(earlier run: 4, now: 5\).*--overwrite"):
    _job(input=str(inputs), output_dir=str(out), **{**FAST, "steps": 5})
  with pytest.raises(UsageError, match=r"seed \(earlier run: 0, now: 1\)"):
    _job(input=str(inputs), output_dir=str(out), **FAST, seed=1)
  _assert_same_outputs(out, done)  # nothing touched


def test_changed_input_pixels_are_refused(inputs, done, tmp_path):
  out = _copy(done, tmp_path)
  d = tmp_path / "in"
  shutil.copytree(inputs, d)
  Image.open(inputs / "a.png").rotate(90).save(d / "a.png")
  with pytest.raises(UsageError, match=r"[/\\]a \(other settings: input\.image_key"):
    _job(input=str(d), output_dir=str(out), **FAST)


def test_a_summary_of_another_input_is_refused(inputs, done, tmp_path):
  out = _copy(done, tmp_path)
  with pytest.raises(UsageError, match=r"summary\.json \(another run: input"):
    _job(input=str(inputs / "a.png"), output_dir=str(out), **FAST)


def test_incomplete_outputs_are_searched_again(inputs, done, tmp_path, monkeypatch):
  """Without --checkpoint_dir: an input without its report.json (a run killed while writing
  it, or before) is searched again from scratch, with the same results; the others are kept."""
  out = _copy(done, tmp_path)
  (out / "b" / "report.json").unlink()
  (out / "b" / "hr_0.png").write_bytes(b"\x89PNG half written")
  (out / "b" / ".latents.npz.tmp-123").write_bytes(b"left by a kill")
  (out / "c" / "lr_0.png").unlink()  # a listed file missing: incomplete too
  from pulse_jax.runtime import loop
  searched = []
  real = loop.search_images

  def spy(generator, params, ref, **kw):
    searched.append(ref.shape[0])
    return real(generator, params, ref, **kw)
  monkeypatch.setattr(loop, "search_images", spy)
  s, lines, _ = _job(input=str(inputs), output_dir=str(out), **FAST)
  assert s["exit_code"] == 0 and s["kept"] == 1 and searched == [1, 1]
  assert any(l.endswith("b: incomplete outputs of an interrupted run: searching this input "
                        "again") for l in lines), lines
  assert not list((out / "b").glob(".*tmp*"))
  _assert_same_outputs(out, done)


def test_an_unreadable_report_is_refused(inputs, done, tmp_path):
  out = _copy(done, tmp_path)
  (out / "a" / "report.json").write_text("{ not json")
  with pytest.raises(UsageError, match=r"report\.json: unreadable"):
    _job(input=str(inputs), output_dir=str(out), **FAST)


def test_overwrite_searches_everything_again(inputs, done, tmp_path):
  out = _copy(done, tmp_path)
  s, _, _ = _job(input=str(inputs), output_dir=str(out), overwrite=True, **FAST)
  assert s["kept"] == 0 and s["searched"] == 3
  _assert_same_outputs(out, done)


def test_files_are_renamed_into_place(tmp_path):
  from pulse_jax.job import result_files
  p = tmp_path / "x.png"
  with pytest.raises(RuntimeError):
    with result_files.atomic_path(str(p)) as tmp:
      pathlib.Path(tmp).write_bytes(b"partial")
      raise RuntimeError("killed")
  assert not p.exists() and os.listdir(tmp_path) == []
  result_files.save_png(np.zeros((3, 4, 4), np.float32), str(p))
  assert Image.open(p).size == (4, 4) and os.listdir(tmp_path) == ["x.png"]
