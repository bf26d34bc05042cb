"""pulse_jax.forward against independent numpy/scipy versions: operators, order, errors, masks."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from PIL import Image
from scipy import ndimage

from pulse_jax.forward import bicubic
from pulse_jax.search import losses
from pulse_jax.forward import (OPTION_NAMES, OPTIONS, ForwardModel, KernelError, MaskError,
                               batch_masks, blur, color, downsample, fit_to_input, load_kernel,
                               load_mask)
from pulse_jax.job.inputs import masks_for
from pulse_jax.io.input_images import load_image

RNG = np.random.default_rng(0)


def _img(*shape):
  return RNG.random(shape).astype(np.float32)


def _planes(fn, x):
  """Applies a 2-D numpy fn to every [H, W] plane of x: [..., H, W]."""
  out = np.stack([fn(p) for p in x.reshape((-1,) + x.shape[-2:])])
  return out.reshape(x.shape[:-2] + out.shape[-2:])


def _save_npy(tmp_path, name, a):
  p = tmp_path / name
  np.save(p, a)
  return p


# ----------------------------------------------------------------------------- operators

@pytest.mark.parametrize("sigma,shape", [(0.7, (2, 3, 16, 12)), (1.5, (1, 1, 16, 16)),
                                         (3.0, (1, 2, 8, 8))])   # radius 9 > 8: multi-reflect
def test_gaussian_matches_scipy_mirror(sigma, shape):
  x = RNG.random(shape)
  r = int(np.ceil(3 * sigma))
  ref = _planes(lambda p: ndimage.gaussian_filter(p, sigma, mode="mirror", radius=r), x)
  got = blur.gaussian_blur(jnp.asarray(x, jnp.float32), sigma)
  assert got.shape == x.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref, atol=2e-6)
  assert blur.gaussian_radius(sigma) == r and blur.gaussian_taps(sigma).shape == (2 * r + 1,)
  np.testing.assert_allclose(blur.gaussian_taps(sigma).sum(), 1.0, rtol=1e-12)


def _np_convolve(p, k):
  """Loop version: out[y, x] = sum_ij k[i, j] in[y - i + kh // 2, x - j + kw // 2], reflect."""
  kh, kw = k.shape
  h, w = p.shape
  pp = np.pad(p, ((kh, kh), (kw, kw)), mode="reflect")
  out = np.zeros_like(p)
  for y in range(h):
    for x in range(w):
      for i in range(kh):
        for j in range(kw):
          out[y, x] += k[i, j] * pp[y - i + kh // 2 + kh, x - j + kw // 2 + kw]
  return out


@pytest.mark.parametrize("kshape", [(3, 3), (3, 5), (4, 2), (1, 1), (6, 7)])
def test_kernel_is_true_convolution_with_reflect(kshape):
  x = RNG.random((2, 2, 7, 9))
  k = RNG.random(kshape) - 0.2
  ref = _planes(lambda p: ndimage.convolve(p, k, mode="mirror"), x)
  got = blur.convolve(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32))
  np.testing.assert_allclose(got, ref, atol=3e-6)
  np.testing.assert_allclose(_np_convolve(x[0, 0], k), ref[0, 0], atol=1e-12)


def test_area_and_luminance_match_numpy():
  x = RNG.random((2, 3, 12, 8))
  ref = np.zeros((2, 3, 3, 2))
  for i in range(3):
    for j in range(2):
      ref[:, :, i, j] = x[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean(axis=(-2, -1))
  np.testing.assert_allclose(downsample.area(jnp.asarray(x, jnp.float32), 4), ref, atol=1e-6)
  y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
  np.testing.assert_allclose(color.luminance(jnp.asarray(x, jnp.float32)), y[:, None], atol=1e-6)
  g = jnp.asarray(x[:, :1], jnp.float32)
  assert color.luminance(g) is g


@pytest.mark.slow
def test_gradients_float64():
  with jax.enable_x64(True):
    x = jnp.asarray(RNG.random((1, 3, 8, 8)))
    k = jnp.asarray(RNG.random((3, 2)))
    kw = dict(order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
    check_grads(lambda a: blur.gaussian_blur(a, 1.2), (x,), **kw)
    check_grads(blur.convolve, (x, k), **kw)
    check_grads(lambda a: downsample.area(a, 2), (x,), **kw)
    check_grads(color.luminance, (x,), **kw)
    m = ForwardModel.from_options(factor=2, blur_sigma=0.8, grayscale=True, downsample="area")
    check_grads(lambda a: m.apply(a), (x,), **kw)
    mk = ForwardModel(factor=2, blur_kernel=blur.KernelSpec("k", "0", (3, 2), np.ones((3, 2))))
    check_grads(lambda a, kk: mk.apply(a, {"kernel": kk}), (x, k), **kw)


# ----------------------------------------------------------------------------- the model

def test_default_is_bit_identical_to_bicubic():
  x = jnp.asarray(_img(3, 3, 32, 32))
  for f in (1, 2, 4, 8):
    m = ForwardModel.from_options(factor=f)
    assert m.is_default and m.operators() == ([f"bicubic(factor={f})"] if f > 1 else [])
    ref = bicubic.downsample(x, f)
    np.testing.assert_array_equal(m.apply(x, m.arrays()), ref)
    jitted = jax.jit(lambda a, arrs, m=m: m.apply(a, arrs))
    np.testing.assert_array_equal(jitted(x, m.arrays()), jax.jit(bicubic.downsample,
                                                                 static_argnums=1)(x, f))


def _kernel_file(tmp_path, k, name="k.npy"):
  return _save_npy(tmp_path, name, k)


def test_composition_order_and_factor(tmp_path):
  x = RNG.random((2, 3, 16, 16))
  k = RNG.random((3, 4))
  m = ForwardModel.from_options(factor=4, blur_sigma=1.0, grayscale=True,
                                blur_kernel=str(_kernel_file(tmp_path, k)))
  assert m.operators()[0].startswith("gaussian_blur") and m.operators()[-1] == "grayscale(BT.601)"
  got = m.apply(jnp.asarray(x, jnp.float32), m.arrays())
  assert got.shape == m.lr_shape(x.shape) == (2, 1, 4, 4)
  # Independent chain: scipy blur, scipy convolve (normalised kernel), bicubic matrix, luminance.
  s = _planes(lambda p: ndimage.gaussian_filter(p, 1.0, mode="mirror", radius=3), x)
  s = _planes(lambda p: ndimage.convolve(p, k / k.sum(), mode="mirror"), s)
  mh = bicubic.downsample_matrix(16, 4)
  s = np.einsum("oh,...hw,pw->...op", mh, s, mh)
  s = np.tensordot(s, [0.299, 0.587, 0.114], axes=([1], [0]))[:, None]
  np.testing.assert_allclose(got, s, atol=3e-6)
  # The order matters: down-sampling first is a different model.
  swapped = blur.gaussian_blur(bicubic.downsample(jnp.asarray(x, jnp.float32), 4), 1.0)
  assert np.abs(np.asarray(swapped) - np.asarray(m.apply(jnp.asarray(x, jnp.float32),
                                                         m.arrays()))).max() > 1e-2
  # Factor 1: bicubic and area are the identity; the blur still applies.
  for method in ("bicubic", "area"):
    m1 = ForwardModel.from_options(factor=1, downsample=method)
    np.testing.assert_array_equal(m1.apply(jnp.asarray(x, jnp.float32)), x.astype(np.float32))
  m1 = ForwardModel.from_options(factor=1, blur_sigma=1.0)
  np.testing.assert_allclose(m1.apply(jnp.asarray(x, jnp.float32)),
                             _planes(lambda p: ndimage.gaussian_filter(p, 1.0, mode="mirror",
                                                                       radius=3), x), atol=2e-6)


def test_kernel_is_an_argument_not_a_constant(tmp_path):
  k1, k2 = RNG.random((3, 3)), RNG.random((3, 3))
  m1 = ForwardModel.from_options(factor=2, blur_kernel=str(_kernel_file(tmp_path, k1, "a.npy")))
  m2 = ForwardModel.from_options(factor=2, blur_kernel=str(_kernel_file(tmp_path, k2, "b.npy")))
  assert m1 != m2 and hash(m1) != hash(m2)
  assert m1 == dataclasses.replace(m1) and hash(m1) == hash(ForwardModel.from_options(
      factor=2, blur_kernel=str(tmp_path / "a.npy")))
  traces = []

  @jax.jit
  def run(x, arrays):
    traces.append(1)
    return m1.apply(x, arrays)
  x = jnp.asarray(_img(1, 3, 8, 8))
  a = run(x, m1.arrays())
  b = run(x, m2.arrays())       # same shapes: no retrace, different values
  assert len(traces) == 1 and np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-4
  with pytest.raises(ValueError, match="arrays"):
    m1.apply(x, {})


def test_options_validation_and_describe(tmp_path):
  with pytest.raises(ValueError, match=r"--blur_sigma must be >= 0, got -1"):
    ForwardModel.from_options(blur_sigma=-1)
  with pytest.raises(ValueError, match=r"--blur_sigma must be finite"):
    ForwardModel.from_options(blur_sigma=float("nan"))
  with pytest.raises(ValueError, match=r"--noise_sigma must be <= 1"):
    ForwardModel.from_options(noise_sigma=2)
  with pytest.raises(ValueError, match=r"--downsample must be one of bicubic, area, got 'near"):
    ForwardModel.from_options(downsample="nearest")
  with pytest.raises(ValueError, match=r"--grayscale must be true or false"):
    ForwardModel.from_options(grayscale="yes")
  with pytest.raises(ValueError, match=r"unknown forward option\(s\) --blur"):
    ForwardModel.from_options(blur=1)
  with pytest.raises(ValueError, match=r"factor must be an integer >= 1"):
    ForwardModel.from_options(factor=0)
  with pytest.raises(ValueError, match=r"--grayscale needs a 1- or 3-channel"):
    ForwardModel.from_options(grayscale=True).lr_shape((1, 4, 8, 8))
  with pytest.raises(ValueError, match="not a multiple of the factor 3"):
    ForwardModel(factor=3).lr_shape((1, 3, 8, 8))
  # The registry and the dataclass agree.
  fields = {f.name: f.default for f in dataclasses.fields(ForwardModel)}
  assert set(fields) - {"factor"} == set(OPTION_NAMES)
  assert all(fields[o.name] == o.default for o in OPTIONS)
  p = _kernel_file(tmp_path, np.ones((2, 3)))
  m = ForwardModel.from_options(factor=2, blur_sigma=0.5, blur_kernel=str(p), downsample="area",
                                mask=str(tmp_path), noise_sigma=0.05)
  d = json.loads(json.dumps(m.describe()))
  assert d["blur_kernel"]["file"] == str(p) and d["blur_kernel"]["shape"] == [2, 3]
  assert d["operators"] == ["gaussian_blur(sigma=0.5, radius=2, reflect)",
                            f"convolve(kernel={p}, 2x3, reflect)", "area(factor=2)"]
  assert d["factor"] == 2 and d["mask"] == str(tmp_path) and d["noise_sigma"] == 0.05
  assert not m.is_default and m.with_factor(4).factor == 4


def test_effective_eps():
  m = ForwardModel.from_options(noise_sigma=0.05)
  assert m.effective_eps(1e-3) == pytest.approx(0.0025)
  assert m.effective_eps(0.01) == 0.01
  assert "0.0025" in m.eps_note(1e-3) and "--noise_sigma=0.05" in m.eps_note(1e-3)
  assert ForwardModel().effective_eps(1e-3) == 1e-3 and ForwardModel().eps_note(1e-3) is None


# ----------------------------------------------------------------------------- kernel files

def test_kernel_files(tmp_path):
  k = load_kernel(_kernel_file(tmp_path, np.arange(6.0).reshape(2, 3)))
  np.testing.assert_allclose(k.taps, np.arange(6.0).reshape(2, 3) / 15.0)
  assert k.shape == (2, 3) and len(k.sha256) == 64
  png = tmp_path / "k.png"
  Image.fromarray(np.array([[0, 255, 0], [255, 255, 255], [0, 255, 0]], np.uint8), "L").save(png)
  np.testing.assert_allclose(load_kernel(png).taps, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]) / 5)
  bad = {
      "3d.npy": (np.ones((2, 2, 2)), "must be a 2-D array"),
      "nan.npy": (np.array([[1.0, np.nan]]), "NaN or inf"),
      "inf.npy": (np.array([[1.0, np.inf]]), "NaN or inf"),
      "zero.npy": (np.array([[1.0, -1.0]]), "sum to 0"),
      "neg.npy": (-np.ones((2, 2)), "sum to -4"),
      "str.npy": (np.array([["a"]]), "real numbers"),
  }
  for name, (a, msg) in bad.items():
    p = _save_npy(tmp_path, name, a)
    with pytest.raises(KernelError, match=msg) as e:
      load_kernel(p)
    assert f"--blur_kernel={p}" in str(e.value)
  rgb = tmp_path / "rgb.png"
  Image.fromarray(RNG.integers(0, 255, (3, 3, 3), dtype=np.uint8), "RGB").save(rgb)
  junk = tmp_path / "junk.png"
  junk.write_bytes(b"not an image at all")
  for p, msg in ((rgb, "must be grayscale"), (junk, "not an image"),
                 (tmp_path / "missing.npy", "no such file")):
    with pytest.raises(KernelError, match=msg) as e:
      load_kernel(p)
    assert str(p) in str(e.value)
  big = _kernel_file(tmp_path, np.ones((9, 3)), "big.npy")
  with pytest.raises(ValueError, match=rf"--blur_kernel={big}: the kernel is 9x3, larger than"):
    ForwardModel.from_options(factor=2, blur_kernel=str(big)).lr_shape((1, 3, 8, 8))


# ----------------------------------------------------------------------------- grayscale target

def test_gray_targets():
  gray = np.repeat(_img(1, 4, 4), 3, axis=0)
  out, notes = ForwardModel.from_options(grayscale=True).prepare_target(gray)
  np.testing.assert_array_equal(out, gray[:1])
  assert out.dtype == np.float32 and not notes
  rgb = _img(3, 4, 4)
  out, notes = color.gray_target(rgb)
  np.testing.assert_allclose(out[0], 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2], atol=1e-7)
  assert out.shape == (1, 4, 4) and "luminance" in notes[0]
  out, notes = ForwardModel().prepare_target(rgb)
  assert out is rgb or np.array_equal(out, rgb)
  with pytest.raises(ValueError, match="1- or 3-channel"):
    color.gray_target(_img(2, 4, 4))


