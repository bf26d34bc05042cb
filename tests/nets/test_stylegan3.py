"""StyleGAN3 (-T, -R) in JAX against NVIDIA's own outputs, its filter design, and its names.

Fidelity through `nvidia_pickle.read_network` + the name table (max abs diff / max abs
reference, float32 on the CPU, images rendered from our own ws, measured 2026-12-01):
  sg3t_tiny64: ws 1.7e-8, ws_trunc 1.6e-7, image 6.8e-7, image_trunc 8.2e-7
  sg3r_tiny64: ws 8.0e-8, ws_trunc 1.5e-7, image 4.5e-7, image_trunc 7.6e-7
Per layer (fed NVIDIA's own input activation) the worst is the Fourier input, 1.4e-6.
The tests assert 1e-5. Our filter design equals the stored float32 buffers exactly.
"""
from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from support.harness import fixture_path
from pulse_jax.nets import filters as sg3_filters
from pulse_jax.nets import stylegan3 as sg3
from weights_convert.tables import stylegan3 as tables

FIXTURES = ("sg3t_tiny64", "sg3r_tiny64")
TOL = 1e-5
TINY = dict(z_dim=16, w_dim=16, img_resolution=16, channel_base=64, channel_max=8, num_layers=4,
            margin_size=2)


def _rel(a, ref) -> float:
  return float(np.max(np.abs(np.asarray(a) - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def networks():
  """{name: (config, params, npz)} of the fixture pickles, read by the safe reader."""
  try:
    from weights_convert.readers.nvidia_pickle import read_network
  except ImportError as e:
    pytest.skip(f"weights_convert.readers.nvidia_pickle (the safe NVIDIA pickle reader) absent: {e}")
  out = {}
  for name in FIXTURES:
    net = read_network(fixture_path(f"stylegan2_3/{name}.pkl"), network="G_ema")
    config, params = tables.from_network(net)
    out[name] = (config, params, dict(np.load(fixture_path(f"stylegan2_3/{name}.npz"))))
  return out


_synthesize = jax.jit(sg3.synthesize, static_argnums=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_matches_nvidia_outputs(networks, name):
  config, params, ref = networks[name]
  assert config.use_radial_filters == (name == "sg3r_tiny64")
  ws = sg3.mapping(params, config, ref["z"])
  ws_trunc = sg3.mapping(params, config, ref["z"], truncation_psi=0.7)
  assert ws.shape == ref["ws"].shape and _rel(ws, ref["ws"]) < TOL
  assert _rel(ws_trunc, ref["ws_trunc"]) < TOL
  np.testing.assert_allclose(params["mapping"]["w_avg"], ref["w_avg"], rtol=0, atol=0)
  image = _synthesize(params, config, ws)
  assert image.shape == ref["image"].shape and image.dtype == jnp.float32
  assert _rel(image, ref["image"]) < TOL
  assert _rel(_synthesize(params, config, ws_trunc), ref["image_trunc"]) < TOL


@pytest.mark.parametrize("name", FIXTURES)
def test_filter_design_matches_stored_buffers(networks, name):
  """Our numpy design (no scipy) equals the pickle's up/down filters (measured: bit-equal)."""
  config, params, _ = networks[name]
  n = 0
  for s in config.layer_specs:
    p = params["synthesis"][s.name]
    for key, design in (("up_filter", s.up_filter_design()),
                        ("down_filter", s.down_filter_design())):
      if design is None:
        assert key not in p
        continue
      np.testing.assert_allclose(design, p[key], rtol=0, atol=1e-8, err_msg=f"{s.name}.{key}")
      n += 1
  assert n == 2 * config.num_layers  # every layer but ToRGB has both


def test_design_matches_scipy():
  """firwin's Kaiser design and scipy.special.j1, which NVIDIA's code calls."""
  signal = pytest.importorskip("scipy.signal")
  special = pytest.importorskip("scipy.special")
  for numtaps, cutoff, width, fs in ((12, 2.0, 12.0, 32), (24, 4.0, 8.0, 64),
                                    (12, 32.0, 14.8, 128)):
    np.testing.assert_allclose(sg3_filters.kaiser_lowpass(numtaps, cutoff, width, fs),
                               signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               rtol=0, atol=1e-15)
  x = np.linspace(0, 80, 2001)
  np.testing.assert_allclose(sg3_filters.bessel_j1(x), special.j1(x), rtol=0, atol=1e-14)


def _full_size_names() -> dict[str, tuple[int, ...]]:
  text = fixture_path("stylegan2_3/stylegan2_3_ffhq1024_names.txt").read_text()
  section = text.split("# StyleGAN3-T 1024")[1]
  out = {}
  for line in section.splitlines()[1:]:
    m = re.match(r"(?:param|buffer)\s+(\S+)\s+\[(.*)\]", line)
    if m:
      out[m.group(1)] = tuple(int(v) for v in m.group(2).split(",") if v.strip())
  return out


def test_table_covers_full_size_sg3t():
  """Every name of NVIDIA's released SG3-T 1024 G_ema, with its shape; no network run."""
  names = _full_size_names()
  config = sg3.Stylegan3Config.from_init_kwargs(dict(
      z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, channel_base=32768,
      channel_max=512, mapping_kwargs={"num_layers": 2}, num_fp16_res=4, conv_clamp=256,
      magnitude_ema_beta=0.999))
  assert {e.source for e in tables.generator_table(config)} == set(names)
  tensors = {k: np.broadcast_to(np.float32(0), s) for k, s in names.items()}
  params = tables.convert_generator(tensors, config)  # checks every shape
  shapes = jax.tree.leaves(sg3.param_shapes(config))
  assert len(shapes) == len(names) == len(jax.tree.leaves(params))
  n_params = sum(int(np.prod(s)) for k, s in names.items()
                 if not k.endswith(("w_avg", "transform", "freqs", "phases", "magnitude_ema",
                                    "_filter")))
  assert n_params == 22313167  # the header of the names file


def _fake_state_dict(config) -> dict[str, np.ndarray]:
  """Random tensors under NVIDIA's names and shapes (the table's transforms undone)."""
  rng = np.random.default_rng(0)
  shapes = {}
  leaves = {tuple(getattr(k, "key") for k in path): leaf.shape for path, leaf in
            jax.tree_util.tree_flatten_with_path(sg3.param_shapes(config))[0]}
  for e in tables.generator_table(config):
    s = leaves[e.dest]
    shapes[e.source] = (s[::-1] if e.transform == "transpose" else
                        (s[3], s[2], s[0], s[1]) if e.transform == "oihw_to_hwio" else s)
  return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("radial", [False, True])
def test_table_errors_name_every_problem(radial):
  config = sg3.Stylegan3Config(**TINY, conv_kernel=1 if radial else 3, use_radial_filters=radial)
  sd = _fake_state_dict(config)
  params = tables.convert_generator(sd, config)
  assert params["synthesis"]["L0_20_8"]["down_filter"].ndim == (2 if radial else 1)
  assert params["synthesis"]["L0_20_8"]["magnitude_ema"].shape == ()
  np.testing.assert_array_equal(params["mapping"]["fc0"]["kernel"], sd["mapping.fc0.weight"].T)
  bad = dict(sd)
  del bad["synthesis.L1_20_8.up_filter"]
  bad["synthesis.L9_16_3.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r"L9_16_3\.weight.*\n.*L1_20_8\.up_filter"):
    tables.convert_generator(bad, config)
  bad = dict(sd, **{"synthesis.L2_20_4.bias": np.zeros(5, np.float32)})
  with pytest.raises(ValueError, match=r"synthesis/L2_20_4/bias: \(5,\) != \(4,\)"):
    tables.convert_generator(bad, config)


def test_config_round_trip_and_errors():
  kw = json.loads(re.search(r"Generator\((\{.*?\})\) of", json.loads(
      fixture_path("stylegan2_3/fixtures.json").read_text())["sg3r_tiny64.npz"]["note"]).group(1))
  config = sg3.Stylegan3Config.from_init_kwargs(kw)
  assert config.conv_kernel == 1 and config.use_radial_filters and config.channel_max == 64
  assert config.num_ws == 16 and sg3.noise_shapes(config) == []
  d = json.loads(json.dumps(config.to_dict()))
  assert sg3.Stylegan3Config.from_dict(d) == config and hash(config) == hash(
      sg3.Stylegan3Config.from_dict(d))
  with pytest.raises(ValueError, match="bogus"):
    sg3.Stylegan3Config.from_init_kwargs(dict(kw, bogus=1))
  with pytest.raises(ValueError, match="embed_features"):
    sg3.Stylegan3Config.from_init_kwargs(dict(kw, mapping_kwargs={"embed_features": 3}))
  with pytest.raises(ValueError, match="bogus"):
    sg3.Stylegan3Config.from_dict(dict(d, bogus=1))


def _np_upfirdn(x, f, up, down, pad, gain):
  """Independent float64 reference of upfirdn2d for one channel: x [H, W]."""
  h, w = x.shape
  u = np.zeros((h * up, w * up))
  u[::up, ::up] = x
  px0, px1, py0, py1 = pad
  u = np.pad(u, ((max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
  u = u[max(-py0, 0):u.shape[0] - max(-py1, 0), max(-px0, 0):u.shape[1] - max(-px1, 0)]
  f2 = (np.outer(f, f) if f.ndim == 1 else f) * gain
  kh, kw = f2.shape
  out = np.zeros((u.shape[0] - kh + 1, u.shape[1] - kw + 1))
  for a in range(kh):  # true convolution: flipped taps
    for b in range(kw):
      out += f2[kh - 1 - a, kw - 1 - b] * u[a:a + out.shape[0], b:b + out.shape[1]]
  return out[::down, ::down]


@pytest.mark.parametrize("up,down,pad,radial", [(2, 2, (9, 8, 9, 8), False),
                                                (4, 2, (-6, -9, -5, -8), False),
                                                (2, 2, (-9, -10, 3, 2), True)])
def test_filtered_lrelu_matches_numpy_reference(up, down, pad, radial):
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 20, 23, 3)).astype(np.float32) * 3
  b = rng.standard_normal(3).astype(np.float32)
  fu = sg3_filters.design_lowpass_filter(6 * up, 3.0, 6.0, 16 * up)
  fd = sg3_filters.design_lowpass_filter(6 * down, 3.0, 6.0, 16 * up, radial=radial)
  fu = fu + rng.uniform(0, 0.01, fu.shape).astype(np.float32)  # asymmetric: catches a flip
  got = np.asarray(sg3.filtered_lrelu(jnp.asarray(x), fu, fd, b, up, down, pad, clamp=2.0))
  for i in range(2):
    for c in range(3):
      y = _np_upfirdn(x[i, :, :, c].astype(np.float64) + b[c], fu, up, 1, pad, up ** 2)
      y = np.clip(np.where(y >= 0, y, 0.2 * y) * np.sqrt(2), -2, 2)
      y = _np_upfirdn(y, fd, 1, down, (0, 0, 0, 0), 1)
      np.testing.assert_allclose(got[i, :, :, c], y, rtol=0, atol=2e-5)


def test_mapping_pre_activation_inverse_and_truncation():
  config = sg3.Stylegan3Config(**TINY)
  params = sg3.init_params(jax.random.key(0), config)
  rng = np.random.default_rng(2)
  params["mapping"]["w_avg"] = jnp.asarray(rng.standard_normal(16), jnp.float32)
  z = rng.standard_normal((3, 16)).astype(np.float32)
  u = sg3.mapping_pre_activation(params, config, z)
  ws = sg3.mapping(params, config, z)
  assert ws.shape == (3, config.num_ws, 16) and float(jnp.min(u)) < 0 < float(jnp.max(u))
  np.testing.assert_array_equal(ws, jnp.broadcast_to(sg3.pre_to_w(u)[:, None], ws.shape))
  np.testing.assert_allclose(sg3.w_to_pre(ws[:, 0]), u, rtol=1e-6, atol=1e-6)
  wt = sg3.mapping(params, config, z, truncation_psi=0.5, truncation_cutoff=2)
  w_avg = params["mapping"]["w_avg"]
  np.testing.assert_allclose(wt[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(wt[:, 2:], ws[:, 2:])
  cond = sg3.Stylegan3Config(**dict(TINY, c_dim=3))
  p = sg3.init_params(jax.random.key(1), cond)
  assert p["mapping"]["fc0"]["kernel"].shape == (32, 16)
  assert sg3.mapping(p, cond, z, c=np.eye(3, dtype=np.float32)).shape == (3, cond.num_ws, 16)
  with pytest.raises(ValueError, match="conditional"):
    sg3.mapping(p, cond, z)


@pytest.mark.slow
@pytest.mark.parametrize("radial", [False, True])
def test_random_weights_batch_independent_and_differentiable(radial):
  config = sg3.Stylegan3Config(**TINY, conv_kernel=1 if radial else 3, use_radial_filters=radial)
  params = sg3.init_params(jax.random.key(3), config)
  rng = np.random.default_rng(4)
  params["synthesis"]["input"]["affine"]["kernel"] = jnp.asarray(rng.standard_normal((16, 4)),
                                                                 jnp.float32)
  ws = jnp.asarray(rng.standard_normal((2, config.num_ws, 16)), jnp.float32)
  both = _synthesize(params, config, ws)
  assert both.shape == (2, 3, 16, 16) and bool(jnp.all(jnp.isfinite(both)))
  np.testing.assert_allclose(_synthesize(params, config, ws[1:]), both[1:], rtol=0, atol=1e-6)
  g = jax.jit(jax.grad(lambda p, w: jnp.sum(sg3.synthesize(p, config, w) ** 2), 1))(params, ws)
  assert g.shape == ws.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
