"""Small files cannot make large allocations; size-driving options are bounded (issue 19).

Sizes are checked from headers before anything is decoded: an image's size (Pillow's lazy
open), a `.npy` header (shape, dtype), each `.npz` member's header and stored size. Hostile
files (a 8192x8192 PNG of a few KB, a deflated npz of 400 MB of zeros) are refused, or read
only as far as the job can use them, inside a child whose own peak RSS (VmHWM, reset between
cases) is measured. Also: --blur_sigma bounded by the HR image before compiling, kernel taps
checked after normalisation, a zip named .npy, --seed's range, short messages, the gray-input
note, and `pulse_jax.render`'s exit status for existing outputs.
"""
import json
import os
import pathlib
import types
import zipfile

import numpy as np
import pytest
from PIL import Image

from pulse_jax.job import inputs as job_inputs
from pulse_jax.job import options
from pulse_jax.job.errors import UsageError
from support.harness import REPO, SAMPLES, cli, run_python

MAX_GROWTH = 64 << 20     # bytes a refused or partly read file may add to the peak RSS


# ----------------------------------------------------------------------------- hostile files

def _big_png(path, side=8192, mode="L") -> pathlib.Path:
  """A side x side black PNG: a few hundred KB on disk, side**2 pixels (GBs) decoded."""
  Image.new(mode, (side, side)).save(path, optimize=False, compress_level=9)
  return pathlib.Path(path)


def _npy_header(shape, dtype="<f4") -> bytes:
  """A .npy 1.0 header for `shape` (no data)."""
  d = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (dtype, tuple(shape))
  pad = 64 - (10 + len(d) + 1) % 64
  h = (d + " " * pad + "\n").encode()
  return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h


def _deflated_npz(path, arrays: dict) -> pathlib.Path:
  """An npz whose members {name: (shape, dtype)} hold zeros, deflated, written in chunks (never
  allocated whole)."""
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for name, (shape, dtype) in arrays.items():
      with z.open(name + ".npy", "w", force_zip64=True) as f:
        f.write(_npy_header(shape, np.dtype(dtype).str))
        left = int(np.prod(shape)) * np.dtype(dtype).itemsize
        chunk = bytes(1 << 24)
        while left:
          n = min(left, len(chunk))
          f.write(chunk[:n])
          left -= n
  return pathlib.Path(path)


