"""Reading and fitting search inputs (pulse_jax.io.input_images): no search, no JAX."""
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile, features

from pulse_jax.io import images as image_files
from pulse_jax.io import input_images
from support.harness import SAMPLES
G = 64  # the built-in DCGAN's size


def _rgb(size, w=None, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (size, w or size, 3), dtype=np.uint8)


def _save(tmp_path, name, array, mode=None):
  p = tmp_path / name
  Image.fromarray(array, mode).save(p) if mode else Image.fromarray(array).save(p)
  return p


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_valid_sizes():
  assert input_images.valid_sizes(64) == [64, 32, 16, 8, 4, 2, 1]
  assert input_images.valid_sizes(1024)[:3] == [1024, 512, 256]


def test_sample_loads_as_is():
  im = input_images.load_image(SAMPLES / "astronaut_8x8.png", G)
  assert im.pixels.shape == (3, 8, 8) and im.pixels.dtype == np.float32
  assert 0.0 <= im.pixels.min() and im.pixels.max() <= 1.0
  assert im.mask is None and im.notes == [] and im.format == "PNG"
  raw = np.asarray(Image.open(SAMPLES / "astronaut_8x8.png").convert("RGB"))
  assert im.image_key == zlib.crc32(raw.tobytes())
  np.testing.assert_array_equal(np.round(im.pixels * 255).astype(np.uint8), raw.transpose(2, 0, 1))


def test_image_key_depends_on_pixels_only(tmp_path):
  a = _rgb(8)
  k1 = input_images.load_image(_save(tmp_path, "a.png", a), G).image_key
  k2 = input_images.load_image(_save(tmp_path, "b.bmp", a), G).image_key  # same pixels, other format
  b = a.copy()
  b[0, 0, 0] ^= 1
  k3 = input_images.load_image(_save(tmp_path, "c.png", b), G).image_key
  assert k1 == k2 != k3


