"""Tests of pulse_jax.align (FFHQ alignment of real photos).

The geometry/blur/IO tests need nothing optional. The detection tests need dlib and its
68-point landmark model (``pip install 'pulse-jax[align]'``) and are skipped without them.
tests/data/astronaut.jpg is scikit-image's `astronaut` (Eileen Collins, NASA; public domain),
saved as JPEG quality 90.
"""
from __future__ import annotations

import io
import json
import os
import pathlib
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from pulse_jax.job import align
from support.harness import REPO, TEST_DATA, cli
from pulse_jax.io import images as image_files
from pulse_jax.io import input_images
from pulse_jax.io.face_landmarks import (AlignDependencyError, dlib_available, find_landmarks_model,
                                      landmarks_available, unrotate_points)

ASTRONAUT = TEST_DATA / "astronaut.jpg"


def _why_no_landmarks() -> str:
  if not dlib_available():
    return "dlib not installed (pip install 'pulse-jax[align]')"
  try:
    find_landmarks_model()
  except AlignDependencyError as e:
    return str(e).splitlines()[0]
  return ""


needs_dlib = pytest.mark.skipif(not landmarks_available(), reason=_why_no_landmarks() or "-")


# ----------------------------------------------------------------------------- no dlib needed

def test_ffhq_geometry_frontal_template():
  """A symmetric frontal face: eyes land at 3S/8 and 5S/8, 0.1 |e2m| S / (2 |x|) above centre."""
  lm = np.zeros((68, 2))
  lm[36:42] = [400.0, 500.0]           # left eye centre
  lm[42:48] = [600.0, 500.0]           # right eye centre (eye distance 200)
  lm[48] = [440.0, 700.0]              # mouth corners; eye-to-mouth 200
  lm[54] = [560.0, 700.0]
  g = align.ffhq_geometry(lm)
  assert g.qsize == pytest.approx(800.0)          # 2 * max(2 * 200, 1.8 * 200)
  np.testing.assert_allclose(g.quad, [[100, 120], [100, 920], [900, 920], [900, 120]])
  for s in (64, 1024):
    eyes = align.crop_coords(np.stack([g.eye_left, g.eye_right]), g.quad, s)
    dy = 0.1 * 200 * s / 800
    np.testing.assert_allclose(eyes, [[3 * s / 8 - 0.5, s / 2 - dy - 0.5],
                                      [5 * s / 8 - 0.5, s / 2 - dy - 0.5]], atol=1e-9)


def test_ffhq_geometry_rotation_invariant():
  """Rotating the landmarks rotates the quad with them (in-plane rotation is undone)."""
  rng = np.random.default_rng(0)
  lm = rng.uniform(0, 50, (68, 2))
  lm[36:42] = [100, 100]
  lm[42:48] = [180, 104]
  lm[48], lm[54] = [115, 190], [170, 192]
  th = np.deg2rad(33.0)
  rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
  g0, g1 = align.ffhq_geometry(lm), align.ffhq_geometry(lm @ rot.T)
  np.testing.assert_allclose(g1.quad, g0.quad @ rot.T, atol=1e-9)
  pts = lm[36:48]
  np.testing.assert_allclose(align.crop_coords(pts @ rot.T, g1.quad, 256),
                             align.crop_coords(pts, g0.quad, 256), atol=1e-9)


def test_gaussian_blur_matches_scipy():
  ndimage = pytest.importorskip("scipy.ndimage", reason="scipy only used as a test oracle")
  rng = np.random.default_rng(1)
  img = rng.uniform(0, 255, (57, 83, 3)).astype(np.float32)
  for sigma in (0.7, 3.2, 9.0):          # direct path and FFT path (kernel > 64 taps)
    want = ndimage.gaussian_filter(img.astype(np.float64), [sigma, sigma, 0])
    np.testing.assert_allclose(align.gaussian_blur(img, sigma), want, atol=2e-3)


