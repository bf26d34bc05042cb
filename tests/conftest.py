"""Shared pytest set-up: absl flags parsed, fixture locations, small generators."""
from __future__ import annotations

import os
import sys
from pathlib import Path

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
  from pulse_jax import models
  try:
    models.builtin_source(models.DEFAULT_MODEL)
  except FileNotFoundError as e:
    pytest.skip(str(e))
  os.environ.setdefault("PULSE_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
  return models.load(None, log=lambda s: None)