# ----------------------------------------------------------------------------- masks

def _png(path, a, mode="L"):
  Image.fromarray(a, mode).save(path)
  return path


def test_mask_load_and_errors(tmp_path):
  a = np.zeros((4, 6), np.uint8)
  a[1:3, 2:5] = 200
  a[0, 0] = 127           # below half: unknown
  m = load_mask(_png(tmp_path / "m.png", a), size=(6, 4))
  assert m.shape == (1, 4, 6) and m.dtype == np.float32
  np.testing.assert_array_equal(m[0], (a >= 128).astype(np.float32))
  np.testing.assert_array_equal(load_mask(_save_npy(tmp_path, "m.npy", a / 255.0)), m)
  cases = [
      (lambda: load_mask(tmp_path / "m.png", size=(8, 8)), "is 6x4, but its input is 8x8"),
      (lambda: load_mask(_png(tmp_path / "black.png", np.zeros((4, 4), np.uint8))),
       "no known pixel"),
      (lambda: load_mask(tmp_path / "nope.png"), "no such file"),
      (lambda: load_mask(_save_npy(tmp_path, "m3.npy", np.ones((2, 2, 2)))), "2-D array"),
  ]
  junk = tmp_path / "junk.png"
  junk.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  cases.append((lambda: load_mask(junk), "junk.png"))
  for fn, msg in cases:
    with pytest.raises(MaskError, match=msg) as e:
      fn()
    assert str(tmp_path) in str(e.value)