def test_grayscale_palette_16bit_are_converted_with_a_note(tmp_path):
  g = _rgb(8)[:, :, 0]
  im = input_images.load_image(_save(tmp_path, "g.png", g, "L"), G)
  assert im.pixels.shape == (3, 8, 8) and "grayscale" in im.notes[0]
  np.testing.assert_allclose(im.pixels[0], g / 255.0, atol=1e-6)
  np.testing.assert_array_equal(im.pixels[0], im.pixels[2])
  p = Image.fromarray(_rgb(8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  p.save(tmp_path / "p.png")
  im = input_images.load_image(tmp_path / "p.png", G)
  assert im.pixels.shape == (3, 8, 8) and any("palette" in n for n in im.notes)
  g16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
  Image.fromarray(g16).save(tmp_path / "g16.png")  # mode I;16
  im = input_images.load_image(tmp_path / "g16.png", G)
  np.testing.assert_allclose(im.pixels[1], np.round(g16 / 65535 * 255) / 255, atol=1e-6)


@pytest.mark.parametrize("background,value", [("black", 0.0), ("white", 1.0)])
def test_alpha_is_composited_and_said(tmp_path, background, value):
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[..., :3] = 200
  rgba[..., 3] = 255
  rgba[:4, :, 3] = 0          # top half transparent
  rgba[4:6, :, 3] = 128       # half transparent
  im = input_images.load_image(_save(tmp_path, "a.png", rgba, "RGBA"), G, background=background)
  assert any(f"composited on {background}" in n for n in im.notes)
  np.testing.assert_allclose(im.pixels[:, :4], value, atol=1e-6)
  np.testing.assert_allclose(im.pixels[:, 6:], 200 / 255, atol=1e-6)
  mid = (200 * 128 + 255 * value * 127) / 255
  np.testing.assert_allclose(im.pixels[:, 4:6], np.round(mid) / 255, atol=1e-6)


@pytest.mark.parametrize("name,content,words", [
    ("empty.png", b"", "empty file"),
    ("text.png", b"this is not an image\n" * 10, "not an image"),
    ("corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "image"),
])
def test_bad_files_get_a_clear_error_naming_the_file(tmp_path, name, content, words):
  p = tmp_path / name
  p.write_bytes(content)
  with pytest.raises(input_images.InputError) as e:
    input_images.load_image(p, G)
  assert str(p) in str(e.value) and words in str(e.value)


def test_truncated_png(tmp_path):
  data = (tmp_path / "x.png")
  Image.fromarray(_rgb(16)).save(data)
  b = data.read_bytes()
  data.write_bytes(b[: len(b) // 2])
  with pytest.raises(input_images.InputError, match="corrupt or truncated"):
    input_images.load_image(data, G)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
  side = 30000  # 900 M pixels claimed by a ~100-byte file
  ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
  png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
         + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b""))
  p = tmp_path / "bomb.png"
  p.write_bytes(png)
  with pytest.raises(input_images.InputError, match="decompression bomb") as e:
    input_images.load_image(p, G)
  assert str(p) in str(e.value)


def test_bomb_warning_range_is_refused_too(tmp_path, monkeypatch):
  monkeypatch.setattr(image_files, "MAX_IMAGE_PIXELS", 100)  # 12x12 = 144 > 100
  p = _save(tmp_path, "w.png", _rgb(12))
  with pytest.raises(input_images.InputError, match="decompression bomb"):
    input_images.load_image(p, G)


def test_larger_than_generator_is_refused(tmp_path):
  p = _save(tmp_path, "big.png", _rgb(128))
  with pytest.raises(input_images.InputError, match="larger than the generator"):
    input_images.load_image(p, G, fit="resize")


def test_odd_and_non_square_sizes(tmp_path):
  odd = _save(tmp_path, "odd.png", _rgb(12))
  with pytest.raises(input_images.InputError) as e:
    input_images.load_image(odd, G)
  assert "valid input sizes (square): 64, 32, 16, 8, 4, 2, 1" in str(e.value)
  assert "--fit=resize" in str(e.value) and str(odd) in str(e.value)
  rect = _save(tmp_path, "rect.png", _rgb(6, 8))
  with pytest.raises(input_images.InputError, match="not square"):
    input_images.load_image(rect, G)


def test_fit_resize(tmp_path):
  im = input_images.load_image(_save(tmp_path, "odd.png", _rgb(12)), G, fit="resize")
  assert im.size == 16 and im.mask is None and im.resized_from == (12, 12)  # tie 8/16: larger
  im = input_images.load_image(_save(tmp_path, "s.png", _rgb(10)), G, fit="resize")
  assert im.size == 8
  im = input_images.load_image(_save(tmp_path, "r.png", _rgb(6, 9)), G, fit="resize")
  assert im.size == 8 and "aspect ratio changed" in im.notes[-1]


def test_fit_pad_masks_the_padding(tmp_path):
  a = _rgb(6, 9)  # 6 high, 9 wide -> 16x16
  im = input_images.load_image(_save(tmp_path, "r.png", a), G, fit="pad")
  assert im.size == 16 and im.padding == (3, 5, 4, 5)
  assert im.mask.shape == (1, 16, 16) and im.mask.sum() == 54
  np.testing.assert_array_equal(im.mask[0, 5:11, 3:12], 1.0)
  np.testing.assert_allclose(im.pixels[:, 5:11, 3:12], a.transpose(2, 0, 1) / 255.0, atol=1e-6)
  ok = input_images.load_image(_save(tmp_path, "ok.png", _rgb(8)), G, fit="pad")
  assert ok.mask is None and ok.padding is None  # already valid: untouched


def test_list_inputs_and_unique_stems(tmp_path):
  _save(tmp_path, "a.png", _rgb(8))
  _save(tmp_path, "a.jpg", _rgb(8))
  (tmp_path / "notes.txt").write_text("hi")
  (tmp_path / ".hidden.png").write_bytes(b"")
  (tmp_path / "sub").mkdir()
  files, skipped = input_images.list_inputs(tmp_path)
  assert [f.name for f in files] == ["a.jpg", "a.png"]
  assert [f.name for f in skipped] == ["notes.txt"]
  assert input_images.unique_stems(files) == ["a_jpg", "a_png"]
  assert input_images.list_inputs(tmp_path / "a.png") == ([tmp_path / "a.png"], [])
  with pytest.raises(FileNotFoundError, match="no such file"):
    input_images.list_inputs(tmp_path / "missing")


def test_folder_files_is_the_one_listing(tmp_path):
  """`folder_files` lists inputs, photos to align and masks: sorted, hidden entries and
  sub-folders left out, what cannot be read (a FIFO) skipped, never opened."""
  import os
  for name in ("b.npy", "a.png", "c.txt", ".h.png"):
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "d").mkdir()
  os.mkfifo(tmp_path / "f.png")
  files, skipped = input_images.folder_files(tmp_path, {".png", ".npy"})
  assert [f.name for f in files] == ["a.png", "b.npy"]
  assert [f.name for f in skipped] == ["c.txt", "f.png"]
  assert input_images.skip_reason(tmp_path / "f.png") == "a named pipe (FIFO)"
  assert input_images.list_inputs(tmp_path)[0] == [tmp_path / "a.png"]


def test_mask_files_match_inputs_by_stem(tmp_path):
  """--mask FOLDER: the file with each input's stem (job layer); --mask FILE: every input's."""
  from pulse_jax.forward.mask import MaskError
  from pulse_jax.job.inputs import mask_files
  ins, ms = tmp_path / "in", tmp_path / "m"
  ins.mkdir()
  ms.mkdir()
  a, b, c = (_save(ins, n, _rgb(8)) for n in ("a.png", "b.png", "c.png"))
  _save(ms, "a.png", _rgb(8))
  np.save(ms / "b.npy", np.ones((8, 8)))
  _save(ms, "b.png", _rgb(8))
  found, errors = mask_files([a, b, c], ms)
  assert found == {"a": ms / "a.png"}
  assert isinstance(errors["b"], MaskError) and "several masks" in str(errors["b"])
  assert "no mask for input" in str(errors["c"])
  assert mask_files([a, b], ms / "a.png") == ({"a": ms / "a.png", "b": ms / "a.png"}, {})
  assert mask_files([a], ins)[1]["a"].args[0].startswith(f"--mask {ins}: no mask")  # not itself
  with pytest.raises(FileNotFoundError, match="--mask: no such file"):
    mask_files([a], tmp_path / "none")


def test_to_uint8_rounds_half_to_even_and_clamps():
  """The one float -> 8-bit conversion: clamp, x 255, round half to even, in `dtype`."""
  x = np.array([-0.5, 0.0, 0.5, 1.5 / 255, 2.5 / 255, 1.0, 7.0], np.float64)
  np.testing.assert_array_equal(image_files.to_uint8(x, dtype=np.float64),
                                [0, 0, 128, 2, 2, 255, 255])
  chw = np.random.default_rng(0).uniform(-0.1, 1.1, (2, 3, 4, 5)).astype(np.float32)
  out = image_files.to_uint8(chw, channels_first=True)
  assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(
      out, np.round(np.moveaxis(np.clip(chw, 0, 1), 1, -1) * np.float32(255)).astype(np.uint8))


# ----------------------------------------------------------------------------- hostile files

def _png_header_only(w, h):
  """A ~70-byte PNG whose IHDR claims w x h RGB pixels (the data would not fill it)."""
  ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
          + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b""))


