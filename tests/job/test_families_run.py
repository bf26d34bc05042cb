"""`pulse_jax.run --weights=DIR` on StyleGAN2 and StyleGAN3, end to end on the CPU.

NVIDIA's random-weight fixtures (../shared/fixtures/stylegan2_3) are converted with the CLI
and searched with the CLI on an LR target the model made itself. Those fixtures draw every
weight from N(0, 0.25): their mapping is nearly constant (w varies by ~1e-5 over z) and the
SG2 one's images leave [-1, 1], so for the search itself (within eps reached from a start 6x
above it, resume, --init, micro-batches) well-conditioned tiny StyleGAN2 and StyleGAN3
generators are made with NVIDIA's initialisation (support/stylegan_weights.py).

Measured on 2 shared CPU cores: about 1.5 min for the file.
"""
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from support.harness import assert_same_files, cli, fixture_path, result_files
from support.stylegan_weights import healthy_sg2, healthy_sg3
from pulse_jax import generators
from pulse_jax.job import render
from pulse_jax.forward import bicubic
from pulse_jax.io.weights_dir import load_weights
from pulse_jax.job.settings import RunOptions
from pulse_jax.job.pipeline import run_job

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

EPS = 2e-3


def _job(**kw):
  lines = []
  summary = run_job(RunOptions(**kw), log=lines.append, warn=lines.append)
  return summary, lines


def _report(out, stem) -> dict:
  return json.loads((pathlib.Path(out) / stem / "report.json").read_text())


def _trace_l2(out, stem) -> np.ndarray:
  """[restarts, steps] raw L2 of every step (trace.json)."""
  t = json.loads((pathlib.Path(out) / stem / "trace.json").read_text())
  return np.asarray([t["restarts"][k]["L2_raw"] for k in sorted(t["restarts"], key=int)])