def test_masks_for_folder_and_file(tmp_path):
  ins, ms = tmp_path / "in", tmp_path / "masks"
  ins.mkdir()
  ms.mkdir()
  white = np.full((4, 4), 255, np.uint8)
  inputs = [_png(ins / f"{s}.png", np.zeros((4, 4, 3), np.uint8), "RGB")
            for s in ("a", "b", "c", "d", "e")]
  _png(ms / "a.png", white)
  _save_npy(ms, "b.npy", np.ones((4, 4)))
  _png(ms / "c.png", white)
  _png(ms / "c.bmp", white)               # two masks for c
  _png(ms / "e.png", np.full((5, 4), 255, np.uint8))   # wrong size
  # d: none
  sizes = {s: (4, 4) for s in "abcde"}
  masks, errors = masks_for(inputs, str(ms), sizes)
  assert sorted(masks) == ["a", "b"] and sorted(errors) == ["c", "d", "e"]
  assert "several masks" in str(errors["c"]) and "no mask for input" in str(errors["d"])
  assert str(ms / "e.png") in str(errors["e"]) and "is 4x5" in str(errors["e"])
  masks, errors = masks_for(inputs, str(ms / "a.png"), sizes)
  assert sorted(masks) == list("abcde") and not errors
  with pytest.raises(FileNotFoundError, match="--mask: no such file or folder"):
    masks_for(inputs, str(tmp_path / "nothing"))
  masks, errors = masks_for(inputs, str(ins))    # each input is not its own mask
  assert not masks and len(errors) == 5


