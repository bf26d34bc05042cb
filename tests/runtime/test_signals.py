"""SIGTERM and SIGINT stop `python -m pulse_jax.run` cleanly (issue 19, signals).

The first signal stops the search between chunks: the running batch is checkpointed (with
--checkpoint_dir), summary.json and index.html list what is done (the rest 'interrupted'),
no traceback, exit 128 + the signal (143, 130); the same command then resumes, and its final
images are bit for bit those of an uninterrupted run. Built-in DCGAN, 8x8 inputs; each
process is run with a timeout.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from pulse_jax.runtime import stopping
from support.harness import SAMPLE, assert_same_results, cli, module_command

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

STEMS = ("a", "b")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Two 8x8 inputs (the sample and its flip): two batches with --batch_size=1."""
  d = tmp_path_factory.mktemp("inputs")
  src = np.asarray(Image.open(SAMPLE).convert("RGB"))
  for stem, a in zip(STEMS, (src, src[::-1])):
    Image.fromarray(np.ascontiguousarray(a)).save(d / f"{stem}.png")
  return d


def _flags(inputs_dir, out, *extra) -> list[str]:
  """pulse_jax.run's flags: chunks of 5, one input a batch (--steps: in `extra`)."""
  return [f"--input={inputs_dir}", f"--output_dir={out}", "--restarts=2", "--duplicates=2",
          "--chunk_size=5", "--batch_size=1", "--eps=0", *extra]


def _command(*flags) -> list[str]:
  return module_command("pulse_jax.run", *flags)


def _signal_when(cmd, pattern: str, signum: int, timeout: float = 240):
  """Runs `cmd`, sends `signum` after the first stdout line matching `pattern`; returns
  (exit status, stdout, stderr, seconds from the signal to the exit)."""
  p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  err: list[str] = []
  reader = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
  reader.start()
  out, sent = [], None
  killer = threading.Timer(timeout, p.kill)
  killer.start()
  try:
    for line in p.stdout:
      out.append(line)
      if sent is None and re.search(pattern, line):
        p.send_signal(signum)
        sent = time.monotonic()
    rc = p.wait()
  finally:
    killer.cancel()
    if p.poll() is None:
      p.kill()
      p.wait()
  reader.join(10)
  assert sent is not None, "".join(out) + "".join(err)
  return rc, "".join(out), "".join(err), time.monotonic() - sent


def test_sigterm_checkpoints_summarises_and_the_same_command_resumes(inputs, tmp_path):
  full, out, ckpt = tmp_path / "full", tmp_path / "out", tmp_path / "ckpt"
  steps = "--steps=60"
  resume = (steps, f"--checkpoint_dir={ckpt}", "--checkpoint_every=10")
  uninterrupted = subprocess.Popen(_command(*_flags(inputs, full, steps)), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
  try:
    rc, log, err, took = _signal_when(_command(*_flags(inputs, out, *resume)),
                                      r"batch 2/2 .* step 15/60", signal.SIGTERM)
    assert uninterrupted.wait(240) == 0, uninterrupted.stdout.read()
  finally:
    if uninterrupted.poll() is None:
      uninterrupted.kill()
      uninterrupted.wait()
  assert rc == 143, log + err
  assert took < 30, took
  assert "Traceback" not in err, err
  assert "SIGTERM received" in err and "stopped by SIGTERM at step" in err, err
  stopped = int(re.search(r"stopped by SIGTERM at step (\d+)/60 \(checkpoint saved in ", err)
                .group(1))
  assert 15 <= stopped < 60, err
  s = json.loads((out / "summary.json").read_text())
  assert s["exit_code"] == 143 and s["interrupted"] == 1 and s["searched"] == 1
  assert [f["status"] for f in s["files"]][1] == "interrupted"
  assert (out / "index.html").is_file() and (out / "a" / "report.json").is_file()
  assert not (out / "b" / "report.json").exists()

  again = cli("pulse_jax.run", *_flags(inputs, out, *resume), timeout=240)
  assert again.returncode == 0, again.stdout + again.stderr
  assert re.search(r"batch 1/2 .*: skipped: the outputs of \S+a\.png are complete", again.stdout)
  assert f"batch 2/2 (1 x 8x8 -> 64x64): resumed from step {stopped} of 60" in again.stdout, (
      again.stdout)
  assert_same_results(out, full, STEMS)  # bit for bit the uninterrupted run's outputs


def test_sigint_stops_without_a_traceback(inputs, tmp_path):
  out = tmp_path / "out"
  rc, log, err, took = _signal_when(_command(*_flags(inputs / "a.png", out, "--steps=2000")),
                                    r"step 10/2000", signal.SIGINT)
  assert rc == 130, log + err
  assert took < 30, took
  assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
  assert "stopped by SIGINT at step" in err and "no checkpoint: no --checkpoint_dir" in err, err
  s = json.loads((out / "summary.json").read_text())
  assert s["exit_code"] == 130 and s["interrupted"] == 1 and s["failed"] == 0
  assert (out / "index.html").is_file()


def test_the_api_installs_no_handler(tmp_path):
  """`pulse_jax.upsample` (the job without the command) leaves the signal handlers alone."""
  import pulse_jax
  before = {s: signal.getsignal(s) for s in stopping.SIGNALS}
  pulse_jax.upsample(str(SAMPLE), steps=2, restarts=2)
  assert {s: signal.getsignal(s) for s in stopping.SIGNALS} == before
  assert stopping.requested() is None


def test_handlers_are_restored_after_the_command():
  before = {s: signal.getsignal(s) for s in stopping.SIGNALS}
  with stopping.handle_signals():
    assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
  assert {s: signal.getsignal(s) for s in stopping.SIGNALS} == before
