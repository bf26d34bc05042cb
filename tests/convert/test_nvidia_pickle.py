"""NVIDIA network pickles (weights_convert.readers.nvidia_pickle) and their conversion.

The pickles written here are made by this file's own writer (``_write_nvidia_pickle``: the
opcodes ``torch_utils.persistence`` and torch's tensor pickling produce, with made-up module
sources), never copies of NVIDIA's; the real ones are the shared fixtures
(../shared/fixtures/stylegan2_3), read in place.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import pickle
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.nets import stylegan2 as sg2
from weights_convert import UnsafePickleError, WeightFileError
from weights_convert.readers import nvidia_pickle
from weights_convert.tables import stylegan2 as tables_stylegan2
from support.pickle_globals import Call, StandInPickler, stand_in
from weights_convert.readers.tf_pickle import TFNetwork
from support.tf_pickle_writer import write_tf_network_pickle
from support.harness import REPO, cli, fixture_path
from weights_convert.readers.torch_files import LEGACY_MAGIC

PERSIST = stand_in("torch_utils.persistence", "_reconstruct_persistent_obj")
REBUILD_PARAMETER = stand_in("torch._utils", "_rebuild_parameter")
REBUILD_TENSOR = stand_in("torch._utils", "_rebuild_tensor_v2")
LOAD_FROM_BYTES = stand_in("torch.storage", "_load_from_bytes")
FLOAT_STORAGE = stand_in("torch", "FloatStorage")
EASYDICT = stand_in("dnnlib.util", "EasyDict")
BUFFERS = ("resample_filter", "noise_const", "w_avg")
SG2_SOURCE = "# a made-up module source\nclass SynthesisBlock(): pass\nclass Generator: pass\n"


# ----------------------------------------------------------------------------- writers


class _StorageMarker:
  pass


class _StoragePickler(StandInPickler):
  """Pickles ``_StorageMarker`` as the persistent id of a legacy torch.save storage."""

  def __init__(self, f, pid):
    super().__init__(f, protocol=2)
    self._pid = pid

  def persistent_id(self, obj):
    return self._pid if obj is _StorageMarker else None


def _storage_file(array: np.ndarray, key: str = "94211") -> bytes:
  """A legacy-format ``torch.save`` of one float32 storage, as ``_load_from_bytes`` gets it."""
  flat = np.ascontiguousarray(array, np.float32).reshape(-1)
  buf = io.BytesIO()
  for obj in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
    pickle.dump(obj, buf, protocol=2)
  _StoragePickler(buf, ("storage", FLOAT_STORAGE, key, "cpu", flat.size, None)).dump(_StorageMarker)
  pickle.dump([key], buf, protocol=2)
  buf.write(struct.pack("<q", flat.size) + flat.astype("<f4").tobytes())
  return buf.getvalue()


def _tensor(array: np.ndarray, blob: bytes | None = None, parameter: bool = True) -> Call:
  a = np.asarray(array, np.float32)
  strides = tuple(int(np.prod(a.shape[i + 1:])) for i in range(a.ndim))
  t = Call(REBUILD_TENSOR, (Call(LOAD_FROM_BYTES, (blob or _storage_file(a),)), 0,
                            tuple(a.shape), strides, False, collections.OrderedDict()))
  return Call(REBUILD_PARAMETER, (t, False, collections.OrderedDict())) if parameter else t


def _module(class_name: str, tensors: dict, init_kwargs: dict | None = None,
            source: str = SG2_SOURCE, blob_for=None) -> Call:
  """A persistence object holding ``tensors`` (state-dict names) as nested submodules."""
  params, buffers, children = collections.OrderedDict(), collections.OrderedDict(), {}
  for name, value in tensors.items():
    head, _, rest = name.partition(".")
    if rest:
      children.setdefault(head, {})[rest] = value
    else:
      blob = blob_for(name, value) if blob_for else None
      (buffers if head in BUFFERS else params)[head] = _tensor(value, blob, head not in BUFFERS)
  modules = collections.OrderedDict(
      (k, _module("Sub", v, {}, source, blob_for and (lambda n, a, k=k: blob_for(f"{k}.{n}", a))))
      for k, v in children.items())
  state = {"training": False, "_parameters": params, "_buffers": buffers,
           "_non_persistent_buffers_set": set(), "_forward_hooks": collections.OrderedDict(),
           "_modules": modules, "_init_args": (),
           "_init_kwargs": Call(EASYDICT, (), dict(init_kwargs or {}))}
  meta = {"type": "class", "version": 6, "module_src": source, "class_name": class_name,
          "state": state}
  return Call(PERSIST, (meta,))


def _write_nvidia_pickle(path: Path, entries: dict) -> Path:
  with open(path, "wb") as f:
    StandInPickler(f, protocol=4).dump(entries)
  return path


def _tf_networks(data: nvidia_pickle.NetworkData) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
  """(G, D, Gs) in NVIDIA's TF StyleGAN2 layout from torch-named tensors (the table inverted)."""
  kw = data.init_kwargs
  variables = {"mapping": {}, "synthesis": {}, "": {"lod": np.zeros((), np.float32)}}
  for e in tables_stylegan2.tf_table(kw):
    if e.tf is not None:
      head, _, rest = e.tf.partition("/")
      part, name = (head, rest) if head in ("mapping", "synthesis") else ("", e.tf)
      variables[part][name] = tables_stylegan2.TF_INVERSE[e.transform](
          np.asarray(data.tensors[e.torch])).astype(np.float32)
  static = {"resolution": kw["img_resolution"], "num_channels": kw["img_channels"],
            "latent_size": kw["z_dim"], "label_size": kw["c_dim"], "dlatent_size": kw["w_dim"],
            "fmap_base": kw["channel_base"] // 2, "fmap_max": kw["channel_max"],
            "mapping_layers": kw["mapping_kwargs"]["num_layers"], "w_avg_beta": 0.998,
            "conv_clamp": kw.get("conv_clamp"), "num_fp16_res": kw.get("num_fp16_res", 0),
            "truncation_psi": 0.5}
  comps = {n: TFNetwork(f"G_{n}", dict(static), {}, variables[n], f"G_{n}", "# src", 4)
           for n in ("mapping", "synthesis")}
  gs = TFNetwork("Gs", static, comps, variables[""], "G_main", "# src", 4)
  d = TFNetwork("D", {"resolution": kw["img_resolution"]}, {},
                {"4x4/Dense0/weight": np.ones((16, 4), np.float32)}, "D_stylegan2", "# src", 4)
  return gs, d, gs


