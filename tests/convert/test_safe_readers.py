"""weights_convert's torch / TF readers: real files, round trips, hostile and broken files."""

import builtins
import collections
import importlib.util
import io
import os
import pickle
import pickletools
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from weights_convert import (TFNetwork, UnsafePickleError, WeightFileError,
                             read_tf_network_pickle, read_torch_file)
from weights_convert.readers.numpy_globals import resolve
from support.pickle_globals import Call, StandInPickler, stand_in
from weights_convert.readers.safe_unpickle import safe_load
from weights_convert.readers.tf_pickle import tf_allow_list
from support.tf_pickle_writer import write_tf_network_pickle
from support.harness import FIXTURES, fixture_path
from weights_convert.readers.torch_files import LEGACY_MAGIC


def _dcgan_weights():
  spec = importlib.util.find_spec("gan_face_generate")  # finds, does not import, the package
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("gan-face-generate is not installed (pip install gan-face-generate==1.1.1)")
  path = Path(list(spec.submodule_search_locations)[0]) / "weights.tar"
  if not path.exists():
    pytest.skip(f"{path} absent from the installed gan-face-generate")
  return path


# ------------------------------------------------------------- writing torch files without torch

_REBUILD = stand_in("torch._utils", "_rebuild_tensor_v2")
_PARAMETER = stand_in("torch._utils", "_rebuild_parameter")
_STORAGE_TYPES = {np.dtype(k): stand_in("torch", v) for k, v in [
    ("float32", "FloatStorage"), ("float16", "HalfStorage"), ("int64", "LongStorage"),
    ("bool", "BoolStorage"), ("uint8", "ByteStorage")]}


class _Store:
  """A storage to write: ``array`` is its flat content."""

  def __init__(self, key, array):
    self.key, self.array = key, np.ascontiguousarray(array).ravel()


def _tensor(store, offset, shape, strides):
  return Call(_REBUILD, (store, offset, tuple(shape), tuple(strides), False, collections.OrderedDict()))


class _TorchPickler(StandInPickler):
  def __init__(self, f, legacy):
    super().__init__(f, protocol=2)
    self.legacy, self.stores = legacy, {}

  def persistent_id(self, obj):
    if not isinstance(obj, _Store):
      return None
    self.stores[obj.key] = obj
    pid = ("storage", _STORAGE_TYPES[obj.array.dtype], obj.key, "cuda:0", obj.array.size)
    return pid + (None,) if self.legacy else pid


def _write_torch(path, obj, *, legacy=False, folder="archive", byteorder="little", raw_pickle=None):
  """A torch.save-format file holding ``obj`` (tensors as ``_tensor(...)`` calls)."""
  buf = io.BytesIO()
  pickler = _TorchPickler(buf, legacy)
  pickler.dump(obj)
  data_pkl = buf.getvalue() if raw_pickle is None else raw_pickle
  order = "<" if byteorder == "little" else ">"
  stores = pickler.stores
  if legacy:
    head = b"".join(pickle.dumps(x, protocol=2) for x in (
        LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))
    tail = pickle.dumps(list(stores), protocol=2) + b"".join(
        s.array.size.to_bytes(8, "little") + s.array.astype(s.array.dtype.newbyteorder("<")).tobytes()
        for s in stores.values())
    Path(path).write_bytes(head + data_pkl + tail)
    return
  with zipfile.ZipFile(path, "w") as z:
    z.writestr(f"{folder}/data.pkl", data_pkl)
    z.writestr(f"{folder}/byteorder", byteorder)
    for key, s in stores.items():
      z.writestr(f"{folder}/data/{key}", s.array.astype(s.array.dtype.newbyteorder(order)).tobytes())


def _pickle_globals(data):
  """'module.name' of every global a pickle names (read with pickletools: nothing runs)."""
  found, last, memo = set(), [None, None], {}
  for op, arg, _ in pickletools.genops(data):
    if op.name in ("GLOBAL", "INST"):
      found.add(arg.replace(" ", "."))
    elif op.name == "STACK_GLOBAL":
      found.add(f"{last[-2]}.{last[-1]}")
    elif op.name == "MEMOIZE":
      memo[len(memo)] = last[-1]
    elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
      memo[arg] = last[-1]
    elif op.name in ("GET", "BINGET", "LONG_BINGET"):
      last.append(memo.get(arg))
    elif "UNICODE" in op.name or op.name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
      last.append(arg)
  return found


