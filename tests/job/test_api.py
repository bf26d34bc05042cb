"""The Python API (pulse_jax.load_generator / upsample): the README's example as written, the
same results as `python -m pulse_jax.run` with the same settings, errors as exceptions with the
command's messages, in-memory inputs, nothing written without output_dir. Built-in DCGAN."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import pulse_jax
from support.harness import REPO, SAMPLE, builtin_generator, cli

# few restarts and steps, 2 kept images, a seed that is not the default
OPTS = dict(restarts=3, steps=6, keep=2, seed=3, eps=0.0, chunk_size=3, learning_rate=0.3)
FLAGS = ["--restarts=3", "--steps=6", "--duplicates=2", "--seed=3", "--eps=0", "--chunk_size=3",
         "--learning_rate=0.3"]


@pytest.fixture(scope="module")
def g():
  return builtin_generator()


def _readme_example() -> str:
  text = (REPO / "README.md").read_text()
  section = text[text.index("## Python API"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_runs_as_written(g, tmp_path, monkeypatch, capsys):
  """The example from a checkout's root: here a folder with the sample at the same path."""
  (tmp_path / "pulse_jax").mkdir()
  (tmp_path / "pulse_jax" / "samples").symlink_to(SAMPLE.parent)
  monkeypatch.chdir(tmp_path)
  code = _readme_example()
  assert "pulse_jax.upsample(" in code and "load_generator()" in code
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert re.search(r"^(True|False) \[[0-9.e-]+, [0-9.e-]+\]$", out, re.M), out
  assert Image.open(tmp_path / "hr.png").size == (64, 64)
  assert sorted(os.listdir(tmp_path)) == ["hr.png", "pulse_jax"]  # nothing else written


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("cli")
  p = cli("pulse_jax.run", f"--input={SAMPLE}", f"--output_dir={out}", "--quiet", *FLAGS,
          timeout=300)
  assert p.returncode == 0, p.stderr
  return out


@pytest.mark.slow
def test_same_images_and_l2_as_the_command(g, cli_run, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  r = pulse_jax.upsample(str(SAMPLE), g, quiet=True, warn=lambda s: None, **OPTS)
  assert os.listdir(tmp_path) == []  # no output_dir: no files
  rep = json.loads((cli_run / "astronaut_8x8" / "report.json").read_text())
  assert len(r.images) == len(r.lr_images) == 2
  for k, o in enumerate(rep["outputs"]):
    for ours, name in ((r.images[k], o["hr"]), (r.lr_images[k], o["lr"])):
      theirs = Image.open(cli_run / "astronaut_8x8" / name)
      assert ours.size == theirs.size and ours.tobytes() == theirs.tobytes(), name
  assert r.l2 == [o["l2"] for o in rep["outputs"]]
  assert r.within_eps is rep["within_eps"] is False
  assert [x["l2"] for x in r.report["restarts"]] == [x["l2"] for x in rep["restarts"]]
  assert r.report["settings"] == rep["settings"]
  # the same options with the same sources (the input and output folder aside)
  skip = ("input", "output_dir")
  assert ({k: v for k, v in r.report["options"].items() if k not in skip}
          == {k: v for k, v in rep["options"].items() if k not in skip})
  assert rep["preset"] == r.report["preset"] == "dcgan-digiface"
  assert rep["options"]["steps"] == {"value": 6, "source": "given"}
  assert rep["options"]["lr_schedule"] == {"value": "linear1cycledrop", "source": "preset"}
  assert rep["options"]["learning_rate"] == {"value": 0.3, "source": "given"}
  assert {o["source"] for o in rep["options"].values()} == {"given", "preset", "default"}
  assert "noise_type" not in rep["options"] and "noise_type" not in rep["settings"]
  summary = json.loads((cli_run / "summary.json").read_text())
  assert summary["preset"] == "dcgan-digiface" and summary["options"] == rep["options"]
  with np.load(cli_run / "astronaut_8x8" / "latents.npz") as z:
    for k in z.files:
      np.testing.assert_array_equal(r.latents[k], z[k], err_msg=k)


def test_pictures_lists_and_output_dir(g, cli_run, tmp_path):
  pixels = np.asarray(Image.open(SAMPLE).convert("RGB"))
  rs = pulse_jax.upsample([pixels.transpose(2, 0, 1).astype(np.float32) / 255.0,
                           Image.open(SAMPLE)], g, quiet=True, warn=lambda s: None,
                          output_dir=tmp_path / "o", **OPTS)
  assert isinstance(rs, list) and [r.input for r in rs] == ["<array 0>", "<PIL image 1>"]
  want = Image.open(cli_run / "astronaut_8x8" / "hr_0.png").tobytes()
  assert all(r.images[0].tobytes() == want for r in rs)  # the picture, whatever its container
  assert (tmp_path / "o" / "input_0" / "hr_1.png").is_file()
  assert (tmp_path / "o" / "summary.json").is_file() and rs[1].output_dir.endswith("input_1")
  advice = rs[0].report["advice"]  # eps=0: not within eps; the files are written
  assert "saved anyway" in advice and "--steps" not in advice and "steps=18" in advice, advice
  # the same call again: the complete outputs are kept, read back from the files
  again = pulse_jax.upsample([pixels, Image.open(SAMPLE)], g, quiet=True, warn=lambda s: None,
                             output_dir=tmp_path / "o", **OPTS)
  assert [r.images[0].tobytes() for r in again] == [want, want] and again[0].latents is None
  assert "--steps" not in again[0].report["advice"]  # kept: read back, translated the same way


def test_errors_are_exceptions_with_the_commands_messages(g):
  with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) stpes; valid: .*keep"):
    pulse_jax.upsample(str(SAMPLE), g, stpes=3)
  with pytest.raises(TypeError, match="keep and duplicates are the same option"):
    pulse_jax.upsample(str(SAMPLE), g, keep=2, duplicates=2)
  with pytest.raises(pulse_jax.UsageError, match=r"^steps: must be an integer >= 1 \(got 0\)$"):
    pulse_jax.upsample(str(SAMPLE), g, steps=0)
  with pytest.raises(pulse_jax.UsageError, match=r'^weights="/nonexistent": neither'):
    pulse_jax.load_generator("/nonexistent")
  with pytest.raises(pulse_jax.InputError, match=r"<array 0>: 12x12 does not divide"):
    pulse_jax.upsample(np.zeros((12, 12, 3), np.uint8), g, steps=1, restarts=1, quiet=True)
  with pytest.raises(pulse_jax.InputError, match=r"must hold values in \[0, 1\]"):
    pulse_jax.upsample(np.full((8, 8, 3), 2.0), g, steps=1, restarts=1, quiet=True)
  assert issubclass(pulse_jax.UsageError, ValueError)
  assert issubclass(pulse_jax.InputError, ValueError)


