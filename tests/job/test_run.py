"""The job end to end (python -m pulse_jax.run) on the built-in DCGAN, with few restarts/steps."""
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from pulse_jax.job.settings import RunOptions
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLES, TEST_DATA, cli

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

FAST = dict(steps=20, restarts=4, chunk_size=10)


def _quiet_log():
  lines = []
  return lines, lines.append


def _job(**kw):
  lines, log = _quiet_log()
  warnings = []
  summary = run_job(RunOptions(**kw), log=log, warn=warnings.append)
  return summary, lines, warnings


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
  """The default job (shipped samples, built-in DCGAN) with eps=0: nobody reaches it."""
  out = tmp_path_factory.mktemp("samples_run")
  summary, lines, warnings = _job(output_dir=str(out), eps=0.0, duplicates=2,
                                  save_intermediate=True, **FAST)
  return out, summary, lines, warnings


def test_default_job_on_the_samples(sample_run):
  out, s, lines, _ = sample_run
  assert s["inputs"] == 2 and s["searched"] == 2 and s["failed"] == 0 and s["exit_code"] == 0
  assert s["settings"]["loss_str"] == "100*L2" and s["settings"]["seed"] == 0
  assert s["options"]["loss_str"] == {"value": "100*L2", "source": "preset"}
  assert any("step 20/20" in l and "ETA" in l for l in lines)
  assert json.loads((out / "summary.json").read_text())["inputs"] == 2
  for stem, size in (("astronaut_8x8", 8), ("hopper_4x4", 4)):
    d = out / stem
    for k in range(2):
      assert Image.open(d / f"hr_{k}.png").size == (64, 64)
      assert Image.open(d / f"lr_{k}.png").size == (size, size)
    rep = json.loads((d / "report.json").read_text())
    with np.load(d / "latents.npz") as z:  # every restart's best iterate; the kept ones marked
      assert sorted(z.files) == ["kept", "latent", "rank"] and z["latent"].shape == (4, 1, 100)
      assert z["kept"].tolist() == [o["restart"] for o in rep["outputs"]]
      assert sorted(z["rank"].tolist()) == [0, 1, 2, 3]
      assert [int(z["rank"][r]) for r in z["kept"]] == [0, 1]
    assert rep["weights"]["sources"][0]["sha256"] and len(rep["weights"]["sources"][0]["sha256"]) == 64
    assert set(rep["versions"]) >= {"pulse-jax", "jax", "jaxlib", "flax", "optax", "numpy", "python"}
    assert rep["device"]["device_count"] >= 1 and rep["timings"]["compile_s"] >= 0
    assert len(rep["restarts"]) == 4 and rep["seed"] == 0
    assert {"total", "l2", "min_l2", "best_step", "within_eps", "terms"} <= set(rep["restarts"][0])
    # outputs are the best restarts, best first, with the losses of the saved iterate
    l2s = [r["l2"] for r in rep["restarts"]]
    assert rep["outputs"][0]["l2"] == min(l2s) == rep["best"]["l2"]
    # --save_intermediate: frames per chunk and a GIF
    gif = Image.open(d / "progress.gif")
    assert gif.n_frames == 2
    assert sorted(p.name for p in (d / "frames").iterdir()) == [
        "hr_step0010.png", "hr_step0020.png", "lr_step0010.png", "lr_step0020.png"]


def test_no_eps_success_is_reported_with_advice_and_saved(sample_run):
  out, s, _, warnings = sample_run
  assert s["within_eps"] == 0 and s["not_within_eps"] == 2 and s["success_rate"] == 0.0
  rep = json.loads((out / "astronaut_8x8" / "report.json").read_text())
  assert rep["status"] == "not_within_eps" and rep["within_eps"] is False
  assert not any(r["within_eps"] for r in rep["restarts"])
  for words in ("closest L2", "--steps=60", "--restarts=16", "--eps=", "cleaner input"):
    assert words in rep["advice"]
  note = (out / "astronaut_8x8" / "NOT_WITHIN_EPS.txt").read_text()
  assert f"{rep['closest_l2']:.4g}" in note
  assert (out / "astronaut_8x8" / "hr_0.png").exists()
  assert any("astronaut_8x8: no restart reached eps" in w for w in warnings)


def test_saved_latents_re_render_to_the_saved_images(sample_run, tmp_path):
  from pulse_jax.job import render
  out = sample_run[0]
  for stem in ("astronaut_8x8", "hopper_4x4"):
    # by default the kept rows, best first: PATH_<k>.png is hr_<k>.png
    paths = render.render_file(None, str(out / stem / "latents.npz"), str(tmp_path / f"{stem}.png"))
    assert len(paths) == 2
    for k, p in enumerate(paths):
      a = np.asarray(Image.open(p), np.int16)
      b = np.asarray(Image.open(out / stem / f"hr_{k}.png"), np.int16)
      assert np.abs(a - b).max() <= 1