# --------------------------------------------------------------------------------- real files


def _assert_same_tree(a, b):
  assert type(a) is type(b) and list(a) == list(b)
  for k in a:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a[k].flags.c_contiguous and b[k].flags.c_contiguous


def test_tiny256_zip_equals_legacy_and_matches_reference_names():
  zipped = read_torch_file(fixture_path("synthesis_tiny256.pt"))
  legacy = read_torch_file(fixture_path("synthesis_tiny256_legacy.pt"))
  assert isinstance(zipped, collections.OrderedDict) and len(zipped) == 78
  _assert_same_tree(zipped, legacy)
  assert {v.dtype for v in zipped.values()} == {np.dtype(np.float32)}
  assert zipped["blocks.4x4.const"].shape == (1, 32, 4, 4)
  assert zipped["blocks.4x4.epi1.style_mod.lin.weight"].shape == (64, 512)
  docs = FIXTURES / ".." / "docs" / "pulse-synthesis-state-dict.txt"
  if docs.exists():  # names of the full-size state dict; tiny256 stops at 256x256
    ranks = {m[1]: len([d for d in m[2].strip("()").split(",") if d.strip()])
             for m in re.finditer(r"^((?:blocks|torgb)\S*) (\([\d, ]*\))", docs.read_text(), re.M)}
    assert len(ranks) == 100
    assert {k: v.ndim for k, v in zipped.items()}.items() <= ranks.items()


def test_gaussian_fit_legacy_cuda():
  fit = read_torch_file(fixture_path("real/gaussian_fit.pt"))
  assert set(fit) == {"mean", "std"}
  for v in fit.values():
    assert v.shape == (512,) and v.dtype == np.float32 and np.isfinite(v).all()
  assert (fit["std"] > 0).all()


def test_mapping_state_dict():
  sd = read_torch_file(fixture_path("mapping.pt"))
  assert list(sd) == [f"dense{i}.{p}" for i in range(8) for p in ("weight", "bias")]
  for k, v in sd.items():
    assert v.dtype == np.float32 and v.shape == ((512, 512) if k.endswith("weight") else (512,))


def test_dcgan_weights_tar():
  ckpt = read_torch_file(_dcgan_weights())
  sd = ckpt["netG_state_dict"]
  convs = {0: (100, 512), 3: (512, 256), 6: (256, 128), 9: (128, 64), 12: (64, 3)}
  expected = {}
  for i, (cin, cout) in convs.items():
    expected[f"main.{i}.weight"] = ((cin, cout, 4, 4), np.float32)
    if i < 12:
      for p in ("weight", "bias", "running_mean", "running_var"):
        expected[f"main.{i + 1}.{p}"] = ((cout,), np.float32)
      expected[f"main.{i + 1}.num_batches_tracked"] = ((), np.int64)
  assert {k: (v.shape, v.dtype) for k, v in sd.items()} == expected
  assert (sd["main.1.running_var"] > 0).all() and int(sd["main.1.num_batches_tracked"]) > 0


# ------------------------------------------------------------------------------ torch layouts


def test_views_dtypes_byteorder_and_legacy_agree(tmp_path):
  rng = np.random.default_rng(0)
  base = _Store("0", rng.standard_normal(40).astype(np.float32))
  obj = {
      "t": _tensor(base, 4, (3, 5), (1, 3)),        # transposed view with an offset
      "same": _tensor(base, 0, (2, 2), (2, 1)),     # a second view of the same storage
      "expand": _tensor(base, 7, (3, 2), (0, 1)),   # stride 0
      "param": Call(_PARAMETER, (_tensor(_Store("1", np.arange(6, dtype=np.float16)), 0, (2, 3), (3, 1)), True,
                                 collections.OrderedDict())),
      "steps": _tensor(_Store("2", np.array([7], np.int64)), 0, (), ()),
      "mask": _tensor(_Store("3", np.array([True, False, True])), 0, (3,), (1,)),
      "empty": _tensor(_Store("4", np.zeros(0, np.uint8)), 0, (0, 4), (4, 1)),
      "meta": [1, "x", (2.5, None)],
  }
  flat = base.array
  want = {
      "t": np.lib.stride_tricks.as_strided(flat[4:], (3, 5), (4, 12)),
      "same": flat[:4].reshape(2, 2), "expand": np.stack([flat[7:9]] * 3),
      "param": np.arange(6, dtype=np.float16).reshape(2, 3), "steps": np.array(7, np.int64),
      "mask": np.array([True, False, True]), "empty": np.zeros((0, 4), np.uint8),
  }
  results = []
  for name, kw in [("z.pt", {}), ("big.pt", {"byteorder": "big", "folder": "weights"}),
                   ("old.pt", {"legacy": True})]:
    _write_torch(tmp_path / name, obj, **kw)
    got = read_torch_file(tmp_path / name)
    results.append(got)
    assert got["meta"] == [1, "x", (2.5, None)]
    for k, w in want.items():
      assert got[k].dtype == w.dtype and got[k].shape == w.shape, (name, k)
      assert got[k].dtype.isnative and got[k].flags.c_contiguous
      np.testing.assert_array_equal(got[k], w, err_msg=f"{name}:{k}")


