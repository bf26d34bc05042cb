"""Two runs into the same OUTPUT_DIR or --checkpoint_dir at once (issue 19): the second exits 2
naming the first's pid and host; a lock left by a killed run (kill -9) blocks nothing.
Built-in DCGAN, the 8x8 sample, 2 steps x 2 restarts."""
import fcntl
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from pulse_jax.job import run_lock
from pulse_jax.job.settings import RunOptions
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLE, cli

FAST = dict(input=str(SAMPLE), steps=2, restarts=2)
# A process that takes the lock of sys.argv[1] as a run does (flock on the lock file, its pid,
# host and start time written into it), says so, and waits.
HOLDER = """
import fcntl, json, os, socket, sys, time
f = open(os.path.join(sys.argv[1], ".pulse_jax.lock"), "a+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
f.flush()
print("locked", flush=True)
time.sleep(120)
"""


def job(**kw):
  return run_job(RunOptions(**{**FAST, **kw}), log=lambda s: None, warn=lambda s: None)


def start_holder(folder: pathlib.Path) -> subprocess.Popen:
  """A second process holding `folder`'s run lock (killed by the caller)."""
  p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE,
                       text=True)
  assert p.stdout.readline().strip() == "locked"
  return p


def test_a_second_run_into_a_locked_output_dir_exits_2_naming_pid_and_host(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  holder = start_holder(out)
  try:
    r = cli("pulse_jax.run", f"--input={SAMPLE}", f"--output_dir={out}", "--steps=2",
            "--restarts=2", timeout=120)
  finally:
    holder.kill()
    holder.wait()
  assert r.returncode == 2, r.stderr
  assert (f"pulse_jax.run: error: OUTPUT_DIR {out} is in use by another run (pid "
          f"{holder.pid} on host {socket.gethostname()}, started now)") in r.stderr
  assert "wait for it to finish, or choose another --output_dir" in r.stderr
  assert "Traceback" not in r.stderr
  assert sorted(os.listdir(out)) == [run_lock.LOCK_FILE]  # nothing written by the second


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  holder = start_holder(out)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  lock = out / run_lock.LOCK_FILE
  assert json.loads(lock.read_text())["pid"] == holder.pid  # left behind, stale
  s = job(output_dir=str(out))
  assert s["exit_code"] == 0 and s["searched"] == 1
  assert not lock.exists()  # removed when the run ends


def test_a_locked_checkpoint_dir_is_refused(tmp_path):
  ckpt = tmp_path / "ckpt"
  ckpt.mkdir()
  with open(ckpt / run_lock.LOCK_FILE, "w") as f:  # another open file: flock conflicts
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(json.dumps({"pid": 4242, "host": "elsewhere", "started": "then"}))
    f.flush()
    with pytest.raises(UsageError, match=r"--checkpoint_dir .*ckpt is in use by another run "
                                         r"\(pid 4242 on host elsewhere, started then\)"):
      job(output_dir=str(tmp_path / "out"), checkpoint_dir=str(ckpt))
  assert not (tmp_path / "out").exists()  # made for the lock, empty: removed again


def test_checkpoint_dir_equal_to_output_dir_takes_one_lock(tmp_path):
  out = tmp_path / "out"
  s = job(output_dir=str(out), checkpoint_dir=str(out))
  assert s["exit_code"] == 0 and not (out / run_lock.LOCK_FILE).exists()


def test_no_lock_without_folders_or_on_other_processes(tmp_path):
  o = RunOptions(output_dir=None)
  with run_lock.hold(o, writer=True):
    pass
  o = RunOptions(output_dir=str(tmp_path / "out"))
  with run_lock.hold(o, writer=False):
    assert not (tmp_path / "out").exists()
  with run_lock.hold(o, writer=True):
    assert (tmp_path / "out" / run_lock.LOCK_FILE).is_file()
    with pytest.raises(UsageError, match="in use by another run"):
      with run_lock.hold(o, writer=True):
        pass
  assert not (tmp_path / "out").exists()