def test_gaussian_blur_taps_are_the_forward_models():
  """align's numpy blur applies `forward.blur.gaussian_taps` (one definition of the taps) with
  FFHQ's radius int(4 sigma + 0.5): the taps of the former private kernel, bit for bit."""
  from pulse_jax.forward.blur import gaussian_taps
  for sigma in (0.1, 0.7, 3.2, 9.0):
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    np.testing.assert_array_equal(gaussian_taps(sigma, radius=r), k / k.sum())
  img = np.random.default_rng(3).uniform(0, 255, (9, 7, 2)).astype(np.float32)
  one = align.gaussian_blur(img[..., :1], 1.0)[..., 0]
  taps = gaussian_taps(1.0, radius=4)   # separable: rows then columns, reflect (symmetric pad)
  rows = sum(t * np.pad(img[..., 0], ((4, 4), (0, 0)), mode="symmetric")[j:j + 9]
             for j, t in enumerate(taps.astype(np.float64)))
  want = sum(t * np.pad(rows.astype(np.float32), ((0, 0), (4, 4)), mode="symmetric")[:, j:j + 7]
             for j, t in enumerate(taps.astype(np.float64)))
  np.testing.assert_allclose(one, want, rtol=1e-6)


def test_ffhq_crop_pads_outside_the_photo():
  """A quad reaching past the photo edge: padded by reflection, no black borders."""
  rng = np.random.default_rng(2)
  photo = Image.fromarray(rng.integers(60, 200, (120, 100, 3), dtype=np.uint8))
  quad = np.array([[-30.0, -30.0], [-30.0, 90.0], [90.0, 90.0], [90.0, -30.0]])
  out = np.asarray(align.ffhq_crop(photo, quad, 120.0, 64, transform_size=256))
  assert out.shape == (64, 64, 3)
  assert out.min() > 30                 # reflected/blurred/faded photo content, never 0
  # The inside of the quad that lies within the photo is the photo itself.
  ref = np.asarray(photo.crop((0, 0, 90, 90)).resize((48, 48), Image.Resampling.LANCZOS))
  assert np.abs(out[16:, 16:].astype(int) - ref.astype(int)).mean() < 25


def test_unrotate_points_roundtrip():
  photo = np.zeros((5, 7), np.uint8)    # h=5, w=7
  photo[1, 5] = 255                     # (x, y) = (5, 1)
  img = Image.fromarray(photo)
  for rotation, op in ((90, Image.Transpose.ROTATE_90), (180, Image.Transpose.ROTATE_180),
                       (270, Image.Transpose.ROTATE_270)):
    r = np.asarray(img.transpose(op))
    yr, xr = np.argwhere(r == 255)[0]
    np.testing.assert_allclose(unrotate_points([[xr, yr]], rotation, img.size), [[5, 1]])


def test_downsample_image_uses_project_bicubic():
  from pulse_jax.forward.bicubic import downsample
  rng = np.random.default_rng(3)
  hr = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
  lr = np.asarray(align.downsample_image(hr, 16))
  x = np.asarray(hr, np.float32).transpose(2, 0, 1)[None] / 255
  want = np.asarray(downsample(x, 4))[0].transpose(1, 2, 0)
  assert lr.shape == (16, 16, 3)
  assert np.abs(lr / 255.0 - want).max() <= 0.5 / 255 + 1e-6


def test_missing_model_error_is_actionable(tmp_path):
  with pytest.raises(AlignDependencyError, match="no such file"):
    find_landmarks_model(tmp_path / "nope.dat")


def test_sizes_checked():
  with pytest.raises(ValueError, match="multiple"):
    align.check_sizes(24, 1024)


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _hostile_files(folder: pathlib.Path) -> dict[str, str]:
  """An EPS and a PCX named .png, and a PNG header claiming 9000 x 9000 pixels: name -> words
  their refusal must contain."""
  b = io.BytesIO()
  Image.new("RGB", (8, 8), (200, 30, 10)).save(b, "EPS")   # written without Ghostscript
  (folder / "face.png").write_bytes(b.getvalue())
  b = io.BytesIO()
  Image.new("RGB", (8, 8)).save(b, "PCX")
  (folder / "pcx.png").write_bytes(b.getvalue())
  ihdr = struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0)   # 81 MP: below Pillow's own limit
  (folder / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
                                    + _chunk(b"IDAT", zlib.compress(b"\0" * 100))
                                    + _chunk(b"IEND", b""))
  return {"face.png": "EPS/PostScript", "pcx.png": "say PCX",
          "huge.png": f"over the cap of {image_files.MAX_IMAGE_PIXELS:,} pixels"}


