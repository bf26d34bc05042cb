"""StyleGAN2 in JAX (pulse_jax.nets.stylegan2) against NVIDIA's own outputs, and its name table.

Fixtures: ../shared/fixtures/stylegan2_3/sg2_tiny{64,256}.{pkl,npz}, tiny random-weight
networks in NVIDIA's pickle format with NVIDIA's outputs (networks_stylegan2.py on the CPU,
float32, noise_mode 'const' / 'none', truncation psi 0.7 cutoff 8). Errors are max |ours -
NVIDIA| / max |NVIDIA|; the tolerance is 1e-5.
"""
from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from support.harness import fixture_path
from pulse_jax.nets import stylegan2 as sg2
from weights_convert.tables import stylegan2 as tables_stylegan2
from weights_convert.readers.nvidia_pickle import read_network

TOL = 1e-5
_mapping = jax.jit(sg2.mapping, static_argnames=("config", "truncation_cutoff"))
_synthesize = jax.jit(sg2.synthesize, static_argnames=("config", "noise_mode"))


def _rel(got, ref) -> float:
  ref = np.asarray(ref)
  return float(np.max(np.abs(np.asarray(got) - ref)) / np.max(np.abs(ref)))


def _load(name: str):
  pkl = fixture_path(f"stylegan2_3/{name}.pkl")
  ref = dict(np.load(fixture_path(f"stylegan2_3/{name}.npz")))
  config, params = tables_stylegan2.from_network(read_network(pkl))
  return config, params, ref


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sg2_tiny64", "sg2_tiny256"])
def test_matches_nvidia_fixture(name):
  """Measured (CPU, jax 0.10.2): ws 1.0e-7 / 9.4e-8, ws_trunc 1.3e-7 / 1.3e-7, image_const
  6.3e-7 / 5.9e-7, image_none 6.5e-7 / 6.6e-7, image_trunc 5.4e-7 / 5.2e-7 (tiny64 / tiny256);
  the const noise maps equal noise_const * noise_strength to 1 ulp."""
  config, params, ref = _load(name)
  assert config.num_ws == ref["ws"].shape[1]
  ws = _mapping(params, config, ref["z"])
  assert _rel(ws, ref["ws"]) < TOL
  trunc = _mapping(params, config, ref["z"], truncation_psi=0.7, truncation_cutoff=8)
  assert _rel(trunc, ref["ws_trunc"]) < TOL
  np.testing.assert_array_equal(params["mapping"]["w_avg"], ref["w_avg"])
  for mode, key, w in (("const", "image_const", ref["ws"]), ("none", "image_none", ref["ws"]),
                       ("const", "image_trunc", ref["ws_trunc"])):
    img = _synthesize(params, config, jnp.asarray(w), noise_mode=mode)
    assert img.shape == ref[key].shape and img.dtype == jnp.float32
    assert _rel(img, ref[key]) < TOL, (key, _rel(img, ref[key]))
  layers = sg2.noise_layers(config)
  assert len(layers) == sum(k.startswith("noise_const_") for k in ref)
  strengths = []
  for i, layer in enumerate(layers):
    _, block, conv, _ = layer.name.split(".")
    p = params["synthesis"][block][conv]
    assert (1,) + layer.shape == ref[f"noise_{i}"].shape
    np.testing.assert_array_equal(p["noise_const"], ref[f"noise_const_{i}"][0, 0])
    np.testing.assert_allclose(p["noise_const"] * p["noise_strength"], ref[f"noise_{i}"][0, 0],
                               rtol=1e-6, atol=0)
    strengths.append(float(p["noise_strength"]))
  np.testing.assert_array_equal(strengths, ref["noise_strength"])


@pytest.mark.slow
def test_noise_inputs_and_modes():
  """Explicit noise maps stand for the unit noise (scaled by noise_strength): the stored
  noise_const maps reproduce noise_mode='const', zeros reproduce 'none'; 'random' needs a key."""
  config, params, ref = _load("sg2_tiny64")
  ws = jnp.asarray(ref["ws"])
  const = sg2.const_noise(params, config, ws.shape[0])
  assert [n.shape[1:] for n in const] == sg2.noise_shapes(config)
  np.testing.assert_allclose(_synthesize(params, config, ws, const),
                             _synthesize(params, config, ws, noise_mode="const"), rtol=0, atol=1e-6)
  zeros = [jnp.zeros((1,) + s) for s in sg2.noise_shapes(config)]
  np.testing.assert_allclose(_synthesize(params, config, ws, zeros), ref["image_none"],
                             rtol=0, atol=TOL * np.abs(ref["image_none"]).max())
  r1 = _synthesize(params, config, ws, noise_mode="random", key=jax.random.key(1))
  r2 = _synthesize(params, config, ws, noise_mode="random", key=jax.random.key(2))
  assert float(jnp.max(jnp.abs(r1 - r2))) > 1e-3
  with pytest.raises(ValueError, match="needs a key"):
    sg2.synthesize(params, config, ws, noise_mode="random")
  with pytest.raises(ValueError, match="noise maps"):
    sg2.synthesize(params, config, ws, const[:-1])
  with pytest.raises(ValueError, match=r"ws must be \[B, 10, 512\]"):
    sg2.synthesize(params, config, ws[:, :9])


