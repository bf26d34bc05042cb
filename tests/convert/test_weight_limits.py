"""Weight files cannot exhaust memory (issue 11 section 3).

Each hostile file below is a few bytes (at most a few hundred KB) that describes gigabytes: a
stride-0 view, an offset past its storage, a negative stride, a storage larger than its zip
record, compressed / oversized / overlapping records, a legacy storage of 64 GiB, TF pickles
with huge arrays or lying byte counts. Each must be refused - by a check, not by a failed
allocation - in well under 5 s, inside a process limited to 2 GiB of address space (so an
attempted 16 GiB allocation would fail the test) and using < 1 GiB; and also through
``python -m weights_convert``, which must exit non-zero with a message naming the file and
the tensor. Files are built by hand (zipfile + pickle opcodes); no torch needed.
"""

import collections
import io
import json
import os
import pickle
import re
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from experiments.measure import peak_rss_wrapper
from weights_convert import WeightFileError, read_tf_network_pickle, read_torch_file
from weights_convert.readers import numpy_globals
from weights_convert.readers import torch_files
from support.harness import REPO, python_command, run_python
from support.pickle_globals import Call, StandInPickler, stand_in
from weights_convert.readers.safe_unpickle import check_pickle
from weights_convert.readers.torch_files import LEGACY_MAGIC
from weights_convert.readers.torch_globals import TensorRef

resource = pytest.importorskip("resource")  # POSIX only: the limits below need it

ADDRESS_SPACE = 2 << 30  # the hostile readers run under RLIMIT_AS of 2 GiB
MAX_RSS = 1 << 30
MAX_SECONDS = 5.0

# ------------------------------------------------------------------- writing hostile files

_REBUILD = stand_in("torch._utils", "_rebuild_tensor_v2")
_FLOAT = stand_in("torch", "FloatStorage")
_RECONSTRUCT = stand_in("numpy.core.multiarray", "_reconstruct")
_NDARRAY = stand_in("numpy", "ndarray")
_DTYPE = stand_in("numpy", "dtype")


class _Pid:
  """Pickled as the persistent id ``pid``, verbatim (any numel, any key)."""

  def __init__(self, *pid):
    self.pid = pid


class _Pickler(StandInPickler):
  def persistent_id(self, obj):
    return obj.pid if isinstance(obj, _Pid) else None


def _pickle(obj, protocol=2):
  buf = io.BytesIO()
  _Pickler(buf, protocol=protocol).dump(obj)
  return buf.getvalue()


def _float_storage(numel, key="0"):
  return _Pid("storage", _FLOAT, key, "cuda:0", numel)


def _tensor(storage, offset, size, stride):
  return Call(_REBUILD, (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict()))


def _zip(path, state, records, *, raw_pickle=None, compress=None):
  """A torch zip file: ``records`` maps storage key -> bytes; ``compress`` names a record
  ('data.pkl' or a key) to write deflated."""
  deflate = lambda name: zipfile.ZIP_DEFLATED if name == compress else zipfile.ZIP_STORED
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", _pickle(state) if raw_pickle is None else raw_pickle,
               compress_type=deflate("data.pkl"))
    z.writestr("archive/byteorder", "little")
    for key, data in records.items():
      z.writestr(f"archive/data/{key}", data, compress_type=deflate(key))


def _legacy(path, state, keys, tail):
  """A legacy torch file: the five pickles, then ``tail`` (the storage records) as given."""
  head = b"".join(pickle.dumps(x, protocol=2) for x in (
      LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))
  Path(path).write_bytes(head + _pickle(state) + pickle.dumps(keys, protocol=2) + tail)


def _numpy_array(shape, raw):
  """Pickles as numpy's own ``_reconstruct(ndarray, (0,), b'b')`` + BUILD(state)."""
  dtype = Call(_DTYPE, ("f4", False, True), state=(3, "<", None, None, None, -1, -1, 0))
  return Call(_RECONSTRUCT, (_NDARRAY, (0,), b"b"), state=(1, tuple(shape), dtype, False, raw))


def _stride0(path):
  _zip(path, {"w": _tensor(_float_storage(1), 0, (65536, 65536), (0, 0))},
       {"0": np.float32(1).tobytes()})