def _eps_bytes(binary=False):
  """A real 8x8 EPS (Pillow writes EPS without Ghostscript); `binary`: the DOS EPS wrapper."""
  b = io.BytesIO()
  Image.new("RGB", (8, 8), (200, 30, 10)).save(b, "EPS")
  ps = b.getvalue()
  if not binary:
    return ps
  return struct.pack("<IIIIIIIH", 0xC6D3D0C5, 30, len(ps), 0, 0, 0, 0, 0xFFFF) + ps


def _trap_other_decoders(monkeypatch):
  """Every decoder outside the allow-list (EPS's Ghostscript included) records and raises."""
  calls = []

  def refuse(name):
    def factory(*args, **kwargs):
      calls.append(name)
      raise RuntimeError(f"the {name} decoder was asked to open a file")
    return factory

  monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", refuse("EPS._open"))
  monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse("Ghostscript"))
  Image.init()
  for fmt in Image.ID:
    if fmt not in image_files.ALLOWED_FORMATS:
      monkeypatch.setitem(Image.OPEN, fmt, (refuse(fmt), Image.OPEN[fmt][1]))
  return calls


@pytest.fixture
def no_other_decoder(monkeypatch):
  return _trap_other_decoders(monkeypatch)


@pytest.mark.parametrize("binary", [False, True])
def test_eps_named_png_is_refused_without_ghostscript(tmp_path, monkeypatch, binary):
  p = tmp_path / "face.png"
  p.write_bytes(_eps_bytes(binary))
  calls = []
  monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open",
                      lambda self: calls.append("EPS._open") or 1 / 0)
  monkeypatch.setattr(EpsImagePlugin, "Ghostscript",
                      lambda *a, **k: calls.append("Ghostscript") or 1 / 0)
  with pytest.raises(ZeroDivisionError):   # control: Pillow's default open does reach EPS
    Image.open(p)
  assert calls == ["EPS._open"]
  calls.clear()
  with pytest.raises(input_images.InputError) as e:
    input_images.load_image(p, G)
  msg = str(e.value)
  assert str(p) in msg and "EPS/PostScript" in msg and "refused" in msg
  assert "convert it to PNG or JPEG" in msg and "PNG, JPEG, WEBP, BMP, TIFF, GIF" in msg
  assert calls == []