def test_overwrite_protection(sample_run, tmp_path):
  out = tmp_path / "o"
  shutil.copytree(sample_run[0], out)
  before = (out / "astronaut_8x8" / "hr_0.png").read_bytes()
  with pytest.raises(UsageError, match="exist.*--overwrite") as e:
    _job(output_dir=str(out), input=str(SAMPLES / "astronaut_8x8.png"), steps=2, restarts=2)
  assert "summary.json" in str(e.value)
  assert (out / "astronaut_8x8" / "hr_0.png").read_bytes() == before
  # with --overwrite: replaced, and files of the earlier run that this one does not write go
  # duplicates=1 (the preset keeps as many as --restarts): hr_1.png is only the earlier run's
  s, _, _ = _job(output_dir=str(out), input=str(SAMPLES / "astronaut_8x8.png"), steps=2,
                 restarts=2, eps=0.5, overwrite=True, duplicates=1)
  assert s["within_eps"] == 1
  d = out / "astronaut_8x8"
  assert not (d / "hr_1.png").exists() and not (d / "NOT_WITHIN_EPS.txt").exists()
  assert not (d / "progress.gif").exists() and (d / "hr_0.png").read_bytes() != before
  assert (out / "hopper_4x4" / "hr_0.png").exists()  # other inputs' folders untouched


def test_init_from_a_previous_run_keeps_the_loss(sample_run, tmp_path):
  out = sample_run[0]
  prev = json.loads((out / "astronaut_8x8" / "report.json").read_text())
  saved = [r["l2"] for r in prev["restarts"]]
  s, lines, _ = _job(output_dir=str(tmp_path / "a"), input=str(SAMPLES / "astronaut_8x8.png"),
                     init=str(out / "astronaut_8x8" / "latents.npz"), steps=1, restarts=2,
                     eps=0.0)
  assert any("init (" in l and "4 rows for 2 restarts" in l and "rows 2..3 not used" in l
             for l in lines), lines
  rep = json.loads((tmp_path / "a" / "astronaut_8x8" / "report.json").read_text())
  # step 1 evaluates the start values themselves: restart r's loss is the saved restart r's
  for r in range(2):
    assert rep["restarts"][r]["l2"] <= saved[r] * (1 + 1e-5)
    assert rep["restarts"][r]["l2"] == pytest.approx(saved[r], rel=1e-4)
  # a previous OUTPUT_DIR as --init (per input <stem>/latents.npz), a short refine
  s, lines, _ = _job(output_dir=str(tmp_path / "b"), input=str(SAMPLES), init=str(out),
                     steps=5, restarts=4, eps=0.0)
  # no saved latents in that run: astronaut_16x16, hopper_8x8 and the two 64x64 sources
  assert s["failed"] == 4
  assert any("init (2 inputs' latents.npz): 4 rows for 4 restarts: restart r continues row r"
             in l for l in lines), lines
  for stem in ("astronaut_8x8", "hopper_4x4"):
    prev = json.loads((out / stem / "report.json").read_text())
    rep = json.loads((tmp_path / "b" / stem / "report.json").read_text())
    assert rep["best"]["l2"] <= prev["best"]["l2"] * (1 + 1e-5)


def test_fit_options_and_odd_size_error(tmp_path):
  src = np.asarray(Image.open(SAMPLES / "astronaut_16x16.png").convert("RGB"))
  d = tmp_path / "in"
  d.mkdir()
  Image.fromarray(np.asarray(Image.fromarray(src).resize((12, 12)))).save(d / "odd.png")
  Image.fromarray(src[2:14, 1:15]).save(d / "rect.png")  # 14 wide, 12 high
  kw = dict(input=str(d), steps=2, restarts=2, eps=0.5)
  s, _, _ = _job(output_dir=str(tmp_path / "e"), **kw)
  assert s["failed"] == 2 and s["exit_code"] == 1 and s["searched"] == 0
  msgs = {pathlib.Path(f["input"]).name: f["message"] for f in s["files"]}
  assert "odd.png" in msgs["odd.png"] and "64, 32, 16, 8, 4, 2, 1" in msgs["odd.png"]
  assert "not square" in msgs["rect.png"]
  s, _, _ = _job(output_dir=str(tmp_path / "r"), fit="resize", **kw)
  assert s["searched"] == 2 and s["exit_code"] == 0
  assert Image.open(tmp_path / "r" / "odd" / "input.png").size == (16, 16)
  assert Image.open(tmp_path / "r" / "rect" / "lr_0.png").size == (16, 16)
  s, _, _ = _job(output_dir=str(tmp_path / "p"), fit="pad", **kw)
  assert s["searched"] == 2
  rep = json.loads((tmp_path / "p" / "rect" / "report.json").read_text())
  assert rep["input"]["padding"] == [1, 2, 1, 2] and rep["input"]["size"] == 16
  assert any("padded 14x12 -> 16x16" in n for n in rep["input"]["notes"])


