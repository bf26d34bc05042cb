"""`python -m pulse_jax.render` on converted StyleGAN2 / StyleGAN3 directories reproduces
NVIDIA's own outputs (../shared/fixtures/stylegan2_3, made by NVIDIA's code on the CPU):
'dlatents' with the model's const noise (no noise arrays) and with --noise_mode=none, 'z'
through the mapping with truncation; and conditional models: rendered with --class_index,
searched one class at a time with its own prior (--class_index), and refused by the search
with a message naming the classes when converted without the per-class priors.

Tolerance: 1e-5 of the output range (measured 4-5e-7 for SG2, float32 both)."""
import jax.numpy as jnp
import numpy as np
import pytest

from support.harness import cli, fixture_path
from pulse_jax import generators
from pulse_jax.job import render
from pulse_jax.nets import stylegan2 as sg2
from pulse_jax.io.weights_dir import load_weights
from pulse_jax.job.errors import UsageError
from pulse_jax.job.settings import RunOptions
from pulse_jax.job.pipeline import run_job
from support.stylegan_weights import healthy_sg2

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

TOL = 1e-5


def _cli(*args):
  """`python -m pulse_jax.render ARGS` (subprocess.CompletedProcess)."""
  return cli("pulse_jax.render", *args, timeout=600)