def test_pre_activation_inverse_pair():
  """PULSE's prior lives before the mapping's last lrelu: pre_to_w(mapping_pre_activation)
  is the mapping's w, and w_to_pre inverts pre_to_w."""
  config, params, ref = _load("sg2_tiny64")
  u = sg2.mapping_pre_activation(params, config, ref["z"])
  assert u.shape == (3, 512)
  np.testing.assert_allclose(sg2.pre_to_w(u), ref["ws"][:, 0], rtol=0,
                             atol=TOL * np.abs(ref["ws"]).max())
  x = jnp.linspace(-3.0, 3.0, 61)
  np.testing.assert_allclose(sg2.w_to_pre(sg2.pre_to_w(x)), x, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_conditional_mapping():
  """c_dim > 0: the embed layer's shapes, different classes give different ws, c required."""
  config = sg2.Stylegan2Config(z_dim=16, c_dim=4, w_dim=24, img_resolution=8, channel_base=64,
                               channel_max=8, mapping_layers=2, mapping_embed_features=12)
  shapes = sg2.param_shapes(config)["mapping"]
  assert shapes["embed"]["kernel"].shape == (4, 12) and shapes["embed"]["bias"].shape == (12,)
  assert shapes["fc0"]["kernel"].shape == (16 + 12, 24)
  params = sg2.init_params(jax.random.key(0), config)
  z = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (1, 16)), (4, 16))
  ws = sg2.mapping(params, config, z, jax.nn.one_hot(jnp.arange(4), 4))
  assert ws.shape == (4, config.num_ws, 24)
  diffs = [float(jnp.max(jnp.abs(ws[i] - ws[j]))) for i in range(4) for j in range(i)]
  assert min(diffs) > 1e-3
  img = _synthesize(params, config, ws)
  assert img.shape == (4, 3, 8, 8) and bool(jnp.all(jnp.isfinite(img)))
  with pytest.raises(ValueError, match="conditional"):
    sg2.mapping(params, config, z)


def test_config_from_init_kwargs_and_metadata():
  flat = {"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 64, "img_channels": 3,
          "mapping_kwargs": {"num_layers": 2}, "channel_base": 1024, "channel_max": 32,
          "num_fp16_res": 0}
  cfg = sg2.Stylegan2Config.from_init_kwargs(flat)
  assert cfg.conv_clamp == 256 and cfg.mapping_layers == 2 and cfg.num_ws == 10
  ada = {"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 64, "img_channels": 3,
         "mapping_kwargs": {"num_layers": 2},
         "synthesis_kwargs": {"channel_base": 1024, "channel_max": 32, "num_fp16_res": 0}}
  ada_cfg = sg2.Stylegan2Config.from_init_kwargs(ada)
  assert ada_cfg.conv_clamp is None and ada_cfg.channel_base == 1024  # ADA's own default
  back = sg2.Stylegan2Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
  assert back == cfg and hash(back) == hash(cfg)
  with pytest.raises(ValueError, match=r"\['kernel_size', 'mapping_kwargs.foo'\]"):
    sg2.Stylegan2Config.from_init_kwargs({**flat, "kernel_size": 5, "mapping_kwargs": {"foo": 1}})
  with pytest.raises(ValueError, match="power of two"):
    sg2.Stylegan2Config(img_resolution=48)