def _psd_bytes(a):
  """A minimal raw RGB Photoshop file (Pillow reads PSD but cannot write it)."""
  h, w, c = a.shape
  return (b"8BPS" + struct.pack(">H6xHIIHH", 1, c, h, w, 8, 3) + struct.pack(">IIIH", 0, 0, 0, 0)
          + a.transpose(2, 0, 1).tobytes())


@pytest.mark.parametrize("fmt,named", [
    ("PSD", "PSD"), ("PCX", "PCX"), ("TGA", None), ("ICO", "ICO"), ("PPM", "PPM"),
    ("SGI", "SGI"), ("QOI", "QOI"), ("DDS", "DDS")])
def test_other_pillow_formats_are_refused(tmp_path, monkeypatch, fmt, named):
  a = _rgb(8)
  if fmt == "PSD":
    data = _psd_bytes(a)
  else:
    b = io.BytesIO()
    Image.fromarray(a).save(b, fmt)
    data = b.getvalue()
  assert Image.open(io.BytesIO(data), formats=[fmt]).size == (8, 8)  # Pillow could read it
  p = tmp_path / "face.png"
  p.write_bytes(data)
  no_other_decoder = _trap_other_decoders(monkeypatch)
  with pytest.raises(input_images.InputError) as e:
    input_images.load_image(p, G)
  msg = str(e.value)
  assert str(p) in msg and "convert it to PNG or JPEG" in msg
  assert "only PNG, JPEG, WEBP, BMP, TIFF, GIF are read" in msg
  if named:
    assert f"say {named}" in msg
  assert no_other_decoder == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_allowed_formats_still_load(tmp_path, no_other_decoder, fmt):
  if fmt == "WEBP" and not features.check("webp"):
    pytest.skip("this Pillow has no WebP support")
  a = _rgb(8)
  p = tmp_path / "x.img"       # the content decides, not the name
  Image.fromarray(a).save(p, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
  im = input_images.load_image(p, G)
  assert im.format == fmt and im.pixels.shape == (3, 8, 8)
  if fmt in ("PNG", "BMP", "TIFF", "WEBP"):   # lossless
    np.testing.assert_array_equal(np.round(im.pixels * 255).astype(np.uint8),
                                  a.transpose(2, 0, 1))
  assert no_other_decoder == []


@pytest.mark.parametrize("side", [9000, 30000])  # 81 MP: under Pillow's own limits; 900 MP
def test_huge_header_refused_before_decoding(tmp_path, monkeypatch, side):
  p = tmp_path / "huge.png"
  p.write_bytes(_png_header_only(side, side))
  monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: 1 / 0)  # never decode
  t0 = time.perf_counter()
  with pytest.raises(input_images.InputError) as e:
    input_images.load_image(p, G)
  assert time.perf_counter() - t0 < 1.0
  msg = str(e.value)
  assert str(p) in msg and "decompression bomb" in msg
  assert f"{image_files.MAX_IMAGE_PIXELS:,}" in msg and "MAX_IMAGE_PIXELS" in msg


def test_sniff_format():
  assert image_files.sniff_format(b"%!PS-Adobe-3.0 EPSF-3.0") == "EPS/PostScript"
  assert image_files.sniff_format(b"\xc5\xd0\xd3\xc6" + bytes(12)) == "EPS/PostScript"
  assert image_files.sniff_format(b"%PDF-1.7\n") == "PDF"
  assert image_files.sniff_format(b"\x89PNG\r\n\x1a\n" + bytes(8)) == "PNG"
  assert image_files.sniff_format(b"hello") is None