def _rel(a, b) -> float:
  return float(np.abs(np.asarray(a) - b).max() / np.ptp(b))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """The fixtures converted by the CLI, no prior (rendering needs none)."""
  d = tmp_path_factory.mktemp("w")

  def convert(name):
    out = d / name
    if (out / "metadata.json").exists():
      return out
    proc = cli("weights_convert", f"--source={fixture_path(f'stylegan2_3/{name}.pkl')}",
               f"--out={out}", "--gaussian_fit_samples=0", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
  return convert


def _render(tmp_path, weights, arrays: dict, *flags) -> np.ndarray:
  np.savez(tmp_path / "in.npz", **arrays)
  out = tmp_path / "out.npz"
  proc = _cli(f"--weights={weights}", f"--latents={tmp_path / 'in.npz'}", f"--out={out}",
              "--rows=all", "--overwrite", *flags)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(out) as z:
    return z["image"]


# The CLI against NVIDIA's images: (fixture, input array, its fixture key, flags, expected key).
CLI_CASES = [
    ("sg2_tiny64", "dlatents", "ws", (), "image_const"),
    ("sg2_tiny64", "dlatents", "ws", ("--noise_mode=none",), "image_none"),
    # the fixture's cutoff (fixtures.json)
    ("sg2_tiny64", "z", "z", ("--truncation_psi=0.7", "--truncation_cutoff=8"), "image_trunc"),
    ("sg3t_tiny64", "z", "z", (), "image"),
    ("sg3t_tiny64", "z", "z", ("--truncation_psi=0.7",), "image_trunc"),
]


@pytest.mark.parametrize("name, array, key, flags, expected", CLI_CASES)
def test_cli_reproduces_nvidia(converted, tmp_path, name, array, key, flags, expected):
  ref = np.load(fixture_path(f"stylegan2_3/{name}.npz"))
  image = _render(tmp_path, converted(name), {array: ref[key]}, *flags)
  assert _rel(image, ref[expected]) < TOL


def test_sg2_256_conv_clamp_and_fp16_declared(converted):
  """sg2_tiny256 (conv_clamp 256, num_fp16_res 4 run in float32), through render_file's
  functions in process."""
  w = load_weights(str(converted("sg2_tiny256")))
  g = generators.Generator(w.kind, w.config)
  ref = np.load(fixture_path("stylegan2_3/sg2_tiny256.npz"))
  assert _rel(render.render_arrays(g, w.params, {"dlatents": ref["ws"]}), ref["image_const"]) < TOL
  assert _rel(render.render_arrays(g, w.params, {"dlatents": ref["ws"]}, noise_mode="none"),
              ref["image_none"]) < TOL
  assert _rel(render.render_arrays(g, w.params, {"z": ref["z"]}, truncation_psi=0.7,
                                   truncation_cutoff=8), ref["image_trunc"]) < TOL
  # the model's const noise is NVIDIA's: noise_<i> = noise_const * noise_strength
  const = g.const_noise(w.params, 1)
  strength = ref["noise_strength"]
  for i, n in enumerate(const):
    np.testing.assert_allclose(np.asarray(n) * strength[i], ref[f"noise_{i}"], rtol=1e-6,
                               atol=1e-7)


def test_sg3r_in_process(converted):
  w = load_weights(str(converted("sg3r_tiny64")))
  g = generators.Generator(w.kind, w.config)
  ref = np.load(fixture_path("stylegan2_3/sg3r_tiny64.npz"))
  assert _rel(render.render_arrays(g, w.params, {"dlatents": ref["ws"]}), ref["image"]) < TOL
  assert _rel(render.render_arrays(g, w.params, {"z": ref["z"]}, truncation_psi=0.7),
              ref["image_trunc"]) < TOL


def test_render_flag_errors(converted, tmp_path):
  weights = converted("sg2_tiny64")
  ref = np.load(fixture_path("stylegan2_3/sg2_tiny64.npz"))
  np.savez(tmp_path / "ws.npz", dlatents=ref["ws"])
  proc = _cli(f"--weights={weights}", f"--latents={tmp_path / 'ws.npz'}",
              f"--out={tmp_path / 'o.npz'}", "--truncation_psi=0.7")
  assert proc.returncode == 1 and "apply to 'z'" in proc.stderr, proc.stderr
  np.savez(tmp_path / "z.npz", z=ref["z"])
  proc = _cli(f"--weights={weights}", f"--latents={tmp_path / 'z.npz'}",
              f"--out={tmp_path / 'o.npz'}", "--class_index=0")
  assert proc.returncode == 1 and "unconditional" in proc.stderr, proc.stderr
  proc = _cli(f"--weights={weights}", f"--latents={tmp_path / 'z.npz'}",
              f"--out={tmp_path / 'o.npz'}", "--noise_mode=random")
  assert proc.returncode == 2, proc.stderr


# ----------------------------------------------------------------------------- conditional

@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
  """A random tiny conditional StyleGAN2 (3 classes), saved with save_weights (no prior)."""
  return healthy_sg2(tmp_path_factory.mktemp("cond") / "weights", c_dim=3, seed=1)


def test_conditional_renders_each_class(conditional, tmp_path):
  w = load_weights(str(conditional))
  z = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
  images = [_render(tmp_path, conditional, {"z": z}, f"--class_index={k}") for k in (0, 2)]
  for k, img in zip((0, 2), images):
    c = jnp.broadcast_to(jnp.eye(3)[k], (2, 3))
    ws = sg2.mapping(w.params, w.config, jnp.asarray(z), c)
    want = np.asarray(sg2.synthesize(w.params, w.config, ws, noise_mode="const"))
    assert _rel(img, want) < TOL
  assert np.abs(images[0] - images[1]).max() > 1e-3  # the class matters
  np.savez(tmp_path / "z.npz", z=z)
  proc = _cli(f"--weights={conditional}", f"--latents={tmp_path / 'z.npz'}",
              f"--out={tmp_path / 'o.npz'}")
  assert proc.returncode == 1 and "3 classes" in proc.stderr and "0..2" in proc.stderr, proc.stderr
  proc = _cli(f"--weights={conditional}", f"--latents={tmp_path / 'z.npz'}",
              f"--out={tmp_path / 'o.npz'}", "--class_index=3")
  assert proc.returncode == 1 and "3 classes" in proc.stderr, proc.stderr


def test_conditional_search_is_refused_naming_the_classes(conditional, tmp_path):
  from PIL import Image
  Image.new("RGB", (8, 8), (120, 80, 60)).save(tmp_path / "x.png")
  with pytest.raises(UsageError, match=r"--weights=.*conditional stylegan2 model \(3 classes"
                                       r".*--class_index=0\.\.2"):
    run_job(RunOptions(weights=str(conditional), input=str(tmp_path / "x.png"),
                       output_dir=str(tmp_path / "out"), steps=1, restarts=1),
            log=lambda s: None, warn=lambda s: None)


@pytest.fixture(scope="module")
def conditional_fitted(tmp_path_factory):
  """The same conditional model with its per-class priors (as weights_convert fits them)."""
  return healthy_sg2(tmp_path_factory.mktemp("condfit") / "weights", c_dim=3, seed=1, fit=True)


def test_conditional_prior_is_one_fit_per_class(conditional_fitted):
  from pulse_jax.generators import prior
  w = load_weights(str(conditional_fitted))
  fit = w.params["gaussian_fit"]
  assert fit["mean"].shape == fit["std"].shape == (3, 64)
  one = prior.fit_pre_activation(sg2, w.params["mapping"], w.config, num_samples=4096,
                                        seed=0, class_index=2)
  np.testing.assert_array_equal(fit["mean"][2], one["mean"])
  np.testing.assert_array_equal(fit["std"][2], one["std"])
  assert np.abs(fit["mean"][0] - fit["mean"][1]).max() > 1e-2  # the class moves the prior
  g = generators.from_weights(w)
  with pytest.raises(ValueError, match="select the class first"):
    g.latent_to_w(w.params, jnp.zeros((1, g.num_layers, 64)))


def _search(weights, tmp_path, name, **kw):
  from PIL import Image
  Image.new("RGB", (8, 8), (120, 80, 60)).save(tmp_path / "x.png")
  run_job(RunOptions(weights=str(weights), input=str(tmp_path / "x.png"),
                     output_dir=str(tmp_path / name), steps=2, restarts=2, chunk_size=2, **kw),
          log=lambda s: None, warn=lambda s: None)
  import json
  return json.loads((tmp_path / name / "x" / "report.json").read_text())


def test_conditional_model_is_searched_with_its_class_prior(conditional_fitted, tmp_path):
  """--class_index=k searches with class k's prior: the kept latent, mapped through that
  prior and rendered, is the saved image; the run records the class."""
  from PIL import Image
  reports = {k: _search(conditional_fitted, tmp_path, f"out{k}", class_index=k) for k in (0, 2)}
  for k, rep in reports.items():
    assert rep["options"]["class_index"] == {"value": k, "source": "given"}
    assert rep["settings"]["class_index"] == k
    again = render.render_file(str(conditional_fitted), str(tmp_path / f"out{k}" / "x" / "latents.npz"),
                               str(tmp_path / f"again{k}.png"), class_index=k)
    saved = np.asarray(Image.open(tmp_path / f"out{k}" / "x" / "hr_0.png"))
    assert (np.asarray(Image.open(again[0])) == saved).all()
  assert reports[0]["best"]["l2"] != reports[2]["best"]["l2"]  # same starts, other priors
  with pytest.raises(ValueError, match=r"conditional with 3 classes.*--class_index in 0\.\.2"):
    render.render_file(str(conditional_fitted), str(tmp_path / "out0" / "x" / "latents.npz"),
                       str(tmp_path / "none.png"))


@pytest.mark.parametrize("class_index", [None, 3])
def test_conditional_search_needs_a_valid_class(conditional_fitted, tmp_path, class_index):
  with pytest.raises(UsageError, match=r"--class_index: this model is conditional with 3 "
                                       r"classes: .* in 0\.\.2 \(got " + repr(class_index)):
    _search(conditional_fitted, tmp_path, "out", class_index=class_index)


def test_class_index_does_not_apply_to_an_unconditional_model(tmp_path):
  """A note, as for every option that does not apply; the search runs."""
  weights = healthy_sg2(tmp_path / "weights")
  from PIL import Image
  Image.new("RGB", (8, 8), (120, 80, 60)).save(tmp_path / "x.png")
  notes = []
  run_job(RunOptions(weights=str(weights), input=str(tmp_path / "x.png"),
                     output_dir=str(tmp_path / "out"), steps=1, restarts=1, class_index=1),
          log=notes.append, warn=notes.append)
  assert any("is unconditional (no classes): --class_index does not apply" in n for n in notes)
