"""ILO (--ilo, search/ilo.py) in a run's outputs: report.json's "ilo" block, summary.json, the log
line, the gallery's line, latents.npz's 'ilo.<layer>' activation and `pulse_jax.render` of it."""
import json
import types

import numpy as np
import pytest
from PIL import Image

from pulse_jax.job import render
from support.harness import SAMPLE

STEPS, ILO_STEPS, RESTARTS, KEEP = 3, 2, 2, 2


@pytest.fixture(scope="module")
def ilo_run(tmp_path_factory, dcgan_weights):
  """One tiny ILO search of the 8x8 sample on the built-in DCGAN (the family's default cut
  points), through the API with an output folder: (folder, Result, log lines, weights)."""
  import pulse_jax
  out = tmp_path_factory.mktemp("ilo_run")
  lines = []
  result = pulse_jax.upsample(str(SAMPLE), output_dir=str(out), ilo=True, steps=STEPS,
                              ilo_steps=ILO_STEPS, restarts=RESTARTS, keep=KEEP, eps=0.0,
                              log=lines.append, warn=lines.append)
  return out, result, lines, dcgan_weights


def _generator(weights):
  from pulse_jax import generators
  return generators.Generator(weights.kind, weights.config)


def _pixels(path) -> np.ndarray:
  with Image.open(path) as im:
    return np.asarray(im, np.int16)


@pytest.mark.slow
def test_report_has_a_consistent_ilo_block(ilo_run):
  out, result, _, weights = ilo_run
  g = _generator(weights)
  report = json.loads((out / SAMPLE.stem / "report.json").read_text())
  block = report["ilo"]
  layers = list(g.ilo_default_layers)
  assert block["layers"] == layers == block["entered"] and block["kept_layer"] == layers[-1]
  assert block["steps_per_layer"] == ILO_STEPS == report["settings"]["ilo_steps"]
  assert block["radius"] == report["settings"]["ilo_radius"]
  assert block["learning_rate"] == report["settings"]["ilo_learning_rate"]
  assert block["starts"] == [STEPS + k * ILO_STEPS for k in range(len(layers))]
  assert report["stopping"]["steps"] == STEPS + len(layers) * ILO_STEPS
  assert [k["restart"] for k in block["kept"]] == [o["restart"] for o in report["outputs"]]
  for k in block["kept"] + [block["best"]]:
    assert list(k["moved"]) == layers
    assert all(0 <= v <= block["radius"] * (1 + 1e-5) for v in k["moved"].values())
  assert block["best"]["restart"] == report["best"]["restart"]
  best = [k for k in block["kept"] if k["restart"] == block["best"]["restart"]]
  assert best and best[0]["moved"] == block["best"]["moved"]
  assert "outside the generator's exact range" in block["meaning"]
  assert result.ilo == block   # the API's Result carries the same block


@pytest.mark.slow
def test_summary_log_and_gallery_tell_the_ilo_search(ilo_run):
  out, _, lines, _ = ilo_run
  report = json.loads((out / SAMPLE.stem / "report.json").read_text())
  block = report["ilo"]
  entry = json.loads((out / "summary.json").read_text())["files"][0]
  assert entry["ilo_kept_layer"] == block["kept_layer"]
  assert entry["ilo_moved"] == block["best"]["moved"]
  layers = ",".join(block["layers"])
  moved = ", ".join(f"{v:.1%} ({k})" for k, v in block["best"]["moved"].items())
  assert any(f"ILO {layers}: the kept image left the generator's range by {moved} of the "
             f"activation (radius {block['radius']:.0%})" in line for line in lines), lines
  page = (out / "index.html").read_text()
  assert '<p class="ilo"><b>ILO</b> ' + layers in page
  assert "outside the generator&#x27;s exact range, within the l1 ball" in page
  assert f"images rendered from {block['kept_layer']}" in page


@pytest.mark.slow
def test_render_of_the_ilo_latents_reproduces_the_run_images(ilo_run, tmp_path):
  out, _, _, weights = ilo_run
  g = _generator(weights)
  d = out / SAMPLE.stem
  layer = json.loads((d / "report.json").read_text())["ilo"]["kept_layer"]
  with np.load(d / "latents.npz") as z:
    arrays = {k: z[k] for k in z.files}
  shape = g.activation_shapes(layer, batch=RESTARTS).shape
  assert arrays[f"ilo.{layer}"].shape == tuple(shape)   # every restart's row
  paths = render.render_file(None, str(d / "latents.npz"), str(tmp_path / "r.png"))
  assert len(paths) == KEEP
  for k, p in enumerate(paths):   # pixel-exact: the same network from the same activation
    assert np.array_equal(_pixels(p), _pixels(d / f"hr_{k}.png"))
  # without the activation, the latents alone render another image: the activation is used
  np.savez(tmp_path / "plain.npz", **{k: v for k, v in arrays.items() if not k.startswith("ilo.")})
  plain = render.render_file(None, str(tmp_path / "plain.npz"), str(tmp_path / "p.png"))
  assert not np.array_equal(_pixels(plain[0]), _pixels(d / "hr_0.png"))