def test_fit_to_padded_input_and_batch(tmp_path):
  p = _png(tmp_path / "x.png", RNG.integers(0, 255, (2, 4, 3), dtype=np.uint8), "RGB")
  image = load_image(p, 8, fit="pad")           # 4x2 -> 4x4 (1 row of padding each side)
  user = np.ones((1, 2, 4), np.float32)
  user[0, 0, 0] = 0
  m, notes = fit_to_input(user, image)
  ref = np.zeros((1, 4, 4), np.float32)
  ref[0, 1:3] = 1
  ref[0, 1, 0] = 0
  np.testing.assert_array_equal(m, ref)
  assert "7 of 16" in notes[-1]
  with pytest.raises(MaskError, match="input .*x.png is 4x2"):
    fit_to_input(np.ones((1, 4, 4), np.float32), image)
  b = batch_masks([m, None])
  assert b.shape == (2, 1, 4, 4) and b[1].min() == 1 and batch_masks([None, None]) is None


def test_fit_to_resized_input(tmp_path):
  p = _png(tmp_path / "x.png", RNG.integers(0, 255, (6, 6, 3), dtype=np.uint8), "RGB")
  image = load_image(p, 8, fit="resize")        # 6x6 -> 8x8
  user = np.zeros((1, 6, 6), np.float32)
  user[0, :3] = 1                               # top half known
  m, notes = fit_to_input(user, image)
  assert m.shape == (1, 8, 8) and m[0, :4].min() == 1 and m[0, 4:].max() == 0
  assert "nearest" in notes[0]