def test_a_failed_batch_does_not_stop_the_others(tmp_path, monkeypatch):
  from pulse_jax.runtime import loop
  real = loop.search_images

  def flaky(generator, params, ref, **kw):
    if ref.shape[-1] == 4:
      raise RuntimeError("simulated device failure")
    return real(generator, params, ref, **kw)

  monkeypatch.setattr(loop, "search_images", flaky)
  s, _, warnings = _job(output_dir=str(tmp_path), steps=2, restarts=2, eps=0.5)
  st = {f["stem"]: f for f in s["files"]}
  assert st["astronaut_8x8"]["status"] == "within_eps"
  assert st["hopper_4x4"]["status"] == "failed"
  assert "simulated device failure" in st["hopper_4x4"]["message"]
  assert s["exit_code"] == 1 and (tmp_path / "astronaut_8x8" / "hr_0.png").exists()


def test_results_depend_on_seed_input_and_restart_only(tmp_path):
  d = tmp_path / "in"
  d.mkdir()
  shutil.copy(SAMPLES / "astronaut_8x8.png", d / "a.png")
  src = np.asarray(Image.open(SAMPLES / "astronaut_8x8.png"))
  Image.fromarray(src[::-1].copy()).save(d / "b.png")
  kw = dict(steps=3, restarts=2, eps=0.0, chunk_size=3)
  s1, _, _ = _job(output_dir=str(tmp_path / "1"), input=str(d), batch_size=2, **kw)
  s2, _, _ = _job(output_dir=str(tmp_path / "2"), input=str(d / "a.png"), **kw)
  s3, _, _ = _job(output_dir=str(tmp_path / "3"), input=str(d / "a.png"), seed=1, **kw)
  assert s1["batches"] == 1 and s2["batches"] == 1
  l2 = lambda o: [r["l2"] for r in json.loads((tmp_path / o / "a" / "report.json").read_text())
                  ["restarts"]]
  np.testing.assert_allclose(l2("1"), l2("2"), rtol=1e-5)
  assert not np.allclose(l2("2"), l2("3"), rtol=1e-3)