def test_api_keywords_translate_the_commands_flags():
  """`keywords`: each flag as the API spells it (keep for --duplicates, generator for --weights,
  inputs for --input), values as Python literals, other commands' flags (in backticks) and
  unknown flags unchanged."""
  from pulse_jax.api import keywords
  assert keywords("more steps (--steps=150); or pass --fit=resize.") == \
      'more steps (steps=150); or pass fit="resize".'
  assert keywords("--duplicates=3 exceeds --restarts=2; --noalign, --grayscale (--eps=0.5)") == \
      "keep=3 exceeds restarts=2; align=False, grayscale=True (eps=0.5)"
  assert keywords("--weights=/w: bad. Fix: `python -m weights_convert --source=F --overwrite`.") \
      == 'generator="/w": bad. Fix: `python -m weights_convert --source=F --overwrite`.'
  assert keywords("--input: none; --steps: must be; --helpfull; searching with "
                  "--loss_str='100*L2'") == \
      "inputs: none; steps: must be; --helpfull; searching with loss_str='100*L2'"
  assert keywords("note: the dcgan generator has no noise: --noise_type and --tile_latent do "
                  "not apply") == \
      "note: the dcgan generator has no noise: noise_type and tile_latent do not apply"


def test_api_errors_and_advice_speak_keywords_and_do_not_say_saved(g, tmp_path):
  """The command's advice through the API: keywords, and "returned", not "saved", when
  nothing is written (no output_dir)."""
  with pytest.raises(pulse_jax.InputError) as e:
    pulse_jax.upsample(np.zeros((12, 12, 3), np.uint8), g, steps=1, restarts=1, quiet=True)
  assert 'pass fit="resize"' in str(e.value) and "--" not in str(e.value), str(e.value)
  warnings = []
  r = pulse_jax.upsample(str(SAMPLE), g, quiet=True, warn=warnings.append, **OPTS)
  assert not r.within_eps and r.output_dir is None  # eps=0: the advice is given
  assert r.spread is None and r.spread_png is None  # none within eps: no spread map
  assert r.steps_run == OPTS["steps"] and r.diversity == r.report["candidates"]["diversity"]
  for text in (r.report["advice"], *warnings):
    assert "--" not in text and "saved" not in text, text
    assert f"steps={OPTS['steps'] * 3}" in text and "returned anyway" in text, text
  assert os.listdir(tmp_path) == []
  with pytest.raises(pulse_jax.UsageError, match=r"^inputs: no inputs given$"):
    pulse_jax.upsample([], g)


@pytest.mark.slow
def test_spread_diversity_and_steps_run_fresh_and_kept(g, tmp_path):
  """The range of faces on a Result: the spread map of the within-eps restarts ([H, W]
  float32, its heat map's file), the diversity of the kept images, the steps run; the same
  read back from the files of an earlier run (kept, not searched again)."""
  # every restart of the sample within eps: a map; stop_within=0: every step runs (the
  # built-in preset would end the search at step 1, when its 3 restarts are within eps)
  opts = dict(OPTS, eps=0.15, stop_within=0)
  r = pulse_jax.upsample(str(SAMPLE), g, quiet=True, warn=lambda s: None,
                         output_dir=tmp_path, **opts)
  assert r.within_eps and r.report["spread"]["restarts"] >= 2
  assert r.spread.shape == r.images[0].size[::-1] and r.spread.dtype == np.float32
  assert np.nanmean(r.spread) == pytest.approx(r.report["spread"]["mean"], rel=1e-6)
  assert r.spread_png == os.path.join(r.output_dir, "spread.png")
  assert Image.open(r.spread_png).size == r.images[0].size
  np.testing.assert_array_equal(np.load(os.path.join(r.output_dir, "spread.npy")), r.spread)
  assert r.diversity == r.report["candidates"]["diversity"] and r.diversity > 0
  assert r.steps_run == r.report["stopping"]["steps_run"] == OPTS["steps"]
  kept = pulse_jax.upsample(str(SAMPLE), g, quiet=True, warn=lambda s: None,
                            output_dir=tmp_path, **opts)
  assert kept.latents is None   # read back from the files
  np.testing.assert_array_equal(kept.spread, r.spread)
  assert (kept.spread_png, kept.diversity, kept.steps_run) == (r.spread_png, r.diversity,
                                                               r.steps_run)
  # without output_dir: the map is returned, no file
  mem = pulse_jax.upsample(str(SAMPLE), g, quiet=True, warn=lambda s: None, **opts)
  np.testing.assert_array_equal(mem.spread, r.spread)
  assert mem.spread_png is None and mem.report["spread"]["file"] is None