_CHILD = r"""
import json, sys
import numpy as np

def clear():
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")   # resets VmHWM to the current RSS

def rss(key):
  with open("/proc/self/status") as f:
    return int([l for l in f if l.startswith(key + ":")][0].split()[1]) * 1024

import types
from pulse_jax import generators
from pulse_jax.job import render
from pulse_jax.job import inputs as job_inputs
from pulse_jax.job import builtin_models
from pulse_jax.forward import blur, mask
from pulse_jax.job.init_values import attach_init
from pulse_jax.search.config import SearchConfig
w = builtin_models.load(None, log=lambda s: None)
g = generators.Generator(w.kind, w.config)
files = json.loads(sys.argv[1])

def collect():   # the job's input loading (`pulse_jax.run --input=FILE`)
  o = types.SimpleNamespace(input=files["rgb_png"], align=False, fit="resize",
                            alpha_background="black", grayscale=False)
  items, _ = job_inputs.collect(o, g, log=print, warn=print, aligned_dir=None)
  if items[0].status == "failed":
    raise ValueError(items[0].message)
  return items

def init():      # --init=FILE.npz with --restarts=2
  it = types.SimpleNamespace(image=object(), status="pending", init=None, path="in.png",
                             stem="in", fail=lambda m: (_ for _ in ()).throw(ValueError(m)))
  o = types.SimpleNamespace(init=files["npz"], restarts=2)
  attach_init(o, [it], g, SearchConfig(), print)
  return it.init

cases = {
  "mask_png": lambda: mask.load_mask(files["png"], (8, 8)),
  "kernel_png": lambda: blur.load_kernel(files["png"]),
  "input_png": collect,
  "kernel_npy_header": lambda: blur.load_kernel(files["huge_npy"]),
  "mask_npy_header": lambda: mask.load_mask(files["huge_npy"], (8, 8)),
  "init_npz": init,
  "render_npz": lambda: render.select_rows(render.load_latents(files["npz"], g, "all"), "all"),
}
out = {}
for name, fn in cases.items():
  clear()
  base = rss("VmRSS")
  try:
    r = fn()
    result = "ok " + (str(r["latent"].shape) if isinstance(r, dict) else "")
  except BaseException as e:
    result = f"{type(e).__name__}: {e}"
  out[name] = {"growth": rss("VmHWM") - base, "result": result[:400]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
  d = tmp_path_factory.mktemp("hostile")
  huge = d / "huge.npy"
  huge.write_bytes(_npy_header((100_000, 100_000)) + bytes(64))
  return {"png": str(_big_png(d / "big.png")), "huge_npy": str(huge),
          "rgb_png": str(_big_png(d / "big_rgb.png", mode="RGB")),
          "npz": str(_deflated_npz(d / "latents.npz", {"latent": ((1_000_000, 1, 100), "<f4")}))}


@pytest.fixture(scope="module")
def child_peaks(hostile):
  if not os.path.exists("/proc/self/clear_refs"):
    pytest.skip("needs Linux /proc (VmHWM reset)")
  p = run_python("-c", _CHILD, json.dumps(hostile), cwd=REPO, timeout=240)
  assert p.returncode == 0, p.stderr[-3000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


def test_hostile_files_are_small_files_sizes(hostile):
  sizes = {k: os.path.getsize(v) for k, v in hostile.items()}
  assert max(sizes.values()) < 3 << 20, sizes   # a few MB at most on disk


@pytest.mark.parametrize("case, expect", [
    ("mask_png", "is 8192x8192, but its input is 8x8"),
    ("kernel_png", "8192x8192 taps, larger than the largest HR image (4096x4096)"),
    ("input_png", "8192x8192 (from its header; not decoded) is larger than the generator's"),
    ("kernel_npy_header", "100000x100000 taps, larger than"),
    ("mask_npy_header", "is 100000x100000, but its input is 8x8"),
])
def test_oversized_file_is_refused_from_its_header_without_allocating(child_peaks, case, expect):
  got = child_peaks[case]
  assert expect in got["result"], got
  assert got["growth"] < MAX_GROWTH, got


def test_init_npz_of_deflated_zeros_reads_only_the_restarts_rows(child_peaks):
  got = child_peaks["init_npz"]   # 1e6 rows of 100 floats: 400 MB when read whole
  assert got["result"] == "ok (2, 1, 100)", got
  assert got["growth"] < MAX_GROWTH, got


def test_render_latents_npz_with_a_million_rows_is_refused_before_reading(child_peaks):
  got = child_peaks["render_npz"]
  assert "1000000 rows to render, more than 4096" in got["result"], got
  assert got["growth"] < MAX_GROWTH, got


def test_init_npz_header_checks(tmp_path):
  from pulse_jax import generators
  from pulse_jax.job import builtin_models
  from pulse_jax.job.init_values import load_init
  from pulse_jax.search.config import SearchConfig
  w = builtin_models.load(None, log=lambda s: None)
  g = generators.Generator(w.kind, w.config)
  obj = tmp_path / "obj.npz"
  with zipfile.ZipFile(obj, "w") as z:   # an object array: never unpickled
    z.writestr("latent.npy", _npy_header((2, 1, 100), "|O") + b"\x80\x04N.")
  with pytest.raises(ValueError, match="must hold real numbers, got dtype object"):
    load_init(str(obj), g, SearchConfig())
  lying = tmp_path / "lying.npz"
  with zipfile.ZipFile(lying, "w") as z:  # header says 1e6 rows, 800 bytes stored
    z.writestr("latent.npy", _npy_header((1_000_000, 1, 100)) + bytes(800))
  with pytest.raises(ValueError, match=r"'latent': its header says 1000000x1x100 float32 "
                                       r"\(400,000,000 bytes\), but it stores 800 bytes"):
    load_init(str(lying), g, SearchConfig())
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, latent=np.zeros((3, 1, 99), np.float32))
  with pytest.raises(ValueError, match=r"'latent' has shape \(3, 1, 99\)"):
    load_init(str(wrong), g, SearchConfig())
  ok = tmp_path / "ok.npz"
  np.savez(ok, latent=np.arange(500, dtype=np.float32).reshape(5, 1, 100),
           kept=np.array([4, 0]), rank=np.arange(5))
  got = load_init(str(ok), g, SearchConfig(), max_rows=3)
  assert got.rows == 5 and list(got) == ["latent"]
  np.testing.assert_array_equal(got["latent"], np.arange(300, dtype=np.float32).reshape(3, 1, 100))


# ----------------------------------------------------------------------------- a zip named .npy

def _zip_npy(path) -> pathlib.Path:
  np.savez(str(path)[:-4], a=np.ones((3, 3)))      # writes path[:-4] + .npz
  os.replace(str(path)[:-4] + ".npz", path)
  return pathlib.Path(path)


def test_zip_named_npy_as_mask_fails_that_input_with_a_message(tmp_path):
  from pulse_jax.forward import mask
  z = _zip_npy(tmp_path / "m.npy")
  with pytest.raises(mask.MaskError, match=r"m\.npy: is a zip archive \(an \.npz\?\), not a "
                                           r"\.npy array"):
    mask.load_mask(z, (8, 8))


def test_zip_named_npy_as_blur_kernel_is_a_usage_error(tmp_path):
  z = _zip_npy(tmp_path / "k.npy")
  _, found = options.problems({"blur_kernel": str(z)})
  assert len(found) == 1 and "is a zip archive (an .npz?), not a .npy array" in found[0], found


@pytest.mark.slow
def test_zip_named_npy_mask_cli_fails_only_that_input_without_traceback(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  Image.new("RGB", (8, 8), (200, 100, 50)).save(src / "a.png")
  Image.new("RGB", (8, 8), (20, 100, 50)).save(src / "b.png")
  masks = tmp_path / "masks"
  masks.mkdir()
  _zip_npy(masks / "a.npy")
  np.save(masks / "b.npy", np.ones((8, 8)))
  p = cli("pulse_jax.run", f"--input={src}", f"--mask={masks}", f"--output_dir={tmp_path / 'o'}",
          "--steps=2", "--restarts=2", "--chunk_size=2", cwd=REPO, timeout=180)
  assert p.returncode == 1, p.stderr[-3000:]
  assert "Traceback" not in p.stderr and "a.npy: is a zip archive" in p.stderr, p.stderr[-3000:]
  assert (tmp_path / "o" / "b" / "hr_0.png").exists()


# ----------------------------------------------------------------------------- --blur_sigma

def test_blur_sigma_bound_matches_the_largest_hr_image():
  from pulse_jax.forward import blur
  assert blur.max_sigma(64) == pytest.approx(31 / 3)
  _, found = options.problems({"blur_sigma": 682.0})
  assert not found


@pytest.mark.parametrize("sigma", [1e4, 1e5, 1e9, float("inf")])
def test_huge_blur_sigma_is_refused_when_validated(sigma):
  _, found = options.problems({"blur_sigma": sigma})
  assert len(found) == 1 and found[0].startswith("--blur_sigma: must be"), found
  from pulse_jax.forward import ForwardModel
  with pytest.raises(ValueError, match="--blur_sigma"):
    ForwardModel.from_options(blur_sigma=sigma)


def test_blur_sigma_larger_than_the_generator_is_refused_naming_its_size():
  from pulse_jax.forward import ForwardModel
  ForwardModel.from_options(blur_sigma=10.3).check_hr_shape((3, 64, 64))
  m = ForwardModel.from_options(blur_sigma=10.5)
  with pytest.raises(ValueError, match=r"--blur_sigma=10\.5 gives radius ceil\(3 sigma\) = 32, "
                                       r"65 taps, more than the 64x64 HR image \(3x64x64 "
                                       r"generator output\); --blur_sigma must be <= 10\.3333"):
    m.check_hr_shape((3, 64, 64))


def test_blur_sigma_larger_than_the_generator_cli_exits_2_before_compiling(tmp_path):
  p = cli("pulse_jax.run", "--blur_sigma=20", f"--output_dir={tmp_path / 'o'}", "--steps=2",
          "--restarts=2", cwd=REPO, timeout=120)
  assert p.returncode == 2, p.stderr[-3000:]
  assert "Traceback" not in p.stderr and "--blur_sigma must be <= 10.3333" in p.stderr, p.stderr
  assert not (tmp_path / "o" / "astronaut_8x8").exists()


# ----------------------------------------------------------------------------- kernel taps

def test_kernel_taps_that_cancel_are_refused_after_normalisation(tmp_path):
  from pulse_jax.forward import blur
  p = tmp_path / "cancel.npy"
  np.save(p, np.array([[1e300, -1e300, 1e-300]]))
  with pytest.raises(blur.KernelError, match=r"cancel\.npy: normalised to sum 1, its taps are "
                                             r"not finite"):
    blur.load_kernel(p)


def test_kernel_taps_whose_sum_overflows_are_scaled_not_zeroed(tmp_path):
  from pulse_jax.forward import blur
  p = tmp_path / "huge.npy"
  np.save(p, np.full((2, 2), 1e308))
  k = blur.load_kernel(p)
  np.testing.assert_array_equal(k.taps, np.full((2, 2), 0.25))


def test_ordinary_kernel_taps_are_unchanged(tmp_path):
  from pulse_jax.forward import blur
  p = tmp_path / "k.npy"
  a = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
  np.save(p, a)
  np.testing.assert_array_equal(blur.load_kernel(p).taps, a / a.sum())


# ----------------------------------------------------------------------------- --seed

@pytest.mark.parametrize("seed", [2 ** 32, 2 ** 64, -1])
def test_seed_outside_uint32_is_a_usage_error(seed):
  _, found = options.problems({"seed": seed})
  assert found == [f"--seed: must be in 0..4294967295 (the uint32 seed of jax.random.key) "
                   f"(got {seed})"], found


def test_seed_range_is_also_the_flag_bound_and_api_keyword():
  assert options.get("seed").upper_bound == 2 ** 32 - 1 and options.get("seed").lower_bound == 0
  _, found = options.problems({"seed": 2 ** 32 - 1})
  assert not found
  import pulse_jax
  with pytest.raises(UsageError, match=r"0\.\.4294967295"):
    pulse_jax.upsample(str(SAMPLES / "hopper_4x4.png"), seed=2 ** 64,
                       steps=2, restarts=2)


# ----------------------------------------------------------------------------- short messages

def test_messages_with_long_values_are_short():
  _, found = options.problems({"bad_noise_layers": "x" * 1_000_000})
  assert len(found) == 1 and len(found[0]) < 1000, len(found[0])
  _, found = options.problems({"opt_name": "y" * 1_000_000})
  assert len(found) == 1 and len(found[0]) < 1000 and "('" not in found[0], found[0][:200]


def test_out_of_range_noise_layers_message_is_short():
  from pulse_jax.search.config import SearchConfig
  c = SearchConfig(bad_noise_layers=".".join(map(str, range(100_000))))
  with pytest.raises(ValueError) as e:
    c.check_layers(18)
  assert len(str(e.value)) < 500 and "and 99974 more" in str(e.value), str(e.value)[:600]


def test_npz_member_listing_is_capped():
  from pulse_jax.io import npy_files
  assert npy_files.listing([f"a{i}" for i in range(100)]).endswith("... and 92 more")


# ----------------------------------------------------------------------------- gray note

def _collect(tmp_path, rgb, grayscale):
  p = tmp_path / "in.png"
  Image.fromarray(rgb).save(p)
  o = types.SimpleNamespace(input=str(p), align=False, fit="error", alpha_background="black",
                            grayscale=grayscale)
  g = types.SimpleNamespace(resolution=64, num_channels=3)
  lines = []
  items, _ = job_inputs.collect(o, g, log=lines.append, warn=lines.append, aligned_dir=None)
  return items, lines


def test_gray_input_without_grayscale_gets_a_note(tmp_path):
  gray = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 3, 3, axis=2)
  items, lines = _collect(tmp_path, gray, grayscale=False)
  assert any("looks gray (R = G = B in every pixel); pass --grayscale" in s for s in lines), lines
  assert job_inputs.GRAY_NOTE in items[0].image.notes


def test_colour_or_grayscale_input_gets_no_gray_note(tmp_path):
  gray = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 3, 3, axis=2)
  colour = gray.copy()
  colour[0, 0, 2] += 1
  for rgb, flag in ((colour, False), (gray, True)):
    _, lines = _collect(tmp_path, rgb, grayscale=flag)
    assert not any("looks gray" in s for s in lines), lines


# ----------------------------------------------------------------------------- render

def test_render_existing_outputs_exit_2_like_run_without_list_repr(tmp_path):
  latents = tmp_path / "l.npz"
  np.savez(latents, latent=np.zeros((2, 1, 100), np.float32))
  for name in ("x_0.png", "x_1.png"):
    (tmp_path / name).write_bytes(b"precious")
  p = cli("pulse_jax.render", f"--latents={latents}", f"--out={tmp_path / 'x.png'}", cwd=REPO,
          timeout=180)
  assert p.returncode == 2, p.stderr[-3000:]
  assert "Traceback" not in p.stderr and "['" not in p.stderr, p.stderr
  assert f"{tmp_path / 'x_0.png'}, {tmp_path / 'x_1.png'} exist; pass --overwrite" in p.stderr
  assert (tmp_path / "x_0.png").read_bytes() == b"precious"


def test_render_messages_have_no_list_repr(tmp_path):
  from pulse_jax.job import render
  with pytest.raises(ValueError) as e:
    render.select_rows({"latent": np.zeros((2, 1, 100)), "_rows": 2}, "0,5")
  assert "rows 0, 5 out of range" in str(e.value), str(e.value)
  with pytest.raises(ValueError) as e:
    render.styles(None, {}, {"latent": 1, "z": 2})
  assert "found latent, z." in str(e.value) and "[" not in str(e.value), str(e.value)
