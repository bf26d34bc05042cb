"""The folders a run writes (OUTPUT_DIR, --checkpoint_dir): checked, made, and locked.

`hold(o, writer)` is the job's context manager: before anything is searched it checks that each
folder can be used (not a file, not under a file, writable: UsageError naming the flag and the
fix), makes it, and takes an exclusive lock on it, so that a second run into the same folder
exits at once (UsageError: 'OUTPUT_DIR x is in use by another run (pid N on host H, started
T); ...') instead of doing the work twice or colliding on checkpoint files.

The lock is `fcntl.flock` on LOCK_FILE inside the folder: the kernel releases it when the
process ends, however it ends (`kill -9` included), so a lock file left by a crash never blocks
the next run. The file holds the owner's pid, host and start time (for the message only). Only
process 0 of a multi-process run (the writer) takes it. On exit the lock file is removed, and
a folder made here that is still empty (a run stopped by a usage error) is removed too.
Where flock is not available (no fcntl, or a file system without locks) the run goes on
without a lock, with a warning.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
from typing import Callable, Iterator

from pulse_jax.job.errors import UsageError
from pulse_jax.io.run_files import LOCK as LOCK_FILE

try:
  import fcntl
except ImportError:  # not POSIX: no lock
  fcntl = None

_LABELS = {"output_dir": ("OUTPUT_DIR", "--output_dir"),
           "checkpoint_dir": ("--checkpoint_dir", "--checkpoint_dir")}


def _problem(e: OSError) -> str:
  return f"{type(e).__name__}: {e.strerror or e}"


def prepare_dir(path: str, flag: str) -> list[str]:
  """Makes folder `path` (the value of `flag`) if needed; returns the folders made (deepest
  last). UsageError when it is a file, is under a file, or cannot be made."""
  if os.path.lexists(path) and not os.path.isdir(path):
    what = "a broken symbolic link" if os.path.islink(path) else "a file"
    raise UsageError(f"{flag}={path} is {what}, not a folder; choose another {flag} (or "
                     "remove it)")
  missing, p = [], os.path.abspath(path)
  while not os.path.lexists(p):
    missing.append(p)
    parent = os.path.dirname(p)
    if parent == p:
      break
    p = parent
  if os.path.lexists(p) and not os.path.isdir(p):
    raise UsageError(f"{flag}={path} cannot be made: {p} is a file, not a folder; choose "
                     f"another {flag}")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UsageError(f"{flag}={path} cannot be made ({_problem(e)}); choose a folder you can "
                     f"write to with {flag}") from None
  return list(reversed(missing))


class _Lock:
  """One held lock: the open lock file (fd) in `folder`; `release` removes the file."""

  def __init__(self, folder: str, fd: int | None):
    self.folder, self.fd = folder, fd
    self.path = os.path.join(folder, LOCK_FILE)

  def release(self) -> None:
    if self.fd is None:
      return
    with contextlib.suppress(OSError):
      os.unlink(self.path)  # while still held: a run waiting on this file retries (`acquire`)
    os.close(self.fd)
    self.fd = None


def owner_text(fd: int) -> str:
  """'pid N on host H, started T' from an open lock file (what its owner wrote)."""
  try:
    doc = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
  except (OSError, ValueError):
    doc = None
  if not isinstance(doc, dict):
    return "its pid and host not recorded yet"
  return (f"pid {doc.get('pid', '?')} on host {doc.get('host', '?')}, started "
          f"{doc.get('started', '?')}")


def acquire(folder: str, name: str, flag: str, warn: Callable[[str], None]) -> _Lock:
  """Takes the lock of `folder` (`name`: how messages call it, e.g. 'OUTPUT_DIR runs/demo').
  UsageError when another process holds it, or when the folder is not writable."""
  path = os.path.join(folder, LOCK_FILE)
  if fcntl is None:
    return _Lock(folder, None)
  for _ in range(20):
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                   | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
      raise UsageError(f"{name} is not writable ({_problem(e)} on {path}); choose a folder "
                       f"you can write to with {flag}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = owner_text(fd)
      os.close(fd)
      raise UsageError(f"{name} is in use by another run ({owner}); wait for it to finish, "
                       f"or choose another {flag}") from None
    except OSError as e:
      os.close(fd)
      if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        warn(f"warning: {name}: cannot be locked on this file system ({_problem(e)}); make "
             "sure no other run writes into it at the same time")
        return _Lock(folder, None)
      raise UsageError(f"{name} cannot be locked ({_problem(e)} on {path})") from None
    try:  # still the file at `path`? (its owner may have removed it while we opened it)
      same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
      same = False
    if not same:
      os.close(fd)
      continue
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError as e:  # a full disk: the lock holds all the same
      if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        os.close(fd)
        raise UsageError(f"{name} is not writable ({_problem(e)} on {path}); choose a folder "
                         f"you can write to with {flag}") from None
    return _Lock(folder, fd)
  raise UsageError(f"{name}: could not take its lock {path} (removed and made again by other "
                   "runs each time); try again")


@contextlib.contextmanager
def hold(o, writer: bool, warn: Callable[[str], None] | None = None) -> Iterator[None]:
  """Checks, makes and locks o.output_dir and o.checkpoint_dir (those that are set) for the
  duration of the block; nothing on processes other than the writer (process 0)."""
  warn = warn or (lambda s: None)
  folders = [(k, getattr(o, k, None)) for k in ("output_dir", "checkpoint_dir")]
  folders = [(k, str(v)) for k, v in folders if v]
  if not writer or not folders:
    yield
    return
  made: list[str] = []
  locks: list[_Lock] = []
  try:
    seen = set()
    for key, folder in folders:
      label, flag = _LABELS[key]
      made += prepare_dir(folder, flag)
      real = os.path.realpath(folder)
      if real in seen:  # --checkpoint_dir = OUTPUT_DIR: one lock (flock would block itself)
        continue
      seen.add(real)
      locks.append(acquire(folder, f"{label} {folder}", flag, warn))
    yield
  finally:
    for lock in reversed(locks):
      lock.release()
    for d in reversed(made):  # only folders made here and still empty
      with contextlib.suppress(OSError):
        os.rmdir(d)