@pytest.fixture
def no_eps(monkeypatch):
  """EPS's parser and Ghostscript record any call, and fail."""
  calls = []
  monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open",
                      lambda self: calls.append("EPS._open") or 1 / 0)
  monkeypatch.setattr(EpsImagePlugin, "Ghostscript",
                      lambda *a, **k: calls.append("Ghostscript") or 1 / 0)
  return calls


def test_load_photo_refuses_what_run_refuses(tmp_path, monkeypatch, no_eps):
  """Same allow-list and same pixel cap (one constant) as run, checked before decoding."""
  monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: 1 / 0)   # never decode
  for name, words in _hostile_files(tmp_path).items():
    t0 = time.perf_counter()
    with pytest.raises(image_files.ImageFileError) as e:
      align.load_photo(tmp_path / name)
    assert time.perf_counter() - t0 < 1.0
    assert str(tmp_path / name) in str(e.value) and words in str(e.value), str(e.value)
    if name != "huge.png":
      assert "convert it to PNG or JPEG" in str(e.value)
    with pytest.raises(input_images.InputError, match=words):   # the run loader says the same
      input_images.load_image(tmp_path / name, 64)
  assert no_eps == []


def test_align_file_reports_a_refused_file(tmp_path, no_eps):
  """A refused photo is an 'error' result naming it (no dlib needed: refused before detection)."""
  words = _hostile_files(tmp_path)["face.png"]
  r = align.align_file(tmp_path / "face.png", tmp_path / "out", 16, 64)
  assert r.status == "error" and not r.lr_paths
  assert str(tmp_path / "face.png") in r.message and words in r.message
  assert no_eps == []


# ----------------------------------------------------------------------------- dlib needed

@pytest.fixture(scope="module")
def landmarker():
  from pulse_jax.io.face_landmarks import FaceLandmarker
  return FaceLandmarker()


@pytest.fixture(scope="module")
def astronaut():
  return Image.open(ASTRONAUT).convert("RGB")


@pytest.fixture(scope="module")
def astronaut_face(astronaut, landmarker):
  faces = align.align_faces(astronaut, hr_size=1024, landmarker=landmarker)
  assert len(faces) == 1     # the mission patch is a weak (< 0.5) false positive, rejected
  return faces[0]


@needs_dlib
def test_astronaut_eyes_on_ffhq_template(astronaut_face, landmarker):
  face = astronaut_face
  assert face.image.size == (1024, 1024) and face.rotation == 0
  # FFHQ template: eye centres at x = 3S/8, 5S/8 (minus the half-pixel of index convention).
  np.testing.assert_allclose(face.eyes_in_crop[:, 0], [383.5, 639.5], atol=1.0)
  assert 480 < face.eyes_in_crop[:, 1].mean() < 500
  # Re-detect the landmarks in the aligned crop: the eyes are where the geometry puts them...
  det = landmarker.detect(face.image, try_rotations=False)
  assert len(det) == 1
  g = align.ffhq_geometry(det[0].landmarks)
  measured = np.stack([g.eye_left, g.eye_right])
  err = np.hypot(*(measured - face.eyes_in_crop).T)
  assert err.max() < 4.0, (measured, face.eyes_in_crop)
  # ...and re-aligning the aligned crop is (nearly) the identity.
  identity = np.array([[0, 0], [0, 1024], [1024, 1024], [1024, 0]]) - 0.5
  assert np.abs(g.quad - identity).max() < 8.0


