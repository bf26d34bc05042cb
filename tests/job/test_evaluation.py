"""The quality harness (pulse_jax.job.evaluation, pulse_jax.evaluate): configurations parsed
from the registry, the ground truth checked (square, readable, named), the LR inputs and the
baselines made from it, and every figure of evaluation.json equal to the metric computed
directly from the files; two configurations side by side; nothing written outside OUTPUT_DIR.
Built-in DCGAN, 2 tiny ground-truth images, few restarts and steps."""
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

import pulse_jax
from pulse_jax.io import evaluation_page
from pulse_jax.io.input_images import InputError
from pulse_jax.job import evaluation
from pulse_jax.job.errors import UsageError
from pulse_jax.metrics import fidelity, upsampling
from support.harness import SAMPLE, builtin_generator

FACTOR = 8
COMMON = dict(restarts=2, seed=1, eps=1e-3, chunk_size=4, quiet=True)
CONFIGS = {"few": {"steps": 4}, "more": {"steps": 8}}


def _ground_truth(folder: pathlib.Path) -> pathlib.Path:
  """Two small ground-truth images made here: a 64x64 face (the 8x8 sample enlarged) and an
  80x80 smooth random picture (resized to 64 by the harness)."""
  folder.mkdir()
  Image.open(SAMPLE).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC).save(
      folder / "face.png")
  rng = np.random.default_rng(0)
  small = (rng.random((10, 10, 3)) * 255).astype(np.uint8)
  Image.fromarray(small).resize((80, 80), Image.Resampling.BILINEAR).save(folder / "blobs.png")
  return folder


def _png(path) -> np.ndarray:
  return np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0


# ----------------------------------------------------------------------------- configurations

def test_configs_are_parsed_by_the_registry():
  cs = evaluation.parse_configs("plain:,fast:steps=20;--learning_rate=0.5;save_intermediate,"
                                "l2:candidates=l2;nosave_intermediate")
  assert [c.name for c in cs] == ["plain", "fast", "l2"]
  assert cs[0].changes == {}
  assert cs[1].changes == {"steps": 20, "learning_rate": 0.5, "save_intermediate": True}
  assert cs[2].changes == {"candidates": "l2", "save_intermediate": False}
  assert [c.name for c in evaluation.parse_configs("")] == [evaluation.DEFAULT_CONFIG]
  assert evaluation.parse_configs({"a": {"steps": 3}})[0].changes == {"steps": 3}


@pytest.mark.parametrize("spec, words", [
    ("a:steps=x", "--steps: must be an integer"),
    ("a:nosuch=1", "unknown option 'nosuch'"),
    ("a:blur_sigma=1", "--blur_sigma is shared"),
    ("a:weights=x", "--weights is shared"),
    ("lr:steps=2", "'lr' is a name of the harness"),
    ("a:,A:", "given twice"),
    ("a/b:", "must be letters"),
    ("a:steps", "is not flag=value"),
])
def test_bad_configs_name_the_problem(spec, words):
  with pytest.raises(UsageError, match="--configs") as e:
    evaluation.parse_configs(spec)
  assert words in str(e.value)


def test_config_options_keep_the_common_ones_and_set_the_folders(tmp_path):
  base = evaluation.RunOptions(steps=7, restarts=3, output_dir=str(tmp_path))
  o = evaluation.config_options(base, evaluation.Config("x", {"steps": 9}), str(tmp_path))
  assert (o.steps, o.restarts) == (9, 3)
  assert o.input == os.path.join(tmp_path, "lr") and o.output_dir == os.path.join(tmp_path, "x")
  assert o.given_names() == {"steps", "restarts", "input", "output_dir"}


# ----------------------------------------------------------------------------- ground truth

def test_ground_truth_must_be_square_and_readable(tmp_path):
  Image.new("RGB", (64, 48)).save(tmp_path / "wide.png")
  with pytest.raises(InputError, match="wide.png: 64x48 is not square"):
    evaluation.read_ground_truth(tmp_path / "wide.png", "wide", 64)
  (tmp_path / "junk.png").write_bytes(b"not an image at all")
  with pytest.raises(InputError, match="junk.png"):
    evaluation.read_ground_truth(tmp_path / "junk.png", "junk", 64)
  with pytest.raises(UsageError, match="--hr: no such file"):
    evaluation.hr_files(str(tmp_path / "missing.png"))


def test_ground_truth_is_resized_with_lanczos(tmp_path):
  rng = np.random.default_rng(1)
  Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "g.png")
  t = evaluation.read_ground_truth(tmp_path / "g.png", "g", 64)
  want = np.asarray(Image.open(tmp_path / "g.png").resize((64, 64), Image.Resampling.LANCZOS))
  np.testing.assert_array_equal(t.pixels, want)
  assert t.resized_from == (40, 40)


