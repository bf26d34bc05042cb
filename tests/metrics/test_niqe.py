"""pulse_jax.metrics.niqe against BasicSR's MATLAB-compatible NIQE (reference values measured
on skimage.data images, tests/metrics/niqe_reference_values.json) and the algorithm's
properties; pulse_jax.metrics.resize (MATLAB imresize at 0.5) against PIL's antialiased bicubic."""
from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from pulse_jax.metrics import niqe as niqe_module
from pulse_jax.metrics.niqe import MIN_SIDE, fit_aggd, niqe, niqe_features
from pulse_jax.metrics.resize import keys_cubic, matlab_resize_matrix
from support.harness import REPO, run_python

REFERENCE = pathlib.Path(__file__).with_name("niqe_reference_values.json")
# Measured: max |ours - reference| = 1.0e-3 over the six images (docs/quality.md); each
# 0.001 step of one fitted shape moves NIQE by about that much.
TOLERANCE = 5e-3


def _reference_image(name: str) -> np.ndarray:
  """The image `name` of the reference file, made as its README says: [H, W, 3] uint8."""
  data = pytest.importorskip("skimage.data")
  if name == "noise_256":
    return np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
  if name.startswith("astronaut_32_"):
    small = Image.fromarray(data.astronaut()).resize((32, 32), Image.BICUBIC)
    up = Image.NEAREST if "nearest" in name else Image.BICUBIC
    return np.asarray(small.resize((512, 512), up))
  return getattr(data, name.split("_")[0])()


@pytest.mark.parametrize("name", sorted(json.loads(REFERENCE.read_text())))
def test_niqe_matches_the_reference_values(name):
  ref = json.loads(REFERENCE.read_text())[name]
  image = _reference_image(name)
  assert list(image.shape) == ref["shape"]
  assert abs(niqe(image) - ref["niqe"]) < TOLERANCE, (niqe(image), ref["niqe"])


def test_the_reference_images_rank_as_the_paper_ranks_them():
  """Lower is more natural: the photo < its bicubic up-sampling < its nearest up-sampling."""
  scores = [niqe(_reference_image(n)) for n in ("astronaut_512", "astronaut_32_bicubic_up_512",
                                                "astronaut_32_nearest_up_512")]
  assert scores == sorted(scores) and scores[0] < 4 < scores[1], scores


def _photo_like(h, w, seed=0) -> np.ndarray:
  """A smooth random image with texture: [h, w, 3] uint8."""
  rng = np.random.default_rng(seed)
  coarse = rng.random((h // 8 + 2, w // 8 + 2, 3)) * 255
  smooth = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC),
                      np.float64)
  return np.clip(smooth + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def test_images_smaller_than_192_px_are_refused():
  for shape in ((MIN_SIDE - 1, 400, 3), (400, MIN_SIDE - 1, 3), (100, 100)):
    with pytest.raises(ValueError, match="at least 192"):
      niqe(np.zeros(shape, np.uint8))
  for bad in (np.zeros((200, 200, 4)), np.zeros((200, 200, 3), bool), np.zeros(200)):
    with pytest.raises(ValueError):
      niqe(bad)


def test_only_whole_blocks_count_and_float_input_equals_uint8():
  image = _photo_like(250, 300)
  score = niqe(image)
  assert math.isfinite(score)
  assert niqe(image[:192, :288]) == score                 # 2 x 3 blocks of 96 either way
  assert niqe(image.astype(np.float64)) == score
  assert niqe(image[..., :1]) == niqe(image[..., 0])      # [H, W, 1] is [H, W] gray


def test_flat_blocks_are_left_out_of_the_covariance():
  """A flat block has no negative or positive MSCN coefficient: NaN scales, dropped from the
  covariance, its shapes still in the mean (as MATLAB's nanmean / nancov). Blocks come column
  by column: block (row 1, column 0) of 3 x 2 is the second. (The flat area overlaps the
  neighbours by what the filters and the half-scale resize reach.)"""
  image = _photo_like(288, 192)
  image[80:208, :112] = 128
  features = niqe_features(image)
  assert features.shape == (6, 36)
  nan_rows = np.isnan(features).any(axis=1)
  assert nan_rows.tolist() == [False, True, False, False, False, False]
  assert features[1, 0] == 0.2 and features[1, 18] == 0.2    # the grid's first shape
  assert math.isfinite(niqe(image))


@pytest.mark.parametrize("sampler, shape", [("standard_normal", 2.0), ("laplace", 1.0)])
def test_the_shape_fit_recovers_known_distributions(sampler, shape):
  values = getattr(np.random.default_rng(1), sampler)(size=400_000)
  fitted, left, right = fit_aggd(values)
  assert abs(fitted - shape) < 0.05
  expected = math.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape)) * values.std()
  assert abs(left - expected) < 0.02 * expected and abs(right - expected) < 0.02 * expected