def model_target(weights_dir, lr_size: int, path, seed: int = 123) -> np.ndarray:
  """An LR target made by the model itself: a prior sample (no noise), bicubic-down-sampled as
  the search does, saved as PNG; returns the LR in [0, 1] before quantisation."""
  w = load_weights(str(weights_dir))
  g = generators.from_weights(w)
  x = jax.random.normal(jax.random.PRNGKey(seed), (1, g.num_layers, g.latent_dim))
  hr = (g.render(w.params, g.latent_to_w(w.params, x), []) + 1.0) / 2.0
  lr = np.asarray(bicubic.downsample(hr, g.resolution // lr_size))[0]
  Image.fromarray(np.round(np.clip(lr.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)).save(path)
  return lr


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """sg2_tiny64 and sg3t_tiny64 converted by `python -m weights_convert` (small prior fit)."""
  d = tmp_path_factory.mktemp("converted")
  out = {}
  for name in ("sg2_tiny64", "sg3t_tiny64"):
    pkl = fixture_path(f"stylegan2_3/{name}.pkl")
    proc = cli("weights_convert", f"--source={pkl}", f"--out={d / name}",
               "--gaussian_fit_samples=1024", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out[name] = d / name
  return out


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
  d = tmp_path_factory.mktemp("healthy")
  weights = healthy_sg2(d / "weights")
  lr = model_target(weights, 8, d / "t8.png")
  return {"weights": weights, "input": d / "t8.png", "lr": lr}


# ----------------------------------------------------------------------------- options

def test_family_defaults_come_after_given_values_and_presets(healthy):
  from pulse_jax.job import model as job_model
  from pulse_jax.job import settings
  w = str(healthy["weights"])
  r = settings.resolve(RunOptions(weights=w))
  assert (r.bad_noise_layers, r.sources["bad_noise_layers"], r.family) == ("6", "family",
                                                                         "stylegan2")
  assert r.sources["num_trainable_noise_layers"] == "default"  # 7 noise layers: 5 stay
  r = settings.resolve(RunOptions(weights=w, bad_noise_layers="0.6"))
  assert (r.bad_noise_layers, r.sources["bad_noise_layers"], r.family) == ("0.6", "given", None)
  v1 = settings.resolve(RunOptions())  # the built-in model: the reference's defaults
  assert (v1.bad_noise_layers, v1.sources["bad_noise_layers"]) == ("17", "default")
  # options the family ignores: not recorded, a note when given
  g = generators.from_weights(load_weights(w))
  o = settings.resolve(RunOptions(weights=w, compute_dtype="bfloat16", remat=True))
  assert not {"compute_dtype", "remat"} & set(settings.record(o, g)["options"])
  notes = job_model.generator_notes(o, g)
  assert notes == ["note: the stylegan2 generator computes in float32 only: --compute_dtype "
                   "does not apply",
                   "note: the stylegan2 generator has no rematerialisation policies: --remat "
                   "does not apply"], notes


# ----------------------------------------------------------------------------- the CLI

def test_sg2_fixture_converted_and_searched_by_the_cli(converted, tmp_path):
  """convert -> run -> report/outputs -> render of the run's latents reproduces hr_0.png."""
  weights = converted["sg2_tiny64"]
  lr = model_target(weights, 16, tmp_path / "t16.png")
  out = tmp_path / "out"
  proc = cli("pulse_jax.run", f"--weights={weights}", f"--input={tmp_path / 't16.png'}",
             f"--output_dir={out}", "--steps=8", "--restarts=2", "--chunk_size=4", timeout=600)
  assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: not within eps (below)
  rep = _report(out, "t16")
  assert rep["weights"]["kind"] == "stylegan2" and rep["weights"]["resolution"] == 64
  opts = rep["options"]
  # 9 noise layers (0..8): the family default zeroes the last, not v1's layer 17
  assert opts["bad_noise_layers"] == {"value": "8", "source": "family"}
  assert opts["num_trainable_noise_layers"] == {"value": 5, "source": "default"}
  assert "compute_dtype" not in opts and "remat" not in opts  # float32 only: not listed
  assert rep["settings"]["bad_noise_layers"] == "8"
  assert {p.name for p in (out / "t16").iterdir()} >= {"hr_0.png", "lr_0.png", "input.png",
                                                      "latents.npz", "report.json"}
  assert Image.open(out / "t16" / "hr_0.png").size == (64, 64)
  assert Image.open(out / "t16" / "lr_0.png").size == (16, 16)
  with np.load(out / "t16" / "latents.npz") as z:
    assert z["latent"].shape == (2, 10, 512)
    assert "noise_8" not in z.files and z["noise_0"].shape == (2, 1, 4, 4)  # layer 8 zeroed
  # The fixture's images leave [0, 1] (58% of these LR pixels > 1) and hardly depend on the
  # latent: within eps is out of reach; the search gets to about the clipping floor, the
  # model's own L2 to its clipped PNG (measured: from 4.3e-2 at step 1 to 1.54e-2 after 8
  # steps; floor 1.70e-2, undercut by the noise maps).
  png = np.asarray(Image.open(tmp_path / "t16.png"), np.float32).transpose(2, 0, 1) / 255.0
  floor = float(np.mean((lr - png) ** 2))
  assert rep["best"]["l2"] <= 1.05 * floor, (rep["best"], floor)
  again = render.render_file(str(weights), str(out / "t16" / "latents.npz"),
                             str(tmp_path / "again.png"))
  assert (np.asarray(Image.open(again[0])) == np.asarray(Image.open(out / "t16" / "hr_0.png"))).all()


def test_sg3_fixture_converted_and_searched_by_the_cli(converted, tmp_path):
  """StyleGAN3-T: within eps (its mapping is nearly constant, so any start is close: measured
  L2 7.9e-7 at step 1), no noise options listed."""
  weights = converted["sg3t_tiny64"]
  model_target(weights, 16, tmp_path / "t16.png")
  out = tmp_path / "out"
  proc = cli("pulse_jax.run", f"--weights={weights}", f"--input={tmp_path / 't16.png'}",
             f"--output_dir={out}", "--steps=4", "--restarts=2", "--chunk_size=2", timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  rep = _report(out, "t16")
  assert rep["weights"]["kind"] == "stylegan3" and rep["within_eps"]
  assert rep["best"]["l2"] <= EPS
  assert not {"noise_type", "num_trainable_noise_layers", "bad_noise_layers", "compute_dtype",
              "remat"} & set(rep["options"])
  with np.load(out / "t16" / "latents.npz") as z:
    assert z["latent"].shape == (2, 16, 512) and not [k for k in z.files if "noise" in k]


# ----------------------------------------------------------------------------- the search

@pytest.fixture(scope="module")
def base(healthy, tmp_path_factory):
  """20 steps, 2 restarts, a checkpoint every 10 steps."""
  d = tmp_path_factory.mktemp("base")
  kw = dict(weights=str(healthy["weights"]), input=str(healthy["input"]), restarts=2, steps=20,
            chunk_size=5, output_dir=str(d / "out"), checkpoint_dir=str(d / "ckpt"),
            checkpoint_every=10)
  summary, lines = _job(**kw)
  assert summary["exit_code"] == 0, lines
  return {"dir": d, "kw": kw, "summary": summary, "lines": lines}


def test_within_eps_from_a_start_well_above_it(base):
  out = base["kw"]["output_dir"]
  rep = _report(out, "t8")
  l2 = _trace_l2(out, "t8")
  # measured: step 1 L2 1.26e-2 and 1.76e-2 (6x and 9x eps), after 20 steps 1.39e-3 and 1.71e-3
  assert l2[:, 0].min() > 3 * EPS, l2[:, 0]
  assert rep["within_eps"] and rep["restarts_within_eps"] == 2
  assert rep["best"]["l2"] <= EPS
  assert rep["options"]["bad_noise_layers"] == {"value": "6", "source": "family"}
  assert base["summary"]["options"]["bad_noise_layers"]["source"] == "family"


def test_sg3_within_eps_from_a_start_well_above_it(tmp_path):
  """StyleGAN3 with NVIDIA's initialisation: its images vary less with the latent (std 0.05),
  so a tighter eps (5e-4). Measured: step 1 L2 4.4e-3 and 1.7e-3, restart 0 within eps after
  about 25 steps (3.4e-4 at step 35)."""
  weights = healthy_sg3(tmp_path / "weights")
  model_target(weights, 8, tmp_path / "t8.png")
  s, lines = _job(weights=str(weights), input=str(tmp_path / "t8.png"), restarts=2, steps=40,
                  chunk_size=10, eps=5e-4, output_dir=str(tmp_path / "out"))
  rep = _report(tmp_path / "out", "t8")
  l2 = _trace_l2(tmp_path / "out", "t8")
  assert l2[:, 0].min() > 3 * 5e-4, l2[:, 0]
  assert s["exit_code"] == 0 and rep["within_eps"] and rep["best"]["l2"] <= 5e-4, rep["best"]
  assert "bad_noise_layers" not in rep["options"]


def _outputs(out) -> dict:
  """The result files of run folder `out`'s one input, t8 (`result_files`)."""
  return result_files(pathlib.Path(out), ["t8"])


def test_the_same_command_twice_and_a_resume_from_the_checkpoint(base, tmp_path):
  kw = dict(base["kw"])
  first = _outputs(kw["output_dir"])
  # the same command again: complete outputs are kept, nothing is searched
  s, lines = _job(**kw)
  assert s["kept"] == 1 and any("skipped: the outputs of" in l for l in lines), lines
  # interrupted after its step-10 checkpoint: report.json missing, newest checkpoint gone
  out, ckpt = tmp_path / "out", tmp_path / "ckpt"
  shutil.copytree(kw["output_dir"], out)
  shutil.copytree(kw["checkpoint_dir"], ckpt)
  (out / "t8" / "report.json").unlink()
  (batch,) = ckpt.glob("batch-t8-*")
  steps = sorted(int(p.name) for p in batch.iterdir() if p.name.isdigit())
  assert steps == [10, 20]
  shutil.rmtree(batch / "20")
  s, lines = _job(**{**kw, "output_dir": str(out), "checkpoint_dir": str(ckpt)})
  assert s["exit_code"] == 0 and any("resumed from step 10 of 20" in l for l in lines), lines
  assert_same_files(_outputs(out), first)  # bit for bit the uninterrupted run


def test_init_continues_every_restart(base, tmp_path):
  kw = {**base["kw"], "checkpoint_dir": None, "checkpoint_every": 0}
  before = _report(kw["output_dir"], "t8")
  s, lines = _job(**{**kw, "output_dir": str(tmp_path), "steps": 10, "learning_rate": 0.05,
                     "init": kw["output_dir"]})
  assert any("2 rows for 2 restarts: restart r continues row r" in l for l in lines), lines
  after = _report(tmp_path, "t8")
  # each restart continues its own kept iterate (latent and noise): step 1 re-evaluates it
  # (same L2), and its kept total (the L2 clamped at eps + GEOCROSS) gets no worse
  first = _trace_l2(tmp_path, "t8")[:, 0]
  np.testing.assert_allclose(first, [r["l2"] for r in before["restarts"]], rtol=1e-4)
  t_before = [r["total"] for r in before["restarts"]]
  t_after = [r["total"] for r in after["restarts"]]
  assert all(a <= b * (1 + 1e-5) for a, b in zip(t_after, t_before)), (t_before, t_after)
  assert after["within_eps"] and after["restarts_within_eps"] == 2


def test_micro_batches_give_the_same_search(base, tmp_path):
  """The generic sharding path: each step's restarts in 2 sequential groups."""
  kw = {**base["kw"], "checkpoint_dir": None, "checkpoint_every": 0}
  s, _ = _job(**{**kw, "output_dir": str(tmp_path), "micro_batches": 2})
  assert s["exit_code"] == 0
  rep = _report(tmp_path, "t8")
  assert rep["timings"]["micro_batches"] == 2
  np.testing.assert_allclose(_trace_l2(tmp_path, "t8"), _trace_l2(kw["output_dir"], "t8"),
                             rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("family", ["stylegan2", "stylegan3"])
def test_forward_operators_on_every_family(healthy, tmp_path, family):
  """Blur + area down-sampling + grayscale + a half-known mask, on a StyleGAN2 and a StyleGAN3:
  the target is D(a sample of the model); the search runs through the same D: a 1-channel LR
  written that is D of the HR written, the forward model in the report, within eps."""
  from pulse_jax.forward import ForwardModel
  weights = healthy["weights"] if family == "stylegan2" else healthy_sg3(tmp_path / "w3")
  w = load_weights(str(weights))
  g = generators.from_weights(w)
  x = jax.random.normal(jax.random.PRNGKey(7), (1, g.num_layers, g.latent_dim))
  hr = (g.render(w.params, g.latent_to_w(w.params, x), []) + 1.0) / 2.0
  fwd = ForwardModel.from_options(factor=g.resolution // 8, blur_sigma=1.0, downsample="area",
                                  grayscale=True)
  lr = np.asarray(fwd.apply(jnp.clip(hr, 0, 1), fwd.arrays()))[0, 0]
  Image.fromarray(np.round(lr * 255).astype(np.uint8)).save(tmp_path / "t.png")
  mask = np.zeros((8, 8), np.uint8)
  mask[:, :4] = 255
  Image.fromarray(mask).save(tmp_path / "m.png")
  s, lines = _job(weights=str(weights), input=str(tmp_path / "t.png"), restarts=2, steps=20,
                  chunk_size=10, blur_sigma=1.0, downsample="area", grayscale=True,
                  mask=str(tmp_path / "m.png"), output_dir=str(tmp_path / "out"))
  assert s["exit_code"] == 0, lines
  rep = _report(tmp_path / "out", "t")
  assert rep["forward"]["grayscale"] and rep["forward"]["downsample"] == "area"
  with Image.open(tmp_path / "out" / "t" / "lr_0.png") as im:
    assert im.mode == "L" and im.size == (8, 8)
  assert rep["within_eps"] and rep["best"]["l2"] <= rep["eps"]
  # The LR written is D(the HR written): the search ran through this forward model.
  hr0 = np.asarray(Image.open(tmp_path / "out" / "t" / "hr_0.png"), np.float32) / 255.0
  d_hr = np.asarray(fwd.apply(jnp.asarray(hr0.transpose(2, 0, 1)[None]), fwd.arrays()))[0, 0]
  lr0 = np.asarray(Image.open(tmp_path / "out" / "t" / "lr_0.png"), np.float32) / 255.0
  assert np.abs(d_hr - lr0).max() <= 1.5 / 255, np.abs(d_hr - lr0).max()


def test_ilo_through_the_job_on_stylegan2_and_render_of_its_outputs(healthy, tmp_path):
  """`--ilo` on a StyleGAN2 through the job (run_job, as `pulse_jax.run --weights=DIR --ilo`):
  the family's default cut points are all entered, the report says so, and `pulse_jax.render`
  of the run's latents.npz (its two-part activation 'ilo.b16.x', 'ilo.b16.img') gives hr_0.png
  (within one level of 255: XLA fuses the compiled search's render differently)."""
  out = tmp_path / "out"
  s, lines = _job(weights=str(healthy["weights"]), input=str(healthy["input"]), restarts=2,
                  steps=4, ilo=True, ilo_steps=2, chunk_size=5, eps=0.0, duplicates=2,
                  output_dir=str(out))
  assert s["exit_code"] == 0, lines
  rep = _report(out, "t8")
  assert rep["status"] == "not_within_eps"   # eps 0: never within, every step runs
  ilo = rep["ilo"]
  assert ilo["layers"] == ilo["entered"] == ["b4", "b8", "b16"] and ilo["kept_layer"] == "b16"
  assert ilo["starts"] == [4, 6, 8] and rep["stopping"]["steps_run"] == rep["stopping"]["steps"] == 10
  for k in ilo["kept"]:
    assert set(k["moved"]) == {"b4", "b8", "b16"}
    assert all(0 <= v <= ilo["radius"] * (1 + 1e-5) for v in k["moved"].values()), k
  assert s["files"][0]["ilo_kept_layer"] == "b16"
  assert any("ILO b4,b8,b16: the kept image left the generator's range by" in x for x in lines)
  with np.load(out / "t8" / "latents.npz") as z:
    assert {"ilo.b16.x", "ilo.b16.img"} <= set(z.files)
  again = render.render_file(str(healthy["weights"]), str(out / "t8" / "latents.npz"),
                             str(tmp_path / "again.png"))
  for k, path in enumerate(again):
    a = np.asarray(Image.open(path), np.int16)
    b = np.asarray(Image.open(out / "t8" / f"hr_{k}.png"), np.int16)
    assert np.abs(a - b).max() <= 1, (k, np.abs(a - b).max())