def _offset_past_end(path):
  _zip(path, {"w": _tensor(_float_storage(4), 2**40, (4,), (1,))}, {"0": bytes(16)})


def _empty_offset_past_end(path):
  _zip(path, {"w": _tensor(_float_storage(4), 2**40, (0,), (1,))}, {"0": bytes(16)})


def _negative_stride(path):
  _zip(path, {"w": _tensor(_float_storage(4), 3, (4,), (-1,))}, {"0": bytes(16)})


def _negative_size(path):
  _zip(path, {"w": _tensor(_float_storage(4), 0, (-4, 2**62), (1, 1))}, {"0": bytes(16)})


def _storage_exceeds_record(path):  # 4 GiB declared, 16 bytes there
  _zip(path, {"w": _tensor(_float_storage(2**30), 0, (2**30,), (1,))}, {"0": bytes(16)})


def _compressed_record(path):  # 16 MiB of zeros deflated to ~16 KB
  _zip(path, {"w": _tensor(_float_storage(2**22), 0, (2**22,), (1,))}, {"0": bytes(2**24)},
       compress="0")


def _compressed_pickle(path):
  _zip(path, {"w": _tensor(_float_storage(4), 0, (4,), (1,))}, {"0": bytes(16)},
       compress="data.pkl")


def _oversized_record(path):  # the pickle says 4 bytes, the record holds 64 KiB
  _zip(path, {"w": _tensor(_float_storage(1), 0, (1,), (1,))}, {"0": bytes(2**16)})


