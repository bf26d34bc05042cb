"""Shared pytest set-up: absl flags parsed, the session's fixtures (helpers: support/harness.py)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest
from absl import flags

from support.harness import builtin_weights

if not flags.FLAGS.is_parsed():
  flags.FLAGS(sys.argv[:1])

# The tests' compiled programs go to a cache of this session (inherited by the subprocesses it
# starts), not to the user's ~/.cache/pulse_jax/xla; removed at the end of the session.
_OWN_XLA_CACHE = None
if "PULSE_JAX_COMPILE_CACHE" not in os.environ:
  _OWN_XLA_CACHE = tempfile.mkdtemp(prefix="pulse_jax_tests_xla_")
  os.environ["PULSE_JAX_COMPILE_CACHE"] = _OWN_XLA_CACHE


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """After each test module: drop the compiled search programs it made. Without this, two
  whole-suite runs (2026-12-06) died with SIGSEGV inside XLA's compiler late in the session;
  the likely cause is the process's memory maps (every compiled program maps code pages;
  Linux allows 65,530 maps a process): with it, the pytest process peaked at 10.5k maps."""
  yield
  if "pulse_jax.runtime.compile" in sys.modules:
    sys.modules["pulse_jax.runtime.compile"].clear_compiled()


def pytest_sessionfinish(session, exitstatus):
  if _OWN_XLA_CACHE:
    shutil.rmtree(_OWN_XLA_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def dcgan_weights(tmp_path_factory):
  """The built-in DCGAN (gan-face-generate wheel), converted into a session-private cache."""
  return builtin_weights(tmp_path_factory.mktemp("cache"))