@needs_dlib
def test_align_file_writes_lr_and_hr(tmp_path, landmarker):
  r = align.align_file(ASTRONAUT, tmp_path, 16, 64, landmarker=landmarker)
  assert r.status == "ok", r
  assert [pathlib.Path(p).name for p in r.lr_paths] == ["astronaut.png"]
  lr, hr = Image.open(r.lr_paths[0]), Image.open(r.hr_paths[0])
  assert lr.size == (16, 16) and hr.size == (64, 64)
  np.testing.assert_array_equal(np.asarray(lr), np.asarray(align.downsample_image(hr, 16)))


@needs_dlib
def test_no_face(tmp_path, landmarker):
  yy, xx = np.mgrid[:300, :400]
  grad = np.stack([xx * 255 // 400, yy * 255 // 300, (xx + yy) * 255 // 700], -1)
  path = tmp_path / "gradient.png"
  Image.fromarray(grad.astype(np.uint8)).save(path)
  r = align.align_file(path, tmp_path / "out", 16, 64, landmarker=landmarker)
  assert r.status == "no_face" and not r.lr_paths and not r.ok


@needs_dlib
def test_two_faces(tmp_path, astronaut, landmarker):
  head = astronaut.crop((96, 40, 352, 296))   # the quad leaves the top edge: FFHQ padding
  canvas = Image.new("RGB", (512, 256))
  canvas.paste(head, (0, 0))
  canvas.paste(head, (256, 0))
  path = tmp_path / "pair.png"
  canvas.save(path)
  r = align.align_file(path, tmp_path / "out", 16, 64, landmarker=landmarker)
  assert r.status == "ok" and len(r.faces) == 2, r
  assert [pathlib.Path(p).name for p in r.lr_paths] == ["pair_0.png", "pair_1.png"]
  q0, q1 = r.faces[0].quad, r.faces[1].quad          # left to right, 256 px apart
  np.testing.assert_allclose(q1 - q0, np.tile([256.0, 0.0], (4, 1)), atol=3.0)
  assert q0[:, 1].min() < -10           # so the padding path ran
  a, b = (np.asarray(Image.open(p), np.float32) for p in r.hr_paths)
  assert np.abs(a - b).mean() < 8       # the same face twice


@needs_dlib
def test_exif_orientation_applied(tmp_path, astronaut, landmarker, astronaut_face):
  path = tmp_path / "exif.jpg"
  exif = Image.Exif()
  exif[image_files.EXIF_ORIENTATION] = 6    # "rotate 90 CW to display"
  astronaut.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
  r = align.align_file(path, tmp_path / "out", 16, 64, landmarker=landmarker)
  assert r.status == "ok" and r.exif_orientation == 6 and r.rotation == 0, r
  assert r.image_size == (512, 512)
  np.testing.assert_allclose(r.faces[0].quad, astronaut_face.quad, atol=3.0)


@needs_dlib
def test_rotated_photo_found_by_rotation(tmp_path, astronaut, landmarker, astronaut_face):
  path = tmp_path / "sideways.png"
  astronaut.transpose(Image.Transpose.ROTATE_90).save(path)   # no EXIF tag
  r = align.align_file(path, tmp_path / "out", 16, 64, landmarker=landmarker)
  assert r.status == "ok" and r.rotation == 270, r
  assert any("rotating" in w for w in r.warnings)
  # The oriented crop undoes the rotation: same crop as from the upright photo.
  up = np.asarray(astronaut_face.image.resize((64, 64), Image.Resampling.LANCZOS), np.float32)
  assert np.abs(np.asarray(Image.open(r.hr_paths[0]), np.float32) - up).mean() < 8


@needs_dlib
def test_tiny_face_skipped_with_reason(tmp_path, landmarker):
  r = align.align_file(ASTRONAUT, tmp_path, 16, 64, landmarker=landmarker,
                       min_eye_distance=1000)
  assert r.status == "too_small" and not r.lr_paths
  assert "too small" in r.faces[0].reason


@needs_dlib
def test_cli_folder_report_and_exit_status(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  (src / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
  (src / "broken.png").write_bytes(b"not a png")
  out = tmp_path / "out"
  proc = cli("pulse_jax.align", f"--input={src}", f"--output_dir={out}", "--size=16",
             "--hr_size=64", cwd=REPO, timeout=120)
  assert proc.returncode == 1, proc.stdout + proc.stderr     # broken.png failed outright
  report = json.loads((out / align.REPORT_NAME).read_text())
  status = {pathlib.Path(f["input"]).name: f["status"] for f in report["files"]}
  assert status == {"astronaut.jpg": "ok", "broken.png": "error"}
  assert report["faces_written"] == 1
  assert Image.open(out / "astronaut.png").size == (16, 16)
  assert Image.open(out / "hr" / "astronaut.png").size == (64, 64)


@needs_dlib
def test_hostile_files_among_good_ones(tmp_path, no_eps):
  """Refused files are reported one by one; the good photo next to them is still aligned."""
  src = tmp_path / "in"
  src.mkdir()
  (src / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
  words = _hostile_files(src)
  results = align.align_path(src, tmp_path / "out", 16, 64)
  by_name = {pathlib.Path(r.input).name: r for r in results}
  assert by_name["astronaut.jpg"].status == "ok"
  assert (tmp_path / "out" / "astronaut.png").is_file()
  for name, w in words.items():
    assert by_name[name].status == "error" and w in by_name[name].message, by_name[name]
  report = json.loads((tmp_path / "out" / align.REPORT_NAME).read_text())
  assert report["counts"] == {"ok": 1, "error": 3} and report["faces_written"] == 1
  assert no_eps == []


@needs_dlib
def test_folder_listing_is_runs(tmp_path):
  """align lists a folder with run's listing (`input_images.folder_files`): a FIFO named like
  an image is an 'error' entry in its sorted place, never opened; other names are ignored."""
  src = tmp_path / "in"
  src.mkdir()
  (src / "b.jpg").write_bytes(ASTRONAUT.read_bytes())
  os.mkfifo(src / "a.png")
  (src / "notes.txt").write_text("not a photo")
  results = align.align_path(src, tmp_path / "out", 16, 64)
  assert [(pathlib.Path(r.input).name, r.status) for r in results] == [("a.png", "error"),
                                                                       ("b.jpg", "ok")]
  assert "named pipe" in results[0].message
  with pytest.raises(FileNotFoundError, match="--input: .* is a named pipe"):
    align.align_path(src / "a.png", tmp_path / "out2", 16, 64)


@needs_dlib
def test_never_overwrites_the_input(tmp_path, astronaut, landmarker):
  path = tmp_path / "face.png"
  astronaut.save(path)
  before = path.read_bytes()
  r = align.align_file(path, tmp_path, 16, 64, landmarker=landmarker, save_hr=False)
  assert r.status == "error" and "overwrite" in r.faces[0].reason
  assert path.read_bytes() == before
  with pytest.raises(ValueError, match="must not be the --input folder"):
    align.align_path(tmp_path, tmp_path, 16, 64)


@pytest.mark.slow
@needs_dlib
def test_aligned_astronaut_crop_runs_through_the_search(tmp_path, landmarker, dcgan_weights):
  """Raw photo -> FFHQ-aligned 16x16 crop -> PULSE search on the embedded DCGAN (64x64)."""
  from pulse_jax import generators
  from pulse_jax.runtime import loop
  from pulse_jax.search.config import SearchConfig
  r = align.align_file(ASTRONAUT, tmp_path, 16, 64, landmarker=landmarker)
  assert r.status == "ok", r
  lr = np.asarray(Image.open(r.lr_paths[0]).convert("RGB"), np.float32) / 255.0
  ref = lr.transpose(2, 0, 1)[None]  # [1, 3, 16, 16]
  g = generators.from_weights(dcgan_weights)
  res = loop.search_images(g, dcgan_weights.params, ref, config=SearchConfig(loss_str="100*L2"),
                             restarts=8)
  assert res.hr.shape == (1, 1, 3, 64, 64) and np.isfinite(res.l2).all()
  # The search makes real progress from its starting points towards the aligned face.
  assert res.l2[0].min() < 0.5 * res.trace["L2_raw"][0, 0].min()