# ---------------------------------------------------------------------- hostile pickles refused


class _Payload:
  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return (self.func, self.args)


def _payloads(marker):
  m = str(marker)
  return {
      "os.system": pickle.dumps(_Payload(os.system, f"touch '{m}'"), protocol=2, fix_imports=False),
      "builtins.eval": pickle.dumps(_Payload(builtins.eval, f"open({m!r}, 'w').close()"), protocol=4),
      "subprocess.call": pickle.dumps(_Payload(subprocess.call, ["touch", m]), protocol=2),
    # the classic hand-written form, protocol 0
      "os.system (raw)": b"cos\nsystem\n(S'touch " + m.encode() + b"'\ntR.",
  }


def _refused_global(data):
  (name,) = _pickle_globals(data)  # e.g. 'posix.system' for os.system on Linux
  return name


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.call", "os.system (raw)"])
@pytest.mark.parametrize("container", ["torch zip", "torch legacy", "tf pickle"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, container, kind):
  marker = tmp_path / "MARKER"
  payload = _payloads(marker)[kind]
  refused = _refused_global(payload)
  path = tmp_path / "evil.pkl"
  if container == "torch zip":
    _write_torch(path, None, raw_pickle=payload)
  elif container == "torch legacy":
    _write_torch(path, None, legacy=True, raw_pickle=payload)
  else:
    path.write_bytes(payload)
  reader = read_tf_network_pickle if container == "tf pickle" else read_torch_file
  with pytest.raises(UnsafePickleError) as err:
    reader(path)
  msg = str(err.value)
  assert refused in msg and "evil.pkl" in msg and "Nothing from the file was imported or run" in msg
  assert isinstance(err.value, ValueError)
  assert not marker.exists()


def test_hostile_objects_nested_inside_real_structures(tmp_path):
  marker = tmp_path / "MARKER"
  evil = _Payload(os.system, f"touch '{marker}'")
  # torch: a payload among ordinary tensors of a state dict
  store = _Store("0", np.ones(3, np.float32))
  _write_torch(tmp_path / "sd.pt", collections.OrderedDict(w=_tensor(store, 0, (3,), (1,)), hook=evil))
  with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
    read_torch_file(tmp_path / "sd.pt")
  # TF: a payload inside a Network's state, written in the official layout
  net = TFNetwork("G", {"evil": evil}, {}, {"w": np.ones(2, np.float32)}, "G_style")
  write_tf_network_pickle(tmp_path / "net.pkl", (net,))
  with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
    read_tf_network_pickle(tmp_path / "net.pkl")
  assert not marker.exists()


def test_bad_persistent_ids_and_tampering_are_refused(tmp_path):
  # a persistent id where none belongs (TF pickle) and one of the wrong form (torch zip)
  tf_path = tmp_path / "persid.pkl"
  tf_path.write_bytes(b"\x80\x02X\x01\x00\x00\x00aQ.")
  with pytest.raises(UnsafePickleError, match="persistent id"):
    read_tf_network_pickle(tf_path)
  bad_pid = b"\x80\x02(X\x06\x00\x00\x00moduleX\x01\x00\x00\x00xtQ."
  _write_torch(tmp_path / "pid.pt", None, raw_pickle=bad_pid)
  with pytest.raises(UnsafePickleError, match="persistent id"):
    read_torch_file(tmp_path / "pid.pt")
  # BUILD on an allow-listed global (to alter it for later loads) fails; later loads are fine
  _write_torch(tmp_path / "build.pt", None,
               raw_pickle=b"\x80\x02ctorch\nFloatStorage\nN}X\x05\x00\x00\x00dtypeK\x01s\x86b.")
  with pytest.raises(WeightFileError, match="build.pt"):
    read_torch_file(tmp_path / "build.pt")
  # a tensor view reaching past its storage
  _write_torch(tmp_path / "oob.pt", {"w": _tensor(_Store("0", np.ones(4, np.float32)), 2, (3,), (1,))})
  with pytest.raises(WeightFileError, match="oob.pt.*reaches element 4"):
    read_torch_file(tmp_path / "oob.pt")


# --------------------------------------------------------------------------- broken files


def _raises_naming(reader, path, pattern=""):
  with pytest.raises(WeightFileError) as err:
    reader(path)
  assert Path(path).name in str(err.value)
  assert re.search(pattern, str(err.value)), str(err.value)
  return err.value


def _split_legacy(data):
  """Byte offsets where each of a legacy file's five pickles ends."""
  ends, stream = [], io.BytesIO(data)
  for _ in range(5):
    for op, _, pos in pickletools.genops(stream):
      if op.name == "STOP":
        ends.append(pos + 1)
        break
  return ends


@pytest.mark.parametrize("reader", [read_torch_file, read_tf_network_pickle])
def test_empty_and_non_weight_files(tmp_path, reader):
  (tmp_path / "empty.pt").write_bytes(b"")
  _raises_naming(reader, tmp_path / "empty.pt", "empty")
  (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
  _raises_naming(reader, tmp_path / "img.png")
  (tmp_path / "text.pt").write_bytes(b"hello world\n")
  _raises_naming(reader, tmp_path / "text.pt")


def test_broken_torch_files(tmp_path):
  zipped = fixture_path("synthesis_tiny256.pt").read_bytes()
  legacy = fixture_path("synthesis_tiny256_legacy.pt").read_bytes()
  (tmp_path / "half.pt").write_bytes(zipped[: len(zipped) // 2])
  _raises_naming(read_torch_file, tmp_path / "half.pt", "damaged or truncated")
  (tmp_path / "cut_legacy.pt").write_bytes(legacy[:-100])
  _raises_naming(read_torch_file, tmp_path / "cut_legacy.pt", "truncated")
  (tmp_path / "head_legacy.pt").write_bytes(legacy[:50])
  _raises_naming(read_torch_file, tmp_path / "head_legacy.pt")
  # a zip without one storage record
  with zipfile.ZipFile(io.BytesIO(zipped)) as src, zipfile.ZipFile(tmp_path / "gap.pt", "w") as dst:
    for info in src.infolist():
      if not info.filename.endswith("/data/3"):
        dst.writestr(info, src.read(info))
  _raises_naming(read_torch_file, tmp_path / "gap.pt", r"no record .*data/3")
  # a legacy file whose key list lacks the last storage (and its record)
  ends = _split_legacy(legacy)
  keys = pickle.loads(legacy[ends[3]:ends[4]])  # a plain list of str: safe to load
  (tmp_path / "gap_legacy.pt").write_bytes(legacy[:ends[3]] + pickle.dumps(keys[:-1], protocol=2) + legacy[ends[4]:])
  _raises_naming(read_torch_file, tmp_path / "gap_legacy.pt", "no record")
  # a zip that is not a torch file, and a pickle that is not a legacy torch file
  np.savez(tmp_path / "arrays.npz", a=np.ones(2))
  _raises_naming(read_torch_file, tmp_path / "arrays.npz", "data.pkl")
  (tmp_path / "int.pt").write_bytes(pickle.dumps(5, protocol=2))
  _raises_naming(read_torch_file, tmp_path / "int.pt", "magic number")


def test_broken_tf_pickles(tmp_path):
  net = TFNetwork("D", {}, {}, {"w": np.ones((3, 3), np.float32)}, "D_basic")
  write_tf_network_pickle(tmp_path / "ok.pkl", (net,))
  data = (tmp_path / "ok.pkl").read_bytes()
  (tmp_path / "cut.pkl").write_bytes(data[:-20])
  _raises_naming(read_tf_network_pickle, tmp_path / "cut.pkl")
  _write_torch(tmp_path / "torch.pt", {"w": _tensor(_Store("0", np.ones(2, np.float32)), 0, (2,), (1,))})
  _raises_naming(read_tf_network_pickle, tmp_path / "torch.pt", "read_torch_file")
  (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": np.ones(2)}))
  _raises_naming(read_tf_network_pickle, tmp_path / "dict.pkl", "not of dnnlib networks")
  (tmp_path / "objarr.pkl").write_bytes(pickle.dumps(np.array([1, "a"], dtype=object)))
  _raises_naming(read_tf_network_pickle, tmp_path / "objarr.pkl", "not allowed")


# ---------------------------------------------------------------------------- TF round trip


def test_tf_network_pickle_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  marker = tmp_path / "MARKER"
  src = f"open({str(marker)!r}, 'w').close()\ndef G_mapping(**kw): pass\n"
  easy = stand_in("dnnlib.util", "EasyDict").new({"func_name": "training.networks.G_main"})
  mapping = TFNetwork("G_mapping", {"dlatent_size": 512, "kw": easy}, {},
                      {"Dense0/weight": rng.standard_normal((512, 512), dtype=np.float32),
                       "Dense0/bias": np.zeros(512, np.float32)}, "G_mapping", build_module_src=src)
  synthesis = TFNetwork("G_synthesis", {"resolution": 16, "scale": np.float32(0.5)}, {},
                        {"4x4/Const/const": rng.standard_normal((1, 512, 4, 4), dtype=np.float32),
                         "4x4/Conv/weight": rng.standard_normal((3, 3, 512, 512), dtype=np.float32),  # HWIO
                         "lod": np.array(0.0, np.float32), "half": np.ones(3, np.float16),
                         "be": np.arange(4, dtype=">i8"), "fortran": np.asfortranarray(np.eye(3)[:, :2])},
                        "G_synthesis", build_module_src=src)
  gs = TFNetwork("G", {}, {"mapping": mapping, "synthesis": synthesis},
                 {"dlatent_avg": rng.standard_normal(512, dtype=np.float32)}, "G_style", build_module_src=src)
  d = TFNetwork("D", {}, {}, {"w": np.ones(2, np.float32)}, "D_basic", build_module_src=src)
  for core, proto in [("numpy.core", 4), ("numpy._core", 2), ("numpy.core", 5)]:
    path = tmp_path / f"net_{proto}.pkl"
    write_tf_network_pickle(path, (gs, d, gs), numpy_core=core, protocol=proto)
    assert {"dnnlib.tflib.network.Network", f"{core}.multiarray._reconstruct", "numpy.ndarray",
            "numpy.dtype"} <= _pickle_globals(path.read_bytes())
    G, D, Gs = read_tf_network_pickle(path)
    assert G is Gs and G.components["mapping"].name == "G_mapping" and D.build_func_name == "D_basic"
    assert G.components["mapping"].static_kwargs == {"dlatent_size": 512, "kw": dict(easy._state)}
    assert type(G.components["mapping"].static_kwargs["kw"]) is dict
    assert G.components["synthesis"].static_kwargs["scale"] == np.float32(0.5)
    assert G.build_module_src == src
    want, got = gs.flat_variables(), G.flat_variables()
    assert list(got) == list(want) and "synthesis/4x4/Conv/weight" in got
    for k in want:
      assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype.newbyteorder("=")
      assert got[k].flags.c_contiguous
      np.testing.assert_array_equal(got[k], want[k])
  assert not marker.exists()  # build_module_src stayed an inert string


def test_real_numpy_pickles_through_stand_ins():
  arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.asfortranarray(np.ones((2, 3))),
            np.array([True, False]), np.array(3, np.int16), np.zeros((0, 2), np.complex64)]
  for arr in arrays:
    for proto in (2, 4, 5):  # protocol 5 uses numpy's _frombuffer
      got = resolve(safe_load(io.BytesIO(pickle.dumps(arr, protocol=proto)), source="x.pkl",
                              allowed=tf_allow_list()))
      assert got.dtype == arr.dtype and got.shape == arr.shape
      np.testing.assert_array_equal(got, arr)
  assert safe_load(io.BytesIO(pickle.dumps(np.float64(2.5))), source="x", allowed=tf_allow_list()) == 2.5