def _overlapping_records(path):
  """Record '0' holds record '1' (its local header and data) inside its own data, so the
  two storages add up to about twice the file."""
  payload = bytes(256 * 1024)
  inner = zipfile.ZipInfo("archive/data/1", date_time=(1980, 1, 1, 0, 0, 0))
  inner.compress_type = zipfile.ZIP_STORED
  inner.CRC, inner.compress_size, inner.file_size = zlib.crc32(payload), len(payload), len(payload)
  outer = inner.FileHeader() + payload
  assert len(outer) % 4 == 0
  numel = (len(outer) // 4, len(payload) // 4)
  state = {"a": _tensor(_float_storage(numel[0], "0"), 0, (numel[0],), (1,)),
           "b": _tensor(_float_storage(numel[1], "1"), 0, (numel[1],), (1,))}
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", _pickle(state))
    z.writestr("archive/data/0", outer)
    first = z.getinfo("archive/data/0")
    inner.header_offset = first.header_offset + len(first.FileHeader())
    z.filelist.append(inner)  # a second central-directory entry pointing inside record 0
    z.NameToInfo[inner.filename] = inner


def _views_beyond_budget(path):  # 64 full views of one 256 KiB storage: 16 MiB of output
  numel = 65536
  store = _float_storage(numel)
  _zip(path, {f"t{i}": _tensor(store, 0, (numel,), (1,)) for i in range(64)},
       {"0": bytes(4 * numel)})


def _lying_pickle_string(path):  # data.pkl: a BINUNICODE8 claiming 16 GiB
  _zip(path, None, {}, raw_pickle=b"\x80\x04\x8d" + (2**34).to_bytes(8, "little") + b"x.")


def _legacy_64gib(path):
  numel = 2**34  # float32: 64 GiB
  _legacy(path, {"w": _tensor(_Pid("storage", _FLOAT, "0", "cpu", numel, None), 0, (numel,), (1,))},
          ["0"], numel.to_bytes(8, "little") + bytes(16))


def _legacy_storages_add_up(path):
  """Two storages of 40000 bytes each, each alone smaller than the ~40 KB file."""
  numel = 10000
  state = {k: _tensor(_Pid("storage", _FLOAT, k, "cpu", numel, None), 0, (numel,), (1,)) for k in "01"}
  _legacy(path, state, ["0", "1"], numel.to_bytes(8, "little") + bytes(4 * numel + 100))


def _tf_huge_array(path):  # a 16 GiB float32 array whose data string is 4 bytes
  Path(path).write_bytes(_pickle(_numpy_array((65536, 65536), b"tiny"), protocol=4))


def _tf_shared_data(path):  # one 256 KiB data string behind 64 arrays
  raw = bytes(256 * 1024)
  Path(path).write_bytes(_pickle([_numpy_array((65536,), raw) for _ in range(64)], protocol=4))


def _tf_lying_bytes(path):
  Path(path).write_bytes(b"\x80\x04\x8e" + (2**34).to_bytes(8, "little") + b"tiny.")


def _tf_lying_bytearray(path):
  Path(path).write_bytes(b"\x80\x05\x96" + (2**34).to_bytes(8, "little") + b"tiny.")


def _tf_lying_frame(path):
  Path(path).write_bytes(b"\x80\x04\x95" + (2**40).to_bytes(8, "little") + b"N.")


def _tf_memo_index(path):  # LONG_BINPUT 2**31 - 1: the C unpickler would size a 32 GiB memo
  Path(path).write_bytes(b"\x80\x02Nr\xff\xff\xff\x7f.")


# Hostile files: (builder, pattern the message must match); the builder's name, without its
# leading '_', names the case. The torch ones are read by read_torch_file, the tf ones by
# read_tf_network_pickle.
TORCH_CASES = [
    (_stride0, r"size \(65536, 65536\), stride \(0, 0\)\) of storage '0' has 4294967296 elements "
               r"but its storage holds only 1: an expanded"),
    (_offset_past_end, r"offset 1099511627776.*storage '0' reaches element"),
    (_empty_offset_past_end, r"storage '0' starts past the end"),
    (_negative_stride, r"stride must be .*non-negative.*\(-1,\).*storage '0'"),
    (_negative_size, r"size must be .*non-negative.*storage '0'"),
    (_storage_exceeds_record, r"storage '0' is 1073741824 x float32 = 4294967296 bytes but its "
                              r"record 'archive/data/0' holds only 16"),
    (_compressed_record, r"record 'archive/data/0' \(storage '0'\) is compressed"),
    (_compressed_pickle, r"record 'archive/data.pkl' \(its pickle\) is compressed"),
    (_oversized_record, r"record 'archive/data/0' holds 65536 bytes but the pickle says storage "
                        r"'0' is 1 x float32 = 4 bytes"),
    (_overlapping_records, r"storage '1' needs \d+ bytes.*more than the file's size"),
    (_views_beyond_budget, r"tensor 't\d+' \(storage '0'.*more than 2 x the file's"),
    (_lying_pickle_string, r"BINUNICODE8 at byte 2 states 17179869184 bytes"),
    (_legacy_64gib, r"truncated: storage '0' needs 68719476736 bytes"),
    (_legacy_storages_add_up, r"storage '1' .*more than the file's size"),
]
TF_CASES = [
    (_tf_huge_array, r"numpy array of shape \(65536, 65536\) and dtype float32 needs 17179869184 "
                     r"bytes, the pickle holds 4"),
    (_tf_shared_data, r"numpy array of shape \(65536,\).*more than 2 x the file's"),
    (_tf_lying_bytes, r"BINBYTES8 at byte 2 states 17179869184 bytes"),
    (_tf_lying_bytearray, r"BYTEARRAY8 at byte 2 states 17179869184 bytes"),
    (_tf_lying_frame, r"FRAME at byte 2 states 1099511627776 bytes"),
    (_tf_memo_index, r"LONG_BINPUT at byte 3 uses memo slot 2147483647"),
]
# name -> (builder, reader, pattern)
CASES = {builder.__name__[1:]: (builder, reader, pattern)
         for reader, cases in (("torch", TORCH_CASES), ("tf", TF_CASES))
         for builder, pattern in cases}


def _file(folder, name):
  path = Path(folder) / f"{name}{'.pkl' if CASES[name][1] == 'tf' else '.pt'}"
  if not path.exists():
    CASES[name][0](path)
  return path


def _limit_child():  # runs in the child before exec
  resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
  resource.setrlimit(resource.RLIMIT_CPU, (120, 120))


_CHILD = r"""
import json, resource, sys, time
from weights_convert import read_tf_network_pickle, read_torch_file
out = {}
for name, reader, path in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        (read_tf_network_pickle if reader == "tf" else read_torch_file)(path)
        result = {"error": None}
    except BaseException as e:
        from weights_convert import WeightFileError
        result = {"error": type(e).__name__, "message": str(e), "ok_type": isinstance(e, WeightFileError)}
    result["seconds"] = time.perf_counter() - start
    # VmHWM: this process's own peak (ru_maxrss would include the forking parent's RSS,
    # which Linux carries across exec: a large pytest process would count).
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    result["max_rss"] = int(hwm.split()[1]) * 1024
    out[name] = result
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def refusals(hostile_dir):
  """Every case read once, in one child process limited to 2 GiB of address space."""
  cases = [(name, reader, str(_file(hostile_dir, name))) for name, (_, reader, _) in CASES.items()]
  proc = run_python("-c", _CHILD, json.dumps(cases), cwd=REPO, preexec_fn=_limit_child,
                    timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout)


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_is_refused_within_limits(refusals, hostile_dir, name):
  got = refusals[name]
  path = _file(hostile_dir, name)
  assert got["error"] is not None, f"{name} was read without error"
  assert got["ok_type"], got  # WeightFileError (a ValueError), never MemoryError
  msg = got["message"]
  assert path.name in msg, msg
  assert "ran out of memory" not in msg, msg  # refused by a check, not by a failed allocation
  assert re.search(CASES[name][2], msg), msg
  assert got["seconds"] < MAX_SECONDS, got
  assert got["max_rss"] < MAX_RSS, got


def test_hostile_files_are_small(hostile_dir):
  sizes = {name: _file(hostile_dir, name).stat().st_size for name in CASES}
  assert sizes["stride0"] < 1024 and sizes["legacy_64gib"] < 1024 and sizes["tf_huge_array"] < 1024
  assert max(sizes.values()) < 1 << 20, sizes


# `python -m weights_convert ARGS` that writes its own peak RSS to $HWM_FILE at exit.
_CLI_WRAPPER = peak_rss_wrapper("weights_convert")


class _Usage:
  def __init__(self, rusage, hwm_kib: int):
    self.ru_utime, self.ru_stime = rusage.ru_utime, rusage.ru_stime
    self.ru_maxrss = hwm_kib  # KiB, like ru_maxrss


def _run_cli(args):
  """``python -m weights_convert ARGS`` under the limits: (returncode, stderr, usage) with
  usage.ru_maxrss the child's own peak (KiB) and its CPU times."""
  import tempfile
  with tempfile.NamedTemporaryFile("r", suffix=".hwm") as hwm:
    env = {**os.environ, "HWM_FILE": hwm.name}
    with open(os.devnull, "wb") as null, subprocess.Popen(
            python_command("-c", _CLI_WRAPPER, *args), cwd=REPO, stdout=null, env=env,
            stderr=subprocess.PIPE, preexec_fn=_limit_child) as proc:
      err = proc.stderr.read().decode("utf-8", "replace")
      _, status, usage = os.wait4(proc.pid, 0)
      proc.returncode = os.waitstatus_to_exitcode(status)
    text = open(hwm.name).read().strip()
  return proc.returncode, err, _Usage(usage, int(text) if text else 1 << 40)


# The CLI starts in ~1 s (imports), so it runs the cases, not all of them.
CLI_CASES = ["stride0", "offset_past_end", "negative_stride", "storage_exceeds_record",
             "compressed_record", "oversized_record", "legacy_64gib", "tf_huge_array",
             "tf_lying_bytes"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_refuses_hostile_file(hostile_dir, tmp_path, name):
  path = _file(hostile_dir, name)
  out = tmp_path / "out"
  code, err, usage = _run_cli([f"--source={path}", f"--out={out}"])
  assert code != 0, err
  assert "Traceback" not in err and "MemoryError" not in err, err
  assert err.startswith("weights_convert: error: ") and path.name in err, err
  assert re.search(CASES[name][2], err), err
  assert usage.ru_maxrss * 1024 < MAX_RSS
  assert usage.ru_utime + usage.ru_stime < MAX_SECONDS  # start-up (imports) included
  assert not out.exists()


def test_small_overlapping_views_still_load(tmp_path):
  """A stride-0 / overlapping view no larger than its storage is fine; one element more is not."""
  store = _float_storage(6)
  data = np.arange(6, dtype=np.float32)
  views = {"rows": _tensor(store, 1, (3, 2), (0, 1)), "win": _tensor(store, 0, (2, 3), (1, 1))}
  _zip(tmp_path / "ok.pt", views, {"0": data.tobytes()})
  got = read_torch_file(tmp_path / "ok.pt")
  np.testing.assert_array_equal(got["rows"], np.stack([data[1:3]] * 3))
  np.testing.assert_array_equal(got["win"], np.stack([data[0:3], data[1:4]]))
  _zip(tmp_path / "big.pt", {"rows": _tensor(store, 0, (7, 1), (0, 1))}, {"0": data.tobytes()})
  with pytest.raises(WeightFileError, match=r"big.pt.*7 elements but its storage holds only 6"):
    read_torch_file(tmp_path / "big.pt")


def test_exact_records_and_empty_storages_load(tmp_path):
  _zip(tmp_path / "ok.pt", {"w": _tensor(_float_storage(3), 0, (3,), (1,)),
                            "e": _tensor(_float_storage(0, "1"), 0, (0, 5), (5, 1))},
       {"0": np.float32([1, 2, 3]).tobytes(), "1": b""})
  got = read_torch_file(tmp_path / "ok.pt")
  np.testing.assert_array_equal(got["w"], [1, 2, 3])
  assert got["e"].shape == (0, 5)
  _zip(tmp_path / "short.pt", {"w": _tensor(_float_storage(3), 0, (3,), (1,))}, {"0": bytes(11)})
  with pytest.raises(WeightFileError, match=r"short.pt.*12 bytes but its record .* holds only 11"):
    read_torch_file(tmp_path / "short.pt")


def test_memory_error_names_file_and_tensor(tmp_path, monkeypatch):
  _zip(tmp_path / "w.pt", {"layer.weight": _tensor(_float_storage(4), 0, (2, 2), (2, 1))},
       {"0": bytes(16)})

  def no_memory(*args, **kwargs):
    raise MemoryError("Unable to allocate")

  with monkeypatch.context() as m:
    m.setattr(TensorRef, "materialize", no_memory)
    with pytest.raises(WeightFileError, match=r"w.pt'?: ran out of memory while reading tensor "
                                              r"'layer.weight' \(storage '0'"):
      read_torch_file(tmp_path / "w.pt")
  with monkeypatch.context() as m:
    m.setattr(torch_files, "_storage", no_memory)
    with pytest.raises(WeightFileError, match=r"w.pt'?: ran out of memory while reading storage '0'"):
      read_torch_file(tmp_path / "w.pt")
  (tmp_path / "n.pkl").write_bytes(_pickle(_numpy_array((2,), bytes(8)), protocol=4))
  with monkeypatch.context() as m:
    m.setattr(numpy_globals, "_array", no_memory)
    with pytest.raises(WeightFileError, match=r"n.pkl'?: ran out of memory while reading its pickle"):
      read_tf_network_pickle(tmp_path / "n.pkl")


def test_check_pickle_accepts_what_python_writes_and_keeps_the_position():
  big = 7**500
  obj = {"a": [1, -2, 2**70, big, 1.5, None, True], "s": "x" * 300, "u": "\u00e9" * 70000,
         "b": b"\x00" * 70000, "ba": bytearray(b"abc"), "t": (1, (2,)), "set": {1, 2},
         "fs": frozenset([3])}
  obj["self"] = [obj["a"]] * 3  # memo GETs
  for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    data = b"junk" + pickle.dumps(obj, protocol=protocol) + b"after"
    f = io.BytesIO(data)
    f.seek(4)
    check_pickle(f, source="x.pkl")
    assert f.tell() == 4
    with pytest.raises(WeightFileError, match="x.pkl"):  # the same pickle cut short
      check_pickle(io.BytesIO(data[4:-10]), source="x.pkl")
