"""The shared test harness (tests/support/harness.py): its paths, `python` runs and run-folder
comparisons do what the other test files rely on."""
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from support import harness, scale_worker


def test_paths_name_the_checkout_and_its_samples():
  assert (harness.REPO / "pulse_jax" / "__init__.py").is_file()
  assert harness.SAMPLE.parent == harness.SAMPLES and Image.open(harness.SAMPLE).size == (8, 8)
  assert (harness.TEST_DATA / "astronaut.jpg").is_file()
  assert scale_worker.REPO == str(harness.REPO)  # moved into tests/support/, same checkout


def test_fixture_path_skips_naming_the_missing_fixture():
  with pytest.raises(pytest.skip.Exception, match="no-such-fixture.npz"):
    harness.fixture_path("no-such-fixture.npz")


def test_cli_runs_the_module_with_the_options_given(tmp_path):
  p = harness.cli("json.tool", "--help", timeout=60)
  assert p.returncode == 0 and "usage:" in p.stdout and p.stderr == ""
  p = harness.run_python("-c", "import os, sys; print(os.getcwd()); print(os.environ['X'], "
                         "file=sys.stderr); sys.exit(3)", cwd=tmp_path,
                         env={**os.environ, "X": "from env"}, timeout=60)
  assert (p.returncode, p.stdout.strip(), p.stderr.strip()) == (3, str(tmp_path), "from env")
  p = harness.run_python("-c", "import sys; print('a', flush=True); print('b', file=sys.stderr)",
                         merge_stderr=True, timeout=60)
  assert p.stdout.split() == ["a", "b"] and p.stderr is None
  assert harness.module_command("m", 1, tmp_path)[1:] == ["-m", "m", "1", str(tmp_path)]


def test_scale_worker_runs_as_a_script():
  p = harness.run_python(scale_worker.WORKER, "--help", cwd=harness.REPO, timeout=60)
  assert p.returncode == 0 and "--meshes" in p.stdout, p.stderr


def _run_folder(d: pathlib.Path, pixel: int) -> pathlib.Path:
  (d / "a").mkdir(parents=True)
  Image.fromarray(np.full((2, 2), pixel, np.uint8)).save(d / "a" / "hr_0.png")
  np.savez(d / "a" / "latents.npz", latent=np.arange(3.0))
  return d


def test_assert_same_results_compares_images_and_latents_bit_for_bit(tmp_path):
  a, b = _run_folder(tmp_path / "a", 7), _run_folder(tmp_path / "b", 7)
  harness.assert_same_results(a, b, ["a"])
  assert sorted(harness.result_files(a, ["a"])) == ["a/hr_0.png", "a/latents/latent"]
  with pytest.raises(AssertionError, match="a/hr_0.png"):
    harness.assert_same_results(a, _run_folder(tmp_path / "c", 8), ["a"])
  np.savez(b / "a" / "latents.npz", latent=np.arange(3.0) + 1e-12)
  with pytest.raises(AssertionError, match="a/latents/latent"):
    harness.assert_same_results(a, b, ["a"])