def test_masked_loss_equals_numpy_masked_mean(tmp_path):
  a = np.zeros((8, 8), np.uint8)
  a[2:7, 1:5] = 255
  mask = load_mask(_png(tmp_path / "m.png", a))
  model = ForwardModel.from_options(factor=2, blur_sigma=0.6)
  hr = _img(2, 3, 16, 16)
  ref = _img(2, 3, 8, 8)
  lr = model.apply(jnp.asarray(hr), model.arrays())
  masks = batch_masks([mask, mask])
  got = losses.l2_raw(lr, jnp.asarray(ref), masks)
  known = a >= 128
  d2 = (np.asarray(lr, np.float64) - ref) ** 2
  expect = [d2[i][:, known].mean() for i in range(2)]
  np.testing.assert_allclose(got, expect, rtol=1e-5)
  noisy = ForwardModel.from_options(factor=2, noise_sigma=0.5)
  within = np.asarray(got) <= noisy.effective_eps(1e-3)
  assert within.all()


def test_the_forward_table_is_the_one_definition():
  from pulse_jax.forward import downsample, options as forward_options
  assert OPTIONS is forward_options.OPTIONS
  assert forward_options.DOWNSAMPLERS == tuple(downsample.METHODS)
  fields = dataclasses.fields(ForwardModel)
  assert [f.name for f in fields] == ["factor", *OPTION_NAMES]
  assert all(f.metadata["option"] is o for f, o in zip(fields[1:], OPTIONS))
  assert [o.kind for o in OPTIONS] == ["float", "string", "enum", "bool", "string", "float"]
  assert all(o.group == "forward" and o.scope == "job" for o in OPTIONS)
  m = ForwardModel.from_options(factor=2, grayscale=True)
  assert hash(m) == hash(ForwardModel(factor=2, grayscale=True)) and m.target_channels == 1
  assert m.lr_shape((3, 8, 8)) == (1, 4, 4)