def _cli(*args):
  """``python -m weights_convert ARGS`` (a small Gaussian fit: the prior's values are not what
  these tests check)."""
  return cli("weights_convert", "--gaussian_fit_samples=4096", *args, cwd=REPO, timeout=600)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ["sg2_tiny64", "sg2_tiny256"])
def test_fixture_reads_every_tensor(name):
  """Names are the torch state dict's (the table's); values match NVIDIA's .npz factors."""
  data = nvidia_pickle.read_network(fixture_path(f"stylegan2_3/{name}.pkl"))
  ref = np.load(fixture_path(f"stylegan2_3/{name}.npz"))
  assert data.class_name == "training.networks_stylegan2.Generator"
  assert data.source.endswith(f"{name}.pkl")
  config = sg2.Stylegan2Config.from_init_kwargs(data.init_kwargs)
  assert list(data.tensors) == [e.source for e in tables_stylegan2.torch_table(config)]
  assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in data.tensors.values())
  np.testing.assert_array_equal(data.tensors["mapping.w_avg"], ref["w_avg"])
  for i, layer in enumerate(sg2.noise_layers(config)):
    np.testing.assert_array_equal(data.tensors[layer.name], ref[f"noise_const_{i}"][0, 0])
  json.dumps(data.init_kwargs)  # plain values
  d = nvidia_pickle.read_network(fixture_path(f"stylegan2_3/{name}.pkl"), "D")
  assert d.class_name == "training.networks_stylegan2.Discriminator"


