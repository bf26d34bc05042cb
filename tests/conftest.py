"""Shared pytest set-up: absl flags parsed, fixture locations, small generators."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from absl import flags

if not flags.FLAGS.is_parsed():
  flags.FLAGS(sys.argv[:1])

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("PULSE_JAX_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_path(name: str) -> Path:
  """Path of a reference fixture; skips the test with the reason when it is absent."""
  path = FIXTURES / name
  if not path.exists():
    pytest.skip(f"reference fixture {path} absent (set PULSE_JAX_FIXTURES to the fixtures folder)")
  return path


@pytest.fixture(scope="session")
def dcgan_weights(tmp_path_factory):
  """The built-in DCGAN (gan-face-generate wheel), converted into a session-private cache."""
  from pulse_jax.job import builtin_models
  try:
    builtin_models.builtin_source(builtin_models.DEFAULT_MODEL)
  except FileNotFoundError as e:
    pytest.skip(str(e))
  os.environ.setdefault("PULSE_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
  return builtin_models.load(None, log=lambda s: None)


def result_files(d: Path, stems) -> dict:
  """The result files of the input folders `stems` of run folder `d`: PNG bytes of every
  hr_/lr_ image and the arrays of latents.npz."""
  out = {}
  for stem in stems:
    for p in sorted((d / stem).glob("[hl]r_*.png")):
      out[f"{stem}/{p.name}"] = p.read_bytes()
    with np.load(d / stem / "latents.npz") as z:
      out.update({f"{stem}/latents/{k}": z[k] for k in z.files})
  return out


def assert_same_results(a: Path, b: Path, stems) -> None:
  """Bit for bit the same images and latents in run folders `a` and `b` (`result_files`)."""
  x, y = result_files(a, stems), result_files(b, stems)
  assert sorted(x) == sorted(y)
  for k in x:
    if isinstance(x[k], bytes):
      assert x[k] == y[k], k
    else:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)