@pytest.mark.slow
def test_render_rejects_a_bad_ilo_activation(ilo_run, tmp_path, monkeypatch):
  out, _, _, weights = ilo_run
  g = _generator(weights)
  latents = out / SAMPLE.stem / "latents.npz"
  with np.load(latents) as z:
    arrays = {k: z[k] for k in z.files}
  (key,) = [k for k in arrays if k.startswith("ilo.")]

  def write(name, **changes):
    a = {k: v for k, v in arrays.items() if k != key}
    a.update(changes)
    np.savez(tmp_path / name, **a)
    return str(tmp_path / name)

  cuts = ", ".join(g.ilo_layers)
  bad = write("unknown.npz", **{"ilo.nowhere": arrays[key]})
  with pytest.raises(ValueError, match=f"'ilo.nowhere'.*cut points are {cuts}"):
    render.render_file(None, bad, str(tmp_path / "u.png"))
  first, second = g.ilo_layers[:2]
  wrong = write("shape.npz", **{f"ilo.{first}": arrays[key]})   # the kept layer's array
  with pytest.raises(ValueError, match=f"'ilo.{first}' has shape"):
    render.render_file(None, wrong, str(tmp_path / "s.png"))
  two = write("two.npz", **{f"ilo.{first}": arrays[key], f"ilo.{second}": arrays[key]})
  with pytest.raises(ValueError, match="more than one cut point"):
    render.render_file(None, two, str(tmp_path / "t.png"))
  # the size limit counts the activation: a limit above the latents alone but below both
  per_row = sum(v.nbytes for k, v in arrays.items() if k not in render.META) // RESTARTS
  monkeypatch.setattr(render, "MAX_RENDER_BYTES", per_row * RESTARTS - 1)
  assert arrays["latent"].nbytes < per_row * RESTARTS - 1
  with pytest.raises(ValueError, match="ILO activations, over"):
    render.render_file(None, str(latents), str(tmp_path / "l.png"), rows="all")
  assert not list(tmp_path.glob("*.png"))


def test_ilo_layer_reads_one_cut_point_and_its_parts():
  g = types.SimpleNamespace(kind="stylegan2", ilo_layers=("b4", "b8", "b16"))
  assert render.ilo_layer(g, ["latent", "noise_0"]) == (None, {})
  assert render.ilo_layer(g, ["latent", "ilo.b8"]) == ("b8", {"ilo.b8": None})
  assert render.ilo_layer(g, ["ilo.b16.x", "ilo.b16.img", "latent"]) == (
      "b16", {"ilo.b16.x": "x", "ilo.b16.img": "img"})
  with pytest.raises(ValueError, match="'ilo.b32.x'.*stylegan2.*cut points are b4, b8, b16"):
    render.ilo_layer(g, ["ilo.b32.x"])
  with pytest.raises(ValueError, match=r"more than one cut point \(b4, b8\)"):
    render.ilo_layer(g, ["ilo.b4.x", "ilo.b8.x"])
  none = types.SimpleNamespace(kind="toy", ilo_layers=())
  with pytest.raises(ValueError, match="no cut points"):
    render.ilo_layer(none, ["ilo.b4"])


def test_report_block_and_log_line_from_a_search_result():
  from pulse_jax.job import result_files
  config = types.SimpleNamespace(steps=10, ilo_steps=5, ilo_radius=0.2, ilo_learning_rate=0.05)
  result = types.SimpleNamespace(
      ilo_layers=("b4", "b8"), ilo_kept_layer="b4",
      ilo_moved={"b4": np.array([[0.03, 0.2, 0.1]], np.float32)},
      selected=np.array([[2, 0]]), ranking=np.array([[2, 0, 1]]))
  block = result_files.ilo_block(result, 0, config=config)
  assert block["entered"] == ["b4"] and block["starts"] == [10, 15]
  assert [k["restart"] for k in block["kept"]] == [2, 0]
  assert block["best"] == {"restart": 2, "moved": {"b4": pytest.approx(0.1)}}
  assert result_files.search_steps(config, result) == 20
  assert result_files.ilo_text(block) == ("ILO b4,b8: the kept image left the generator's range "
                                          "by 10.0% (b4) of the activation (radius 20%)")
  assert result_files.ilo_block(types.SimpleNamespace(ilo_layers=()), 0, config=config) is None


@pytest.mark.slow
def test_render_reads_a_stylegan2_activation_of_two_parts():
  """StyleGAN2's activation is {'x', 'img'}: 'ilo.<layer>.x' and 'ilo.<layer>.img' make the
  dict `render_from` takes (random small weights, zero noise maps)."""
  import jax
  import jax.numpy as jnp
  from pulse_jax import generators
  from pulse_jax.nets import stylegan2 as sg2
  cfg = sg2.Stylegan2Config(z_dim=16, w_dim=16, img_resolution=32, channel_base=128,
                            channel_max=8, mapping_layers=2)
  g = generators.Generator("stylegan2", cfg)
  params = sg2.init_params(jax.random.key(5), cfg)
  layer, b = g.ilo_layers[1], 2
  ws = np.asarray(jax.random.normal(jax.random.key(1), (b, g.num_layers, g.latent_dim)))
  noise = [jnp.zeros((b,) + tuple(s)) for s in g.noise_shapes]
  act = g.render_until(g.prepare(params), jnp.asarray(ws), noise, layer)
  assert set(act) == {"x", "img"}
  moved = {k: np.asarray(v) * 1.05 for k, v in act.items()}   # off the generator's range
  latents = {"dlatents": ws, **{f"ilo.{layer}.{k}": v for k, v in moved.items()}}
  raw = render.render_arrays(g, params, latents, noise_mode="none")
  want = jax.jit(lambda p, w, a: g.render_from(g.prepare(p), w, noise, layer, a))(
      params, jnp.asarray(ws), {k: jnp.asarray(v) for k, v in moved.items()})
  np.testing.assert_array_equal(raw, np.asarray(want))
  with pytest.raises(ValueError, match=f"activation at cut point {layer} is "
                                       f"ilo.{layer}.img, ilo.{layer}.x; found ilo.{layer}.x"):
    render.render_arrays(g, params, {"dlatents": ws, f"ilo.{layer}.x": moved["x"]},
                         noise_mode="none")