def test_the_shape_grid_holds_the_generalised_gaussian_moment_ratio():
  shapes, ratios = niqe_module._shape_grid()
  assert len(shapes) == 9801 and shapes[0] == 0.2 and abs(shapes[-1] - 10) < 1e-9
  assert abs(ratios[np.argmin(abs(shapes - 2))] - 2 / math.pi) < 1e-12   # Gaussian: E|x|^2/Ex^2


def test_the_pristine_model_ships_with_its_notice():
  mu, cov, window = niqe_module.pristine_model()
  assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
  np.testing.assert_allclose(cov, cov.T)
  assert abs(window.sum() - 1) < 1e-12
  notice = niqe_module._PARAMS.with_name("README.md").read_text()
  assert "LIVE" in notice and "Mittal" in notice


@pytest.mark.parametrize("n", [96, 97, 50, 7])
def test_the_half_scale_matrix_is_matlab_imresize(n):
  """Rows sum to 1, ceil(n / 2) of them; away from the borders (where PIL renormalises instead
  of reflecting) it equals PIL's antialiased bicubic reduction of a float image."""
  m = matlab_resize_matrix(n, 0.5)
  assert m.shape == ((n + 1) // 2, n)
  np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-12)
  x = np.random.default_rng(n).random((n, n))
  ours = m @ x @ m.T
  pil = np.asarray(Image.fromarray(x.astype(np.float32), "F").resize(
      ((n + 1) // 2, (n + 1) // 2), Image.BICUBIC, reducing_gap=None))
  if n % 2 == 0:              # PIL's sampling grid is MATLAB's only for even sides
    np.testing.assert_allclose(ours[2:-2, 2:-2], pil[2:-2, 2:-2], atol=1e-6)


def test_the_keys_kernel():
  x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
  np.testing.assert_allclose(keys_cubic(x), [1, 0.5625, 0, -0.0625, 0, 0])
  taps = keys_cubic(np.arange(-2, 2) + 0.3)               # any phase: the taps sum to 1
  assert abs(taps.sum() - 1) < 1e-12


def test_the_metrics_layer_loads_numpy_only():
  """pulse_jax.metrics imports no jax, scipy or skimage and nothing of pulse_jax outside it."""
  probe = ("import importlib, json, pkgutil, sys\n"
           "import pulse_jax.metrics as m\n"
           "for i in pkgutil.walk_packages(m.__path__, 'pulse_jax.metrics.'):\n"
           "  importlib.import_module(i.name)\n"
           "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in "
           "('jax', 'jaxlib', 'flax', 'scipy', 'skimage', 'torch', 'weights_convert')"
           " or n.startswith('pulse_jax.') and not n.startswith('pulse_jax.metrics'))))")
  p = run_python("-c", probe, cwd=REPO, timeout=120, env=dict(os.environ))
  assert p.returncode == 0, p.stderr[-3000:]
  assert json.loads(p.stdout.strip().splitlines()[-1]) == []
