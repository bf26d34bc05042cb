"""python -m pulse_jax.evaluate: the registry's flags, two configurations in one command, exit
status and messages (usage 2, a bad ground-truth file 1, named), and the files it writes."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from support.harness import cli, require_builtin_model

MODULE = "pulse_jax.evaluate"
COMMON = ["--factor=8", "--restarts=2", "--chunk_size=3", "--quiet"]


def _hr(folder):
  folder.mkdir()
  rng = np.random.default_rng(5)
  for name in ("p", "q"):
    small = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC).save(folder / f"{name}.png")
  return folder


@pytest.mark.slow
def test_help_lists_the_harness_and_registry_flags():
  p = cli(MODULE, "--help", timeout=120)
  assert p.returncode == 0, p.stderr
  for flag in ("--hr", "--factor", "--configs", "--steps", "--restarts", "--blur_sigma"):
    assert flag in p.stdout
  assert "--input:" not in p.stdout


@pytest.mark.slow
def test_two_configurations_in_one_command(tmp_path):
  require_builtin_model()
  out = tmp_path / "out"
  p = cli(MODULE, f"--hr={_hr(tmp_path / 'hr')}", f"--output_dir={out}",
          "--configs=short:steps=3,long:steps=6", *COMMON, timeout=600)
  assert p.returncode == 0, p.stderr
  ev = json.loads((out / "evaluation.json").read_text())
  assert ev["methods"] == ["nearest", "bicubic", "short", "long"]
  assert [ev["aggregate"][m]["restart_steps"] for m in ("short", "long")] == [6, 12]
  assert "| short |" in p.stdout and "| long |" in p.stdout
  assert sorted(os.listdir(tmp_path)) == ["hr", "out"]


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--factor=8"], "--hr, --output_dir: required"),
    (["--hr=HR", "--output_dir=OUT"], "--factor: required"),
    (["--hr=HR", "--output_dir=OUT", "--factor=8", "--configs=a:nosuch=1"],
     "--configs: a: unknown option 'nosuch'"),
    (["--hr=HR", "--output_dir=OUT", "--factor=8", "--configs=a:steps=0"],
     "--configs: a: --steps: must be"),
    (["--hr=HR", "--output_dir=OUT", "--factor=5"], "--factor: must divide"),
])
def test_usage_errors_name_the_flag(tmp_path, args, words):
  require_builtin_model()
  hr = _hr(tmp_path / "hr")
  args = [a.replace("HR", str(hr)).replace("OUT", str(tmp_path / "out")) for a in args]
  p = cli(MODULE, *args, timeout=300)
  assert p.returncode == 2, p.stderr
  assert words in p.stderr
  assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_bad_ground_truth_file_is_named(tmp_path):
  require_builtin_model()
  hr = _hr(tmp_path / "hr")
  (hr / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  p = cli(MODULE, f"--hr={hr}", f"--output_dir={tmp_path / 'out'}", *COMMON, timeout=300)
  assert p.returncode == 1, p.stderr
  assert "broken.png" in p.stderr and "Traceback" not in p.stderr
  assert not (tmp_path / "out").exists()