@pytest.mark.parametrize("name", ["sg3t_tiny64", "sg3r_tiny64"])
def test_stylegan3_fixture_reads(name):
  data = nvidia_pickle.read_network(fixture_path(f"stylegan2_3/{name}.pkl"))
  assert data.class_name == "training.networks_stylegan3.Generator"
  assert "synthesis.input.freqs" in data.tensors and data.init_kwargs["img_resolution"] == 64


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sg2_tiny64", "sg2_tiny256"])
def test_cli_converts_fixture_and_reproduces_image(name, tmp_path):
  """python -m weights_convert on NVIDIA's pickle -> a 'stylegan2' dir whose synthesis
  (const noise) reproduces NVIDIA's image_const (measured 6.3e-7 / 5.9e-7 relative)."""
  from pulse_jax.io.weights_dir import load_weights, sha256_file
  pkl = fixture_path(f"stylegan2_3/{name}.pkl")
  out = tmp_path / "w"
  proc = _cli(f"--source={pkl}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr
  weights = load_weights(str(out))
  meta = json.loads((out / "metadata.json").read_text())
  assert weights.kind == meta["kind"] == "stylegan2" and meta["parts"] == ["gaussian_fit", "mapping", "synthesis"]
  assert meta["sources"][0]["kind"] == "nvidia_stylegan2"
  assert meta["sources"][0]["sha256"] == sha256_file(str(pkl))
  assert meta["network"]["class_name"] == "training.networks_stylegan2.Generator"
  ref = np.load(fixture_path(f"stylegan2_3/{name}.npz"))
  cfg = weights.config
  img = jax.jit(sg2.synthesize, static_argnames="config")(weights.params, cfg,
                                                          jnp.asarray(ref["ws"]))
  err = float(np.abs(np.asarray(img) - ref["image_const"]).max() / np.abs(ref["image_const"]).max())
  assert err < 1e-5
  again = _cli(f"--source={pkl}", f"--out={out}")
  assert again.returncode == 1 and "--overwrite" in again.stderr


def test_tf_stylegan2_pickle_round_trip(tmp_path):
  """A TF StyleGAN2 pickle (G, D, Gs) written from sg2_tiny64's weights reads back as the same
  NetworkData (names, init_kwargs' architecture, values up to the mod_bias +- 1 rounding),
  and converts as 'stylegan2_tf'."""
  from weights_convert.convert import convert_sources
  src = nvidia_pickle.read_network(fixture_path("stylegan2_3/sg2_tiny64.pkl"))
  path = tmp_path / "stylegan2-tiny-config-f.pkl"
  write_tf_network_pickle(path, _tf_networks(src))
  assert nvidia_pickle.pickle_kind(path) == "tf"
  got = nvidia_pickle.read_network(path)
  assert got.class_name == src.class_name and list(got.tensors) == list(src.tensors)
  assert (sg2.Stylegan2Config.from_init_kwargs(got.init_kwargs)
          == sg2.Stylegan2Config.from_init_kwargs(src.init_kwargs))
  for name, a in src.tensors.items():
    atol = 1e-6 if name.endswith("affine.bias") else 0
    np.testing.assert_allclose(got.tensors[name], a, rtol=0, atol=atol, err_msg=name)
    assert got.tensors[name].shape == a.shape
  assert nvidia_pickle.read_network(path, "G").tensors.keys() == got.tensors.keys()
  with pytest.raises(WeightFileError, match="only the generators G and G_ema"):
    nvidia_pickle.read_network(path, "D")
  weights = convert_sources([str(path)], gaussian_fit_samples=4096, log=lambda s: None)
  assert weights.kind == "stylegan2" and weights.metadata["sources"][0]["kind"] == "stylegan2_tf"
  # A variable the table does not know is an error listing it.
  g, d, gs = _tf_networks(src)
  gs.components["synthesis"].variables["64x64/Extra/weight"] = np.ones(3, np.float32)
  write_tf_network_pickle(path, (g, d, gs))
  with pytest.raises(WeightFileError,
                     match=r"not in the name table \(1\): \['synthesis/64x64/Extra"):
    nvidia_pickle.read_network(path)


def _tiny_generator(seed: int = 0, c_dim: int = 0) -> tuple[sg2.Stylegan2Config, dict, dict]:
  config = sg2.Stylegan2Config(z_dim=8, w_dim=8, c_dim=c_dim, img_resolution=8, channel_base=32,
                               channel_max=8, mapping_layers=2, conv_clamp=None)
  kwargs = {"z_dim": 8, "c_dim": c_dim, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
            # EasyDict as pickle writes it (NEWOBJ + state), a numpy scalar inside.
            "mapping_kwargs": EASYDICT.new({"num_layers": 2, "lr_multiplier": np.float32(0.01)}),
            "channel_base": 32, "channel_max": 8, "conv_clamp": None}
  params = sg2.init_params(jax.random.key(seed), config)
  return config, kwargs, tables_stylegan2.state_dict(config, params)


@pytest.mark.slow
def test_d_is_never_materialised(tmp_path, monkeypatch):
  """Only G_ema's storages are parsed: D's are corrupt here and G_ema still reads (and
  converts); each G_ema tensor's nested storage file is parsed once, no other."""
  from weights_convert.convert import convert_sources
  config, kwargs, tensors = _tiny_generator()
  d_tensors = {"b8.conv0.weight": np.ones((8, 3, 3, 3)), "b4.fc.bias": np.ones(8)}
  path = _write_nvidia_pickle(tmp_path / "net.pkl", {
      "G": _module("Generator", tensors, kwargs),
      "D": _module("Discriminator", d_tensors, {}, blob_for=lambda n, a: b"\x80\x02corrupt"),
      "G_ema": _module("Generator", tensors, kwargs),
      "augment_pipe": None, "training_set_kwargs": {"resolution": 8}})
  parsed = []
  real = nvidia_pickle._parse_storage
  monkeypatch.setattr(nvidia_pickle, "_parse_storage",
                      lambda p, name, blob: parsed.append(name) or real(p, name, blob))
  data = nvidia_pickle.read_network(path)
  assert sorted(parsed) == sorted(tensors) and data.tensors.keys() == tensors.keys()
  assert all(np.array_equal(data.tensors[k], v) for k, v in tensors.items())
  assert data.init_kwargs["mapping_kwargs"]["lr_multiplier"] == pytest.approx(0.01)
  assert isinstance(data.init_kwargs["mapping_kwargs"]["lr_multiplier"], float)
  with pytest.raises(WeightFileError, match=r"nested storage of '(b4.fc.bias|b8.conv0.weight)'"):
    nvidia_pickle.read_network(path, "D")
  weights = convert_sources([str(path)], gaussian_fit_samples=4096, log=lambda s: None)
  assert weights.kind == "stylegan2"
  assert dataclasses.replace(weights.config, mapping_lr_multiplier=0.01) == config  # float32 0.01


def _payloads(marker: Path) -> dict:
  code = f"open({str(marker)!r}, 'w').close()\n"
  system = stand_in("os", "system")
  posix = stand_in("posix", "system")
  exec_ = stand_in("builtins", "exec")
  return {"os.system": Call(system, (f"touch {marker}",)),
          "posix.system": Call(posix, (f"touch {marker}",)),
          "builtins.exec": Call(exec_, (code,))}


def test_embedded_module_source_is_never_run(tmp_path):
  """A pickle whose module_src would write a file (then raise) loads without running it."""
  marker = tmp_path / "ran"
  src = (f"open({str(marker)!r}, 'w').close()\nraise SystemExit('payload')\n"
         "class SynthesisBlock(): pass\n")
  _, kwargs, tensors = _tiny_generator()
  path = _write_nvidia_pickle(tmp_path / "net.pkl",
                              {"G_ema": _module("Generator", tensors, kwargs, source=src)})
  data = nvidia_pickle.read_network(path)
  assert not marker.exists()
  assert data.class_name == "training.networks_stylegan2.Generator"
  assert data.tensors.keys() == tensors.keys()


@pytest.mark.parametrize("payload", ["os.system", "posix.system", "builtins.exec"])
@pytest.mark.parametrize("where", ["meta", "state", "init_kwargs", "top"])
def test_hostile_reduce_is_refused_and_never_runs(tmp_path, payload, where):
  """A REDUCE of os.system / exec inside the persistence meta (or elsewhere) is refused by
  the allow-list before anything is called."""
  marker = tmp_path / "ran"
  hostile = _payloads(marker)[payload]
  _, kwargs, tensors = _tiny_generator()
  module = _module("Generator", tensors, kwargs)
  meta = module.args[0]
  if where == "meta":
    meta = {**meta, "module_src": hostile}
  elif where == "state":
    meta = {**meta, "state": {**meta["state"], "extra": hostile}}
  elif where == "init_kwargs":
    meta = {**meta, "state": {**meta["state"], "_init_kwargs": {"z_dim": hostile}}}
  entries = {"G_ema": Call(PERSIST, (meta,))}
  if where == "top":
    entries["D"] = hostile
  path = _write_nvidia_pickle(tmp_path / "net.pkl", entries)
  with pytest.raises(UnsafePickleError, match=payload.replace(".", r"\.")):
    nvidia_pickle.read_network(path)
  assert not marker.exists()


def test_malformed_and_foreign_files(tmp_path):
  empty = tmp_path / "empty.pkl"
  empty.write_bytes(b"")
  with pytest.raises(WeightFileError, match="empty"):
    nvidia_pickle.read_network(empty)
  text = tmp_path / "notes.pkl"
  text.write_text("not a pickle at all")
  with pytest.raises(WeightFileError, match="notes.pkl' is not a pickle"):
    nvidia_pickle.read_network(text)
  plain = tmp_path / "plain.pkl"
  plain.write_bytes(pickle.dumps({"G_ema": [1, 2, 3]}, protocol=4))
  with pytest.raises(WeightFileError, match="plain.pkl' is a pickle without"):
    nvidia_pickle.read_network(plain)
  _, kwargs, tensors = _tiny_generator()
  path = _write_nvidia_pickle(tmp_path / "net.pkl", {"G": _module("Generator", tensors, kwargs),
                                                     "training_set_kwargs": {}})
  with pytest.raises(WeightFileError,
                     match=r"no network 'G_ema'; it holds \['G', 'training_set_kwargs'\]"):
    nvidia_pickle.read_network(path)
  with pytest.raises(WeightFileError, match="'training_set_kwargs' is not a NVIDIA network"):
    nvidia_pickle.read_network(path, "training_set_kwargs")
  # A view larger than its storage, and a truncated nested storage file.
  a = np.ones((2, 2), np.float32)
  bad = Call(REBUILD_TENSOR, (Call(LOAD_FROM_BYTES, (_storage_file(a),)), 0, (4, 4), (4, 1),
                              False, collections.OrderedDict()))
  module = _module("Generator", {}, kwargs)
  module.args[0]["state"]["_parameters"]["w"] = bad
  _write_nvidia_pickle(path, {"G_ema": module})
  with pytest.raises(WeightFileError, match=r"tensor 'w'.*does not fit its storage"):
    nvidia_pickle.read_network(path)
  module = _module("Generator", {"w": a}, kwargs, blob_for=lambda n, x: _storage_file(x)[:-3])
  _write_nvidia_pickle(path, {"G_ema": module})
  with pytest.raises(WeightFileError, match=r"nested storage of 'w'.*truncated"):
    nvidia_pickle.read_network(path)


def test_v1_tf_pickle_is_not_stylegan2(tmp_path):
  v1 = TFNetwork("G_synthesis", {}, {}, {"4x4/Const/const": np.ones((1, 8, 4, 4), np.float32)},
                 "G_synthesis", None, 3)
  gs = TFNetwork("Gs", {}, {"synthesis": v1}, {"dlatent_avg": np.zeros(8, np.float32)}, "G_style",
                 None, 3)
  path = tmp_path / "karras.pkl"
  write_tf_network_pickle(path, (gs, gs, gs))
  with pytest.raises(WeightFileError, match="not a StyleGAN2 generator"):
    nvidia_pickle.read_network(path)


def test_converter_refuses_mixing_and_discriminators(tmp_path):
  from weights_convert.convert import convert_sources
  pkl = str(fixture_path("stylegan2_3/sg2_tiny64.pkl"))
  with pytest.raises(ValueError, match="converts on its own|both provide"):
    convert_sources([pkl, pkl], gaussian_fit_samples=4096, log=lambda s: None)
  with pytest.raises(ValueError, match="Discriminator, not a generator this converter reads"):
    convert_sources([pkl], network="D", gaussian_fit_samples=4096, log=lambda s: None)
  with pytest.raises(ValueError, match="StyleGAN v1 sources only"):
    convert_sources([pkl], overrides={"resolution": 64}, gaussian_fit_samples=4096, log=lambda s: None)


@pytest.mark.parametrize("name", ["sg3t_tiny64"])
def test_converter_reads_stylegan3(name):
  """StyleGAN3 pickles convert to kind 'stylegan3' through weights_convert.tables.stylegan3."""
  from weights_convert.convert import convert_sources
  weights = convert_sources([str(fixture_path(f"stylegan2_3/{name}.pkl"))], gaussian_fit_samples=4096, log=lambda s: None)
  assert weights.kind == "stylegan3" and sorted(weights.params) == ["gaussian_fit", "mapping", "synthesis"]
  assert weights.metadata["sources"][0]["kind"] == "nvidia_stylegan3"


def test_pickle_kind(tmp_path):
  zipped = tmp_path / "a.pt"
  import zipfile
  with zipfile.ZipFile(zipped, "w") as z:
    z.writestr("a/data.pkl", b"")
  legacy = tmp_path / "b.pt"
  legacy.write_bytes(_storage_file(np.ones(3)))
  assert nvidia_pickle.pickle_kind(zipped) == "zip"
  assert nvidia_pickle.pickle_kind(legacy) == "torch_legacy"
  assert nvidia_pickle.pickle_kind(fixture_path("stylegan2_3/sg2_tiny64.pkl")) == "persistence"
  plain = tmp_path / "c.pkl"
  plain.write_bytes(pickle.dumps({"a": collections.OrderedDict()}, protocol=2))
  assert nvidia_pickle.pickle_kind(plain) == "pickle"
  with pytest.raises(WeightFileError, match="legacy torch.save file, not a NVIDIA"):
    nvidia_pickle.read_network(legacy)


@pytest.mark.slow
def test_a_new_nvidia_family_is_its_module_table_and_registry_lines(tmp_path, monkeypatch):
  """Issue 12's rule for converters: a family defined here (a StyleGAN2 subclass under another
  kind) with its line in the generator registry, and its name table (a module with
  GENERATOR_CLASS, SOURCE_MARK, from_network) with its line in the tables registry, are all it
  takes for a pickle of its class to be detected, converted, saved, loaded and rendered;
  nothing else in weights_convert or pulse_jax names it."""
  import types
  from pulse_jax import generators
  from pulse_jax.io.weights_dir import load_weights
  from pulse_jax.generators import registry
  from pulse_jax.generators.stylegan2 import StyleGAN2
  from weights_convert.convert import convert_and_save
  from weights_convert.tables import registry as tables_registry

  table = types.ModuleType("fancy_tables")
  table.GENERATOR_CLASS = "training.networks_fancy.Generator"
  table.SOURCE_MARK = "class FancyBlock("
  table.from_network = tables_stylegan2.from_network  # the architecture is StyleGAN2's

  class Fancy(StyleGAN2):
    kind = "fancy"

  monkeypatch.setitem(registry.FAMILIES, "fancy", Fancy())
  monkeypatch.setitem(tables_registry.TABLES, "fancy", table)
  config, kwargs, tensors = _tiny_generator()
  source = "# a made-up module source\nclass FancyBlock(): pass\nclass Generator: pass\n"
  path = _write_nvidia_pickle(tmp_path / "fancy.pkl", {
      "G_ema": _module("Generator", tensors, kwargs, source=source)})
  assert nvidia_pickle.read_network(path).class_name == "training.networks_fancy.Generator"
  out = convert_and_save([str(path)], str(tmp_path / "w"), gaussian_fit_samples=4096,
                         log=lambda s: None)
  weights = load_weights(out)
  meta = json.loads((tmp_path / "w" / "metadata.json").read_text())
  assert weights.kind == meta["kind"] == "fancy"
  assert meta["sources"][0]["kind"] == "nvidia_fancy"
  g = generators.from_weights(weights)
  ws = jnp.zeros((1, g.family.num_ws(g.config), config.w_dim))
  img = g.render(weights.params, ws, g.family.const_noise(weights.params, g.config, 1))
  want = sg2.synthesize(weights.params, weights.config, ws)
  np.testing.assert_allclose(np.asarray(img), np.asarray(want), rtol=1e-6, atol=1e-6)
  # A class no registered family reads is refused by name, listing the ones that are read.
  other = _write_nvidia_pickle(tmp_path / "other.pkl", {
      "G_ema": _module("Generator", tensors, kwargs, source="class Unheard(): pass\n")})
  from weights_convert.convert import convert_sources
  with pytest.raises(ValueError, match=r"<unknown module>.Generator, not a generator this "
                                       r"converter reads \(.*training.networks_fancy.Generator"):
    convert_sources([str(other)], gaussian_fit_samples=4096, log=lambda s: None)


def test_conditional_pickle_converts_with_a_prior_per_class(tmp_path):
  """c_dim=3: one Gaussian fit per class ([3, w_dim]), recorded in the metadata."""
  from weights_convert.convert import convert_sources
  _, kwargs, tensors = _tiny_generator(c_dim=3)
  assert "mapping.embed.weight" in tensors
  path = _write_nvidia_pickle(tmp_path / "cond.pkl", {"G_ema": _module("Generator", tensors, kwargs)})
  lines = []
  weights = convert_sources([str(path)], gaussian_fit_samples=2048, log=lines.append)
  fit = weights.params["gaussian_fit"]
  assert weights.kind == "stylegan2" and weights.config.c_dim == 3
  assert fit["mean"].shape == fit["std"].shape == (3, 8)
  assert weights.metadata["gaussian_fit"]["per_class"] == 3
  assert any("one fit per class: 3 classes" in line for line in lines)
  assert np.abs(fit["mean"][0] - fit["mean"][2]).max() > 0


def test_tables_registry_lists_one_tables_module_per_family():
  """weights_convert/tables/registry.py is the one list kind -> tables module: every family
  of the generator registry has its tables, and NVIDIA classes are found through it."""
  from pulse_jax.generators.registry import FAMILIES
  from weights_convert.tables import registry, stylegan3
  assert set(registry.TABLES) == set(FAMILIES)
  assert registry.for_class(stylegan3.GENERATOR_CLASS) == ("stylegan3", stylegan3)
  assert registry.for_class("training.networks_stylegan2.Discriminator") is None
  assert registry.generator_classes() == [tables_stylegan2.GENERATOR_CLASS,
                                          stylegan3.GENERATOR_CLASS]
