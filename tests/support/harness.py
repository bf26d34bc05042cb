"""The tests' one harness: shared paths, the built-in model, `python -m` runs, run-folder checks.

Test files import it as `from support.harness import ...` (tests/ is on sys.path: the rootdir
conftest.py lives there). Nothing here is a pytest fixture; tests/conftest.py wraps what needs one.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Callable, Iterable, Mapping

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "tests" / "data"
FIXTURES = pathlib.Path(os.environ.get("PULSE_JAX_FIXTURES", REPO.parent / "shared" / "fixtures"))
SAMPLES = REPO / "pulse_jax" / "samples"
SAMPLE = SAMPLES / "astronaut_8x8.png"   # an 8x8 RGB photo: the tests' default input


def fixture_path(name: str) -> pathlib.Path:
  """Path of a reference fixture; skips the test with the reason when it is absent."""
  path = FIXTURES / name
  if not path.exists():
    pytest.skip(f"reference fixture {path} absent (set PULSE_JAX_FIXTURES to the fixtures folder)")
  return path


# ----------------------------------------------------------------------------- built-in model

def require_builtin_model() -> None:
  """Skips the test (with the reason) when the built-in DCGAN (gan-face-generate) is absent."""
  from pulse_jax.job import builtin_models
  try:
    builtin_models.builtin_source(builtin_models.DEFAULT_MODEL)
  except FileNotFoundError as e:
    pytest.skip(str(e))


def builtin_generator():
  """`pulse_jax.load_generator()`: the built-in DCGAN as the API's model; skips when absent."""
  require_builtin_model()
  import pulse_jax
  return pulse_jax.load_generator()


def builtin_weights(cache_dir: os.PathLike):
  """The built-in DCGAN's GeneratorWeights (kind 'dcgan'), converted into `cache_dir` unless
  PULSE_JAX_CACHE names a cache already; skips when absent."""
  require_builtin_model()
  from pulse_jax.job import builtin_models
  os.environ.setdefault("PULSE_JAX_CACHE", str(cache_dir))
  return builtin_models.load(None, log=lambda s: None)


# ----------------------------------------------------------------------------- subprocesses

def python_command(*args) -> list[str]:
  """`python ARGS` with this interpreter, every argument as a string."""
  return [sys.executable, *map(str, args)]


def module_command(module: str, *args) -> list[str]:
  """`python -m MODULE ARGS` with this interpreter, every argument as a string."""
  return python_command("-m", module, *args)


def run_python(*args, cwd: os.PathLike | None = None, env: Mapping[str, str] | None = None,
               timeout: float = 300, merge_stderr: bool = False,
               preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
  """Runs `python ARGS` (`python_command`) to its end: text stdout and stderr captured.

  cwd / env: the child's (None: this process's); timeout: seconds before
  subprocess.TimeoutExpired; merge_stderr: stderr into stdout (interleaved as written;
  `.stderr` is then None); preexec_fn: run in the child before Python starts (resource limits).
  """
  return subprocess.run(python_command(*args), cwd=cwd, env=env, timeout=timeout, text=True,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                        preexec_fn=preexec_fn)


def cli(module: str, *args, **options) -> subprocess.CompletedProcess:
  """Runs `python -m MODULE ARGS` to its end (`run_python`'s keyword options and result)."""
  return run_python("-m", module, *args, **options)


# ----------------------------------------------------------------------------- run folders

def result_files(d: pathlib.Path, stems: Iterable[str]) -> dict:
  """The result files of the input folders `stems` of run folder `d`: '<stem>/<name>' -> PNG
  bytes of every hr_/lr_ image, '<stem>/latents/<key>' -> each array of latents.npz."""
  out = {}
  for stem in stems:
    for p in sorted((d / stem).glob("[hl]r_*.png")):
      out[f"{stem}/{p.name}"] = p.read_bytes()
    with np.load(d / stem / "latents.npz") as z:
      out.update({f"{stem}/latents/{k}": z[k] for k in z.files})
  return out


def assert_same_files(x: Mapping, y: Mapping) -> None:
  """The same keys, and bit for bit the same values (bytes or arrays), in `x` and `y` (each as
  `result_files` returns)."""
  assert sorted(x) == sorted(y)
  for k in x:
    if isinstance(x[k], bytes):
      assert x[k] == y[k], k
    else:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def assert_same_results(a: pathlib.Path, b: pathlib.Path, stems: Iterable[str]) -> None:
  """Bit for bit the same images and latents in run folders `a` and `b` (`result_files`)."""
  stems = tuple(stems)
  assert_same_files(result_files(a, stems), result_files(b, stems))