def test_usage_errors(tmp_path):
  with pytest.raises(UsageError, match="--duplicates"):
    _job(output_dir=str(tmp_path), duplicates=5, restarts=4)
  with pytest.raises(UsageError, match="noise_type"):
    _job(output_dir=str(tmp_path), noise_type="loud")
  with pytest.raises(UsageError, match="only GEOCROSS"):
    _job(output_dir=str(tmp_path), loss_str="1*GEOCROSS", steps=1, restarts=1)
  with pytest.raises(UsageError, match="neither a converted weights directory"):
    _job(output_dir=str(tmp_path), weights=str(tmp_path / "nope"))
  with pytest.raises(UsageError, match="no such file"):
    _job(output_dir=str(tmp_path), input=str(tmp_path / "nope.png"))


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("mixed")
  shutil.copy(SAMPLES / "astronaut_8x8.png", d / "good8.png")
  shutil.copy(SAMPLES / "astronaut_16x16.png", d / "good16.png")
  (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
  (d / "text.png").write_text("hello, I am not a picture\n")
  (d / "empty.png").write_bytes(b"")
  Image.open(SAMPLES / "astronaut_8x8.png").convert("L").save(d / "gray.png")
  rgba = Image.open(SAMPLES / "astronaut_16x16.png").convert("RGBA")
  a = np.asarray(rgba).copy()
  a[:8, :, 3] = 0
  Image.fromarray(a, "RGBA").save(d / "alpha.png")
  (d / "readme.txt").write_text("not an input")
  return d


def test_cli_subprocess_on_a_mixed_folder(mixed_dir, tmp_path):
  out = tmp_path / "out"
  flags = [f"--input={mixed_dir}", f"--output_dir={out}", "--steps=20", "--restarts=4",
           "--chunk_size=10", "--batch_size=2", "--duplicates=2", "--eps=0.05",
           "--stop_within=0"]   # every step runs: the progress line reaches step 20/20
  p = cli("pulse_jax.run", *flags, timeout=600)
  assert p.returncode == 1, p.stderr  # some inputs failed
  for name, words in (("corrupt.png", "corrupt"), ("text.png", "not an image"),
                      ("empty.png", "empty file")):
    line = [l for l in p.stderr.splitlines() if str(mixed_dir / name) in l]
    assert line and words in line[0], p.stderr
  assert "step 20/20" in p.stdout and "ETA" in p.stdout
  s = json.loads((out / "summary.json").read_text())
  assert (s["inputs"], s["searched"], s["failed"], s["skipped"]) == (7, 4, 3, 1)
  assert s["batches"] == 2 and s["exit_code"] == 1 and s["restart_steps_per_s"] > 0
  status = {f["stem"]: f["status"] for f in s["files"] if f["stem"]}
  assert status == {"alpha": "within_eps", "corrupt": "failed", "empty": "failed",
                    "good16": "within_eps", "good8": "within_eps", "gray": "within_eps",
                    "text": "failed"}
  for stem in ("good8", "good16", "gray", "alpha"):
    assert {"hr_0.png", "hr_1.png", "lr_0.png", "lr_1.png", "latents.npz", "report.json",
            "input.png"} <= {f.name for f in (out / stem).iterdir()}
    assert not (out / stem / "NOT_WITHIN_EPS.txt").exists()
  assert not (out / "corrupt").exists() and not (out / "text").exists()
  gray = json.loads((out / "gray" / "report.json").read_text())
  assert "grayscale image (mode L) converted to RGB" in gray["input"]["notes"]
  alpha = json.loads((out / "alpha" / "report.json").read_text())
  assert any("composited on black" in n for n in alpha["input"]["notes"])
  assert np.asarray(Image.open(out / "alpha" / "input.png"))[:8].max() == 0
  assert "pulse_jax.run: 7 input(s): 4 within eps, 0 not within eps, 3 failed" in p.stdout
  # --quiet: no progress lines, the summary and the errors stay
  q = cli("pulse_jax.run", flags[0], f"--output_dir={tmp_path / 'q'}", "--quiet", "--steps=2",
          "--restarts=2", "--eps=0.5", timeout=600)
  assert q.returncode == 1 and "step " not in q.stdout and "note:" not in q.stdout
  assert "4 within eps" in q.stdout and "empty file" in q.stderr


def test_helpfull_documents_every_flag():
  p = cli("pulse_jax.run", "--helpfull", timeout=120)
  for flag in ("input", "output_dir", "weights", "restarts", "batch_size", "duplicates",
               "loss_str", "eps", "noise_type", "num_trainable_noise_layers", "tile_latent",
               "bad_noise_layers", "opt_name", "learning_rate", "steps", "lr_schedule", "seed",
               "init", "save_intermediate", "overwrite", "quiet", "compute_dtype", "remat",
               "chunk_size", "micro_batches", "memory_budget_gb", "fit", "align", "align_size",
               "coordinator_address",
               "num_processes", "process_id", "checkpoint_dir", "checkpoint_every"):
    assert f"--{flag}:" in p.stdout or f"--[no]{flag}:" in p.stdout, flag


def test_align_then_search(tmp_path):
  pytest.importorskip("dlib")
  from pulse_jax.io.face_landmarks import AlignDependencyError, FaceLandmarker
  try:
    FaceLandmarker(None)
  except AlignDependencyError as e:
    pytest.skip(str(e))
  photo = TEST_DATA / "astronaut.jpg"
  s, lines, _ = _job(output_dir=str(tmp_path), input=str(photo), align=True, steps=2,
                     restarts=2, eps=0.5)
  assert s["searched"] == 1 and s["exit_code"] == 0
  assert Image.open(tmp_path / "aligned" / "astronaut.png").size == (8, 8)  # 64 / 8
  assert (tmp_path / "astronaut" / "hr_0.png").exists()
  # the same command again: the same crop is reused and its complete outputs kept
  s, lines, _ = _job(output_dir=str(tmp_path), input=str(photo), align=True, steps=2,
                     restarts=2, eps=0.5)
  assert s["exit_code"] == 0 and s["kept"] == 1
  assert not list((tmp_path / "aligned").glob(".align-*"))
  # a crop with other pixels (here: another --align_size) needs --overwrite
  with pytest.raises(UsageError, match=r"astronaut\.png exists with other pixels"):
    _job(output_dir=str(tmp_path), input=str(photo), align=True, align_size=16, steps=2,
         restarts=2, eps=0.5)