def test_lr_is_the_forward_model_of_the_ground_truth_quantised():
  from pulse_jax.forward import ForwardModel
  from pulse_jax.forward import bicubic
  rng = np.random.default_rng(2)
  gt = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
  lr = evaluation.degrade(gt, ForwardModel.from_options(factor=4))
  hr = np.moveaxis(gt.astype(np.float32) / 255.0, -1, 0)[None]
  want = np.asarray(bicubic.downsample(hr, 4))[0]
  assert lr.shape == (16, 16, 3) and lr.dtype == np.uint8
  np.testing.assert_array_equal(lr, np.round(np.clip(np.moveaxis(want, 0, -1), 0, 1) * 255))
  gray = evaluation.degrade(gt, ForwardModel.from_options(factor=4, grayscale=True))
  assert gray.shape == (16, 16, 1)


def test_aggregate_counts_failed_inputs_as_not_within_eps():
  figs = [{"status": "within_eps", "within_eps": True, "l2": 1.0, "psnr": 20.0, "ssim": 0.5,
           "niqe": None, "restart_steps": 10, "wall_s": 2.0, "search_s": 1.0},
          {"status": "failed", "within_eps": False, "l2": None, "psnr": None, "ssim": None,
           "niqe": None, "restart_steps": None, "wall_s": None, "search_s": None},
          {"status": "not_within_eps", "within_eps": False, "l2": 3.0, "psnr": 30.0,
           "ssim": 0.7, "niqe": None, "restart_steps": 20, "wall_s": 4.0, "search_s": 3.0}]
  a = evaluation.aggregate(figs)
  assert a["success_rate"] == pytest.approx(1 / 3) and a["failed"] == 1
  assert (a["median_l2"], a["psnr"], a["ssim"]) == (2.0, 25.0, pytest.approx(0.6))
  assert a["niqe"] is None and (a["restart_steps"], a["s_per_image"]) == (15.0, 3.0)


# ----------------------------------------------------------------------------- the harness

@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
  """`pulse_jax.evaluate` of 2 ground-truth images with 2 configurations; (its return value,
  OUTPUT_DIR, the names beside OUTPUT_DIR before, the working directory's names before)."""
  g = builtin_generator()
  root = tmp_path_factory.mktemp("evaluate")
  hr = _ground_truth(root / "hr")
  out = root / "out"
  before = sorted(os.listdir(root)), sorted(os.listdir(os.getcwd()))
  ev = pulse_jax.evaluate(str(hr), FACTOR, g, output_dir=out, configs=CONFIGS,
                          warn=lambda s: None, log=lambda s: None, **COMMON)
  return ev, out, before, root


@pytest.mark.slow
def test_nothing_is_written_outside_output_dir(evaluated):
  ev, out, (beside, cwd), root = evaluated
  assert sorted(os.listdir(root)) == sorted(beside + ["out"])
  assert sorted(os.listdir(os.getcwd())) == cwd
  assert sorted(os.listdir(out)) == sorted(["gt", "lr", "nearest", "bicubic", "few", "more",
                                            "evaluation.json", "evaluation.md", "index.html"])
  assert json.loads((out / "evaluation.json").read_text())["images"] == ev["images"]


@pytest.mark.slow
def test_inputs_and_baselines_are_made_from_the_ground_truth(evaluated):
  from pulse_jax.forward import ForwardModel
  ev, out, _, _ = evaluated
  assert [im["stem"] for im in ev["images"]] == ["blobs", "face"]
  assert [im["resized_from"] for im in ev["images"]] == [[80, 80], None]
  for im in ev["images"]:
    gt = np.asarray(Image.open(out / im["gt"]))
    assert gt.shape == (64, 64, 3)
    lr = np.asarray(Image.open(out / im["lr"]))
    np.testing.assert_array_equal(lr, evaluation.degrade(gt, ForwardModel.from_options(
        factor=FACTOR)))
    for name, up in (("nearest", upsampling.nearest), ("bicubic", upsampling.bicubic)):
      made = np.asarray(Image.open(out / im["methods"][name]["image"]))
      want = np.round(up(lr / 255.0, FACTOR) * 255.0)
      np.testing.assert_array_equal(made, want)


