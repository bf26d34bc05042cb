"""StyleGAN v1 and DCGAN in Flax, exact to the reference, through converter and loader.

Tolerances: each network fixture is reproduced to max |ours - reference| <= 1e-5 x max|reference|
(float32 accumulation over up to 18 conv layers; measured 2.4e-6 at 256 and 2.9e-6 at 1024).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from support.harness import REPO, cli, fixture_path, run_python
from pulse_jax import generators
from pulse_jax.io import weights_dir
from pulse_jax.nets import stylegan1
from weights_convert.convert import convert_and_save, convert_sources

QUIET = lambda s: None


def _render(weights, dlatents, noise):
  g = generators.Generator(weights.kind, weights.config)
  return np.asarray(jax.jit(g.render)(weights.params, jnp.asarray(dlatents), noise))


def _assert_close(out, ref, rel=1e-5):
  err = np.abs(out - ref).max()
  assert err <= rel * np.abs(ref).max(), (err, np.abs(ref).max())


@pytest.mark.parametrize("name", ["synthesis_tiny256", "synthesis_tiny1024"])
@pytest.mark.parametrize("suffix", [".pt", "_legacy.pt"])
def test_synthesis_fixture_through_converter_and_loader(tmp_path, name, suffix):
  src = fixture_path(name + suffix)
  data = np.load(fixture_path(name + ".npz"))
  out_dir = convert_and_save([str(src)], str(tmp_path / "w"), log=QUIET)
  weights = weights_dir.load_weights(out_dir)
  cfg = weights.config
  assert cfg.resolution == data["image"].shape[-1] and (cfg.fmap_base, cfg.fmap_max) == (1024, 32)
  meta = json.load(open(os.path.join(out_dir, "metadata.json")))
  assert meta["kind"] == "stylegan" and meta["sources"][0]["kind"] == "pulse_synthesis"
  assert len(meta["sources"][0]["sha256"]) == 64 and meta["format_version"] == 1
  noise = [data[f"noise_{i}"] for i in range(cfg.num_layers)]
  _assert_close(_render(weights, data["dlatents"], noise), data["image"])


def test_mapping_fixture():
  data = np.load(fixture_path("mapping.npz"))
  w = convert_sources([str(fixture_path("mapping.pt"))], gaussian_fit_samples=0, log=QUIET)
  out = stylegan1.MappingNetwork(w.config).apply({"params": w.params["mapping"]}, data["z"])
  _assert_close(np.asarray(out), data["w"], rel=1e-6)


def test_dcgan_fixture(dcgan_weights):
  data = np.load(fixture_path("dcgan_digiface.npz"))
  assert dcgan_weights.kind == "dcgan"
  g = generators.from_weights(dcgan_weights)
  out = np.asarray(g.render(dcgan_weights.params, jnp.asarray(data["z"]).reshape(4, 1, 100), []))
  _assert_close(out, data["image"])


def test_real_gaussian_fit_read_without_torch():
  path = fixture_path("real/gaussian_fit.pt")
  w = convert_sources([str(path)], log=QUIET)
  fit = w.params["gaussian_fit"]
  assert fit["mean"].shape == (512,) and fit["std"].shape == (512,)
  assert fit["mean"].dtype == np.float32 and np.all(fit["std"] > 0)
  # In a fresh interpreter (other tests may import torch): reading it never imports torch.
  code = ("import sys; from weights_convert.convert import convert_sources; "
          f"convert_sources([{str(path)!r}], log=lambda s: None); "
          "assert 'torch' not in sys.modules, 'torch was imported'")
  r = run_python("-c", code, cwd=REPO, timeout=120)
  assert r.returncode == 0, r.stderr


def test_synthesis_mapping_and_fit_combine_into_one_checkpoint(tmp_path):
  srcs = [fixture_path("synthesis_tiny256.pt"), fixture_path("mapping.pt"),
          fixture_path("real/gaussian_fit.pt")]
  out = convert_and_save([str(s) for s in srcs], str(tmp_path / "w"), log=QUIET)
  w = weights_dir.load_weights(out)
  assert sorted(w.params) == ["gaussian_fit", "mapping", "synthesis"]
  assert w.metadata["gaussian_fit"] == {"how": "imported", "file": "gaussian_fit.pt"}
  generators.from_weights(w)  # has everything the search needs
  with pytest.raises(FileExistsError, match="--overwrite"):
    convert_and_save([str(srcs[0])], out, log=QUIET)


def test_tf_pickle_with_official_structure_converts_and_renders(tmp_path):
  """Fixture weights written as NVIDIA's TF pickle render the reference's image."""
  from support.tf_official import write_official_pickle
  data = np.load(fixture_path("synthesis_tiny256.npz"))
  w = convert_sources([str(fixture_path("synthesis_tiny256.pt")), str(fixture_path("mapping.pt"))],
                      gaussian_fit_samples=0, log=QUIET)
  pkl = tmp_path / "karras2019stylegan-tiny.pkl"
  write_official_pickle(pkl, w.config, w.params)
  out = convert_and_save([str(pkl)], str(tmp_path / "w"), gaussian_fit_samples=4096, log=QUIET)
  back = weights_dir.load_weights(out)
  assert back.config == w.config
  assert sorted(back.params) == ["dlatent_avg", "gaussian_fit", "mapping", "synthesis"]
  assert back.metadata["sources"][0]["kind"] == "stylegan_tf"
  noise = [data[f"noise_{i}"] for i in range(w.config.num_layers)]
  _assert_close(_render(back, data["dlatents"], noise), data["image"])
  jax.tree.map(np.testing.assert_array_equal, back.params["mapping"], w.params["mapping"])


def test_converter_names_leftover_and_missing_tensors(tmp_path):
  from weights_convert.tables import stylegan1 as tables
  w = convert_sources([str(fixture_path("synthesis_tiny256.pt"))], log=QUIET)
  table = tables.torch_synthesis_table(w.config)
  tensors = {e.source: np.zeros(1) for e in table}
  tensors["blocks.4x4.extra"] = np.zeros(1)
  del tensors["torgb.bias"]
  with pytest.raises(ValueError) as e:
    tables.apply_table(table, tensors, "x.pt")
  assert "blocks.4x4.extra" in str(e.value) and "torgb.bias" in str(e.value)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"hello, not weights", "not a weights file"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a weights file"),
])
def test_converter_rejects_non_weight_files(tmp_path, content, match):
  p = tmp_path / "weights.pt"
  p.write_bytes(content)
  with pytest.raises(ValueError, match=match) as e:
    convert_sources([str(p)], log=QUIET)
  assert "weights.pt" in str(e.value)


def test_converter_detects_by_content_not_name(tmp_path):
  import shutil
  p = tmp_path / "mapping.pt"  # a synthesis file under a misleading name
  shutil.copy(fixture_path("synthesis_tiny256_legacy.pt"), p)
  w = convert_sources([str(p)], log=QUIET)
  assert "synthesis" in w.params and "mapping" not in w.params


def test_loader_names_shape_mismatches_before_allocating(tmp_path):
  out = convert_and_save([str(fixture_path("synthesis_tiny256.pt"))], str(tmp_path / "w"), log=QUIET)
  meta_path = os.path.join(out, "metadata.json")
  meta = json.load(open(meta_path))
  meta["config"]["fmap_max"] = 64  # architecture no longer matches the stored tensors
  json.dump(meta, open(meta_path, "w"))
  with pytest.raises(ValueError) as e:
    weights_dir.load_weights(out)
  msg = str(e.value)
  assert "stored shape" in msg and "block_0" in msg and "architecture" in msg


def test_gaussian_fit_matches_direct_computation():
  from pulse_jax.generators.prior import fit_gaussian
  cfg = stylegan1.StyleGANConfig(resolution=8)
  params = stylegan1.MappingNetwork(cfg).init(jax.random.key(3), jnp.zeros((1, 512)))["params"]
  fit = fit_gaussian(params, cfg, num_samples=5000, seed=7, chunk=2048)
  # The same samples, mapped at once, with numpy statistics (unbiased std as torch.std).
  key = jax.random.key(7)
  ys = []
  for size in (2048, 2048, 904):
    key, sub = jax.random.split(key)
    z = jax.random.normal(sub, (size, 512))
    w = stylegan1.MappingNetwork(cfg).apply({"params": params}, z)
    ys.append(np.asarray(jnp.where(w >= 0, w, 5.0 * w), np.float64))
  y = np.concatenate(ys)
  np.testing.assert_allclose(fit["mean"], y.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fit["std"], y.std(0, ddof=1), rtol=1e-5, atol=1e-6)


def test_weights_convert_cli(tmp_path):
  out = tmp_path / "w"
  r = cli("weights_convert", f"--source={fixture_path('synthesis_tiny256.pt')}",
          f"--source={fixture_path('real/gaussian_fit.pt')}", f"--out={out}", cwd=REPO,
          timeout=300)
  assert r.returncode == 0, r.stderr
  assert "max |reloaded - converted| = 0" in r.stdout
  notes = tmp_path / "notes.txt"
  notes.write_text("not weights")
  r = cli("weights_convert", f"--source={notes}", f"--out={tmp_path / 'x'}", cwd=REPO,
          timeout=300)
  assert r.returncode == 1 and "notes.txt" in r.stderr and "not a weights file" in r.stderr


@pytest.mark.slow
def test_render_cli_writes_raw_npz_and_png(tmp_path):
  data = np.load(fixture_path("synthesis_tiny256.npz"))
  out = convert_and_save([str(fixture_path("synthesis_tiny256.pt"))], str(tmp_path / "w"), log=QUIET)
  lat = tmp_path / "lat.npz"
  np.savez(lat, dlatents=data["dlatents"], **{f"noise_{i}": data[f"noise_{i}"] for i in range(14)})
  r = cli("pulse_jax.render", f"--weights={out}", f"--latents={lat}",
          f"--out={tmp_path / 'img.npz'}", cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr
  _assert_close(np.load(tmp_path / "img.npz")["image"], data["image"])
  r = cli("pulse_jax.render", f"--weights={out}", f"--latents={lat}",
          f"--out={tmp_path / 'img.png'}", cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr
  assert (tmp_path / "img_0.png").exists() and (tmp_path / "img_1.png").exists()


@pytest.mark.slow
@pytest.mark.full_size
def test_full_default_configuration_converts_loads_and_renders(tmp_path):
  """The official 1024 architecture (18 layers, ~24M parameters), random weights, as a TF pickle."""
  from support.tf_official import write_official_pickle
  cfg = stylegan1.StyleGANConfig()
  shapes = stylegan1.synthesis_param_shapes(cfg)
  rng = np.random.default_rng(0)
  params = {"synthesis": jax.tree.map(
      lambda s: rng.standard_normal(s.shape).astype(np.float32) * 0.5, shapes)}
  n = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
  assert 24_000_000 < n < 24_200_000
  pkl = tmp_path / "karras2019stylegan-ffhq-1024x1024.pkl"
  write_official_pickle(pkl, cfg, params)
  out = convert_and_save([str(pkl)], str(tmp_path / "w"), gaussian_fit_samples=0, log=QUIET)
  w = weights_dir.load_weights(out)
  assert w.config == cfg
  jax.tree.map(np.testing.assert_array_equal, w.params["synthesis"], params["synthesis"])
  dl = rng.standard_normal((1, 18, 512)).astype(np.float32)
  noise = [rng.standard_normal((1,) + s).astype(np.float32) for s in cfg.noise_shapes()]
  img = _render(w, dl, noise)
  assert img.shape == (1, 3, 1024, 1024) and np.all(np.isfinite(img))
  # Same as rendering the source params directly (conversion and loading lost nothing).
  np.testing.assert_array_equal(img, _render(weights_dir.GeneratorWeights("stylegan", cfg, params),
                                             dl, noise))