def _torch_tensors(config, params):
  """The state dict NVIDIA's Generator would have for ``params`` (the table's inverse)."""
  inverse = {"copy": lambda a: a, "transpose": lambda a: a.T,
             "oihw_to_hwio": lambda a: a.transpose(3, 2, 0, 1),
             "chw_to_hwc": lambda a: a.transpose(2, 0, 1)}
  out = {}
  for e in tables_stylegan2.torch_table(config):
    if e.dest is None:
      k = np.asarray(config.resample_filter, np.float32)
      out[e.source] = np.outer(k, k) / np.outer(k, k).sum()
      continue
    leaf = params
    for k in e.dest:
      leaf = leaf[k]
    out[e.source] = inverse[e.transform](np.asarray(leaf))
  return out


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_table_round_trip_every_architecture(architecture):
  """The table covers every param of every architecture exactly once (and renders)."""
  config = sg2.Stylegan2Config(z_dim=8, w_dim=8, img_resolution=8, channel_base=32,
                               channel_max=8, mapping_layers=2, architecture=architecture)
  params = sg2.init_params(jax.random.key(0), config)
  tensors = _torch_tensors(config, params)
  got = tables_stylegan2.apply_table(tables_stylegan2.torch_table(config), tensors, "mem", config)
  assert jax.tree.structure(got) == jax.tree.structure(params)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)))
  assert ("skip" in got["synthesis"]["b8"]) == (architecture == "resnet")
  assert ("torgb" in got["synthesis"]["b4"]) == (architecture == "skip")
  img = _synthesize(got, config, _mapping(got, config, jnp.ones((2, 8))))
  assert img.shape == (2, 3, 8, 8)


def test_table_names_leftover_missing_and_shapes():
  config = sg2.Stylegan2Config(z_dim=8, w_dim=8, img_resolution=8, channel_base=32,
                               channel_max=8, mapping_layers=2)
  tensors = _torch_tensors(config, sg2.init_params(jax.random.key(0), config))
  table = tables_stylegan2.torch_table(config)
  bad = dict(tensors)
  bad["synthesis.b16.conv0.weight"] = bad.pop("synthesis.b8.conv0.weight")
  with pytest.raises(ValueError, match=r"(?s)not in the name table \(1\): \['synthesis.b16.conv0"
                                       r".weight'\].*not in the file \(1\): \['synthesis.b8.conv0"):
    tables_stylegan2.apply_table(table, bad, "x.pkl", config)
  bad = dict(tensors, **{"mapping.fc0.weight": np.zeros((8, 9), np.float32)})
  with pytest.raises(ValueError, match=r"mapping.fc0.weight \[8, 9\] -> mapping/fc0/kernel"):
    tables_stylegan2.apply_table(table, bad, "x.pkl", config)
  bad = dict(tensors, **{"synthesis.b4.resample_filter": np.ones((4, 4), np.float32)})
  with pytest.raises(ValueError, match="not the FIR filter"):
    tables_stylegan2.apply_table(table, bad, "x.pkl", config)


def _names_file_sg2():
  text = fixture_path("stylegan2_3/stylegan2_3_ffhq1024_names.txt").read_text()
  section = text.split("\n\n")[0].splitlines()
  count = int(re.search(r"(\d+) parameters", section[0]).group(1))
  entries = {}
  for line in section[1:]:
    kind, name, shape = line.split(None, 2)
    entries[name] = (kind, tuple(json.loads(shape)))
  return count, entries


@pytest.mark.slow
@pytest.mark.full_size
def test_full_size_config_f():
  """Config F (1024 px, channel_base 32768, channel_max 512, 8 mapping layers): the table
  covers every name of NVIDIA's released G_ema with its shape (30,370,060 parameters), and
  one forward runs (random weights)."""
  count, entries = _names_file_sg2()
  config = sg2.Stylegan2Config(img_resolution=1024, channel_base=32768, channel_max=512,
                               mapping_layers=8)
  table = tables_stylegan2.torch_table(config)
  assert {e.source for e in table} == set(entries)
  shapes = sg2.param_shapes(config)
  n = 0
  for e in table:
    if e.dest is None:
      assert entries[e.source] == ("buffer", (4, 4))
      continue
    leaf = shapes
    for k in e.dest:
      leaf = leaf[k]
    want = entries[e.source][1]
    torch_shape = {"transpose": want[::-1], "copy": want,
                   "oihw_to_hwio": (want[2], want[3], want[1], want[0]) if len(want) == 4 else None,
                   "chw_to_hwc": want[1:] + want[:1]}[e.transform]
    assert leaf.shape == torch_shape, e.source
    n += leaf.size if entries[e.source][0] == "param" else 0
  assert n == count == 30_370_060
  params = sg2.init_params(jax.random.key(0), config)
  ws = sg2.mapping(params, config, jax.random.normal(jax.random.key(1), (1, 512)))
  img = jax.jit(sg2.synthesize, static_argnames="config")(params, config, ws)
  assert img.shape == (1, 3, 1024, 1024) and bool(jnp.all(jnp.isfinite(img)))