@pytest.mark.slow
def test_the_figures_equal_metrics_computed_from_the_files(evaluated):
  ev, out, _, _ = evaluated
  assert ev["methods"] == ["nearest", "bicubic", "few", "more"]
  assert [c["name"] for c in ev["configs"]] == ["few", "more"]
  for im in ev["images"]:
    gt = _png(out / im["gt"])
    for m in ev["methods"]:
      f = im["methods"][m]
      image = _png(out / f["image"])
      assert f["psnr"] == pytest.approx(fidelity.psnr(image, gt), rel=1e-12)
      assert f["ssim"] == pytest.approx(fidelity.ssim(image, gt), rel=1e-12)
      assert f["niqe"] is None  # 64 px: below NIQE's 192
      if m in ("few", "more"):
        report = json.loads((out / m / im["stem"] / "report.json").read_text())
        assert f["image"] == f"{m}/{im['stem']}/hr_0.png"
        assert f["l2"] == report["outputs"][0]["l2"]
        assert f["within_eps"] == report["within_eps"]
        assert f["restart_steps"] == report["stopping"]["restart_steps"]
        assert f["restart_steps"] == COMMON["restarts"] * CONFIGS[m]["steps"]
        t = report["timings"]
        assert f["wall_s"] == pytest.approx(t["batch_wall_s"] / t["batch_images"])
  for m in ev["methods"]:
    a, figs = ev["aggregate"][m], [im["methods"][m] for im in ev["images"]]
    assert a["psnr"] == pytest.approx(np.mean([f["psnr"] for f in figs]))
    assert a["median_l2"] == pytest.approx(np.median([f["l2"] for f in figs]))
    assert a["success_rate"] == np.mean([f["within_eps"] for f in figs])



@pytest.mark.slow
def test_a_second_evaluation_keeps_the_searches_and_says_so(evaluated):
  """The same evaluation again (an interrupted one resumed): every configuration's inputs are
  kept, not searched again (`configs[].kept`), and every figure is the first run's."""
  ev, out, _, root = evaluated
  assert [c["kept"] for c in ev["configs"]] == [0, 0]
  again = pulse_jax.evaluate(str(root / "hr"), FACTOR, builtin_generator(), output_dir=out,
                             configs=CONFIGS, warn=lambda s: None, log=lambda s: None, **COMMON)
  assert [c["kept"] for c in again["configs"]] == [len(ev["images"])] * 2
  assert again["images"] == ev["images"] and again["aggregate"] == ev["aggregate"]

@pytest.mark.slow
def test_the_table_and_page_show_every_method(evaluated):
  ev, out, _, _ = evaluated
  table = (out / "evaluation.md").read_text()
  for m in ev["methods"]:
    assert f"| {m} |" in table
  page = (out / "index.html").read_text()
  assert page.count("<svg") == len(evaluation_page.CHARTS)
  assert "Content-Security-Policy" in page and "<script" not in page
  for im in ev["images"]:
    for m in ev["methods"]:
      assert f'src="{im["methods"][m]["image"]}"' in page
  assert 'href="few/index.html"' in page and 'href="more/index.html"' in page


@pytest.mark.slow
def test_bad_ground_truth_is_named_before_anything_is_written(tmp_path):
  g = builtin_generator()
  (tmp_path / "hr").mkdir()
  Image.new("RGB", (64, 64)).save(tmp_path / "hr" / "ok.png")
  Image.new("RGB", (64, 32)).save(tmp_path / "hr" / "wide.png")
  with pytest.raises(InputError, match="wide.png: 64x32 is not square"):
    pulse_jax.evaluate(tmp_path / "hr", FACTOR, g, output_dir=tmp_path / "out", **COMMON)
  with pytest.raises(UsageError, match="must divide"):
    pulse_jax.evaluate(tmp_path / "hr" / "ok.png", 5, g, output_dir=tmp_path / "out", **COMMON)
  with pytest.raises(TypeError, match="evaluate"):
    pulse_jax.evaluate(tmp_path / "hr" / "ok.png", 8, g, output_dir=tmp_path / "out", nosuch=1)
  assert sorted(os.listdir(tmp_path)) == ["hr"]


def test_page_escapes_names_and_keeps_links_inside():
  ev = {"generator": {"name": "<m>", "resolution": 64, "kind": "dcgan"}, "factor": 8,
        "lr_size": 8, "forward": {"operators": []}, "eps": 1e-3, "niqe_min_side": 192,
        "methods": ["nearest", "<b>"], "ground_truth": {"niqe": None},
        "configs": [{"name": "<b>", "options": {"steps": "<x>"}, "output_dir": "<b>"}],
        "aggregate": {"nearest": {"psnr": 1.0}, "<b>": {"psnr": None}},
        "images": [{"stem": "<s>", "gt": "gt/<s>.png", "lr": "../lr.png",
                    "methods": {"nearest": {"status": "baseline", "image": "nearest/a b.png"},
                                "<b>": {"status": "failed", "image": None}}}]}
  page = evaluation_page.render_page(ev)
  assert "<b>" not in page and "<s>" not in page and "<m>" not in page
  assert 'src="nearest/a%20b.png"' in page and "../lr.png" not in page


def test_niqe_is_measured_from_192_px():
  from pulse_jax.metrics.niqe import niqe
  rng = np.random.default_rng(3)
  big = np.round(rng.random((192, 192, 3)) * 255) / 255.0
  f = evaluation.image_figures(big, big[::-1])
  assert f["niqe"] == niqe(np.round(big * 255.0))
  assert f["psnr"] == fidelity.psnr(big, big[::-1])
  assert evaluation.image_figures(big[:191, :191], big[:191, :191]) == {
      "psnr": None, "ssim": 1.0, "niqe": None}
