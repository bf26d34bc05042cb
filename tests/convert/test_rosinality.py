"""rosinality's stylegan2-pytorch checkpoints (weights_convert.tables.rosinality).

The fixture tests/data/rosinality_tiny32.{pt,npz} was written by rosinality's own model.py
(tests/data/make_rosinality_fixture.py: a 32 px generator with a small channel table, random
weights, saved as its train.py saves a checkpoint, with an argparse.Namespace of args) and
holds that code's outputs: with its noise buffers (`image_const`), with zero noise from the
returned W+ (`image_none`) and with truncation 0.7 (`image_trunc`). Measured agreement after
conversion: 3.3e-7 of the output range (float32 both); tested at 1e-5, as the NVIDIA fixtures.
"""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from support.harness import REPO, TEST_DATA, cli
from pulse_jax import generators
from pulse_jax.job import render
from pulse_jax.nets import stylegan2 as sg2
from pulse_jax.io.weights_dir import load_weights
from weights_convert import WeightFileError
from weights_convert.tables import rosinality as tables_rosinality
from weights_convert.tables import stylegan2 as tables_stylegan2
from weights_convert.readers.torch_files import read_torch_file

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

PT, NPZ = TEST_DATA / "rosinality_tiny32.pt", TEST_DATA / "rosinality_tiny32.npz"
TOL = 1e-5


def _rel(a, b) -> float:
  return float(np.abs(np.asarray(a) - b).max() / np.ptp(b))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  out = tmp_path_factory.mktemp("ros") / "w"
  proc = cli("weights_convert", f"--source={PT}", f"--out={out}", "--gaussian_fit_samples=4096",
             cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out


def test_checkpoint_converts_and_reproduces_rosinalitys_outputs(converted):
  w = load_weights(str(converted))
  meta = json.loads((converted / "metadata.json").read_text())
  assert w.kind == "stylegan2" and meta["sources"][0]["kind"] == "rosinality_stylegan2"
  assert (w.config.img_resolution, w.config.w_dim, w.config.mapping_layers) == (32, 16, 2)
  assert (w.config.channel_base, w.config.channel_max) == (256, 16)
  ref = np.load(NPZ)
  g = generators.from_weights(w)
  assert _rel(render.render_arrays(g, w.params, {"dlatents": ref["ws"]}), ref["image_const"]) < TOL
  assert _rel(render.render_arrays(g, w.params, {"dlatents": ref["ws"]}, noise_mode="none"),
              ref["image_none"]) < TOL
  assert _rel(g.mapping(w.params, jnp.asarray(ref["z"])), ref["ws"]) < TOL
  assert _rel(render.render_arrays(g, w.params, {"z": ref["z"]}, truncation_psi=0.7),
              ref["image_trunc"]) < TOL
  np.testing.assert_array_equal(w.params["mapping"]["w_avg"], ref["latent_avg"])


def test_training_checkpoint_is_read_without_running_anything():
  """train.py pickles its argparse.Namespace: read as a plain dict (an allow-listed stand-in)."""
  obj = read_torch_file(PT)
  assert sorted(obj) == ["args", "g", "g_ema", "latent_avg"]
  assert dict(obj["args"]) == {"size": 32, "latent": 16, "n_mlp": 2, "channel_multiplier": 2,
                               "lr": 0.002, "r1": 10.0}
  assert tables_rosinality.is_checkpoint(obj) and not tables_rosinality.is_checkpoint(obj["args"])


def test_network_g_and_a_bare_state_dict():
  obj = read_torch_file(PT)
  ema = tables_rosinality.to_network(str(PT), obj)
  g = tables_rosinality.to_network(str(PT), obj, "G")
  key = "synthesis.b8.conv0.weight"
  np.testing.assert_array_equal(g.tensors[key], obj["g"]["convs.0.conv.weight"][0])
  assert np.abs(g.tensors[key] - ema.tensors[key]).max() > 0
  bare = tables_rosinality.to_network(str(PT), obj["g_ema"])  # torch.save(g_ema.state_dict())
  assert "mapping.w_avg" not in bare.tensors
  assert bare.init_kwargs["mapping_kwargs"]["w_avg_beta"] is None  # no average: no truncation
  config, params = tables_stylegan2.from_network(bare)
  with pytest.raises(ValueError, match="truncation needs w_avg"):
    sg2.mapping(params, config, jnp.zeros((1, 16)), truncation_psi=0.7)
  with pytest.raises(WeightFileError, match=r"--network=D is not among its generators \['G_ema', 'G'\]"):
    tables_rosinality.to_network(str(PT), obj, "D")


def test_tensors_the_table_does_not_list_or_lacks_are_all_named():
  sd = dict(read_torch_file(PT)["g_ema"])
  del sd["convs.3.noise.weight"]
  sd["convs.3.extra"] = np.zeros(3, np.float32)
  with pytest.raises(WeightFileError, match=r"not in the name table \(1\): \['convs.3.extra'\]"
                                            r"[\s\S]*not in the file \(1\): \['convs.3.noise.weight'\]"):
    tables_rosinality.to_network(str(PT), sd)
  sd = dict(read_torch_file(PT)["g_ema"])
  sd["convs.0.conv.blur.kernel"] = np.ones((4, 4), np.float32)
  with pytest.raises(WeightFileError, match="not the \\[1, 3, 3, 1\\] FIR filter"):
    tables_rosinality.to_network(str(PT), sd)


def test_converted_checkpoint_is_searched(converted, tmp_path):
  from PIL import Image
  from pulse_jax.job.pipeline import run_job
  from pulse_jax.job.settings import RunOptions
  Image.new("RGB", (8, 8), (120, 80, 60)).save(tmp_path / "x.png")
  summary = run_job(RunOptions(weights=str(converted), input=str(tmp_path / "x.png"),
                               output_dir=str(tmp_path / "out"), steps=2, restarts=2,
                               chunk_size=2),
                    log=lambda s: None, warn=lambda s: None)
  rep = json.loads((tmp_path / "out" / "x" / "report.json").read_text())
  assert rep["weights"]["kind"] == "stylegan2" and np.isfinite(rep["best"]["l2"])
  assert Image.open(tmp_path / "out" / "x" / "hr_0.png").size == (32, 32)
  assert summary is not None
