"""Search inputs: listing files, reading PNG/JPEG/WebP/BMP/TIFF/GIF, fitting them to the generator.

`load_image(path, generator_size, ...)` returns an `InputImage` (the target [C, h, w] float32 in
[0, 1], an optional loss mask [1, h, w] that is 0 on padding, the notes on what was done to the
picture, and an `image_key` = crc32 of its pixel bytes), or raises `InputError` with a message
that names the file. Nothing here imports JAX.

Rules (the generator size G must be an integer multiple of the input size h):
  - grayscale, palette and alpha images are converted to RGB, with a note (alpha is composited
    on black or white, `background`); the EXIF orientation is applied;
  - only `ALLOWED_FORMATS` are decoded, whatever the file's name (an EPS named .png is refused
    without reaching Ghostscript; `pulse_jax.io.images`);
  - an input larger than G, an empty, corrupt or non-image file, or a decompression bomb
    (more than `MAX_IMAGE_PIXELS` pixels, refused before decoding) is rejected;
  - a square input whose side divides G is used as is; otherwise `fit` decides: 'error' (the
    default) rejects it naming the valid sizes, 'resize' resamples it (bicubic) to the nearest
    valid square size, 'pad' centres it on the smallest valid square that holds it and masks
    the padding out of the loss.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import stat
import unicodedata
import zlib
from typing import Collection, Sequence

import numpy as np
from PIL import Image

from pulse_jax.io import images as image_files

FITS = ("error", "resize", "pad")
BACKGROUNDS = ("black", "white")
PAD_VALUE = 0.5  # grey on the padding (excluded from the loss; only visible in input.png)


class InputError(ValueError):
  """A problem with one input file; the message names the file."""


@dataclasses.dataclass
class InputImage:
  """One search target.

  pixels: [C, h, w] float32 in [0, 1] (after conversion and fitting); mask: [1, h, w] float32
  (1 on the picture, 0 on padding) or None; image_key: crc32 of the uint8 pixels (before
  fitting); stem: the output folder name (unique among the inputs of a run).
  """
  path: str
  stem: str
  pixels: np.ndarray
  mask: np.ndarray | None
  image_key: int
  original_size: tuple[int, int]      # (width, height) as stored, after the EXIF orientation
  original_mode: str
  format: str | None
  notes: list[str] = dataclasses.field(default_factory=list)
  padding: tuple[int, int, int, int] | None = None   # (left, top, right, bottom) pixels
  resized_from: tuple[int, int] | None = None

  @property
  def size(self) -> int:
    return int(self.pixels.shape[-1])

  def describe(self) -> dict:
    return {"path": self.path, "stem": self.stem, "format": self.format,
            "original_size": list(self.original_size), "original_mode": self.original_mode,
            "size": self.size, "image_key": self.image_key, "notes": list(self.notes),
            "padding": list(self.padding) if self.padding else None,
            "resized_from": list(self.resized_from) if self.resized_from else None}


def valid_sizes(generator_size: int) -> list[int]:
  """Input sizes h with generator_size / h an integer, largest first."""
  return [generator_size // f for f in range(1, generator_size + 1) if generator_size % f == 0]


def image_extensions() -> set[str]:
  return {e.lower() for e in Image.registered_extensions()}


def list_inputs(path: str | os.PathLike) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  """(inputs, skipped): a file as given, or a folder's files with an image extension, sorted.

  In a folder, hidden entries (a name starting with '.') and sub-folders are ignored; the other
  entries that are not inputs (no image extension; a named pipe, device or socket; a symbolic
  link that is broken or points to anything but a readable file) are returned in `skipped`,
  never opened (opening a FIFO blocks), so that they can be listed with `skip_reason`. A file
  given by name is an input when it is a regular file (or a link to one); FileNotFoundError
  (the message starts with '--input:') when it does not exist, `NotAnInputFile` (a
  FileNotFoundError too) when it is a pipe, device or socket.
  """
  p = pathlib.Path(path)
  if p.is_dir():
    return folder_files(p, image_extensions())
  why = _not_a_file(p)
  if why is None or why == "folder":  # a folder that vanished, or an input file
    if p.exists():
      return [p], []
  elif why != "missing":
    raise NotAnInputFile(f"--input: {p} is {why}, not an image file")
  raise FileNotFoundError(f"--input: no such file or folder: {p}")


def folder_files(folder: str | os.PathLike, extensions: Collection[str]
                 ) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  """(files, skipped): the one listing of a folder of user files (inputs, photos to align,
  masks). Entries sorted; hidden ones (a name starting with '.') and sub-folders left out.
  files: regular files (or links to one) that can be read, whose lower-cased suffix is in
  `extensions` (e.g. {'.png', '.npy'}); skipped: the other entries, never opened (opening a
  FIFO blocks); `skip_reason` says why."""
  files, skipped = [], []
  for f in sorted(f for f in pathlib.Path(folder).iterdir() if not f.name.startswith(".")):
    why = _not_a_file(f)
    if why == "folder":
      continue
    if why is None and f.suffix.lower() in extensions:
      files.append(f)
    else:
      skipped.append(f)
  return files, skipped


class NotAnInputFile(FileNotFoundError):
  """--input names something that exists but cannot be an input (a pipe, device, socket)."""


def _not_a_file(p: pathlib.Path) -> str | None:
  """None for a regular file (or a link to one) that can be read; else what it is, without
  opening it: 'missing', 'folder', or a phrase ('a named pipe (FIFO)', 'a broken symbolic
  link', ...)."""
  try:
    lst = os.lstat(p)
  except FileNotFoundError:
    return "missing"
  except OSError as e:
    return f"not readable ({e.strerror or type(e).__name__})"
  link = stat.S_ISLNK(lst.st_mode)
  try:
    st = os.stat(p) if link else lst
  except OSError as e:
    return ("a broken symbolic link" if isinstance(e, FileNotFoundError) else
            f"a symbolic link that cannot be followed ({e.strerror or type(e).__name__})")
  mode = st.st_mode
  kind = ("folder" if stat.S_ISDIR(mode) else None if stat.S_ISREG(mode) else
          "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
          "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
          "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
  if kind is None and not os.access(p, os.R_OK):
    kind = "not readable (permission denied)"
  if kind not in (None, "folder") and link:
    kind = f"a symbolic link to {kind}" if kind.startswith("a ") else f"a symbolic link, {kind}"
  return kind


def skip_reason(path: str | os.PathLike) -> str:
  """Why `list_inputs` skipped `path` (for the log and the summary), checked again now."""
  why = _not_a_file(pathlib.Path(path))
  if why is None:
    return "not an image file extension"
  return "no longer there" if why == "missing" else why


# ----------------------------------------------------------------------------- output names

MAX_STEM_BYTES = 120     # UTF-8 bytes of an output folder name (a file name may have 255)
# Names a per-input folder cannot take: the run's own files in OUTPUT_DIR (compared without
# case, for case-insensitive file systems).
RESERVED_STEMS = ("summary.json", "index.html", "aligned")


def is_safe_stem(stem) -> bool:
  """True when `stem` can be an output folder name as it is: one plain path component (not
  empty, not '.' or '..', no '/' or '\\', no NUL or other control character, not starting with
  '.' (the run's own hidden files) or ending in '.' or ' ', not a reserved name, valid UTF-8,
  at most `MAX_STEM_BYTES` bytes)."""
  if not isinstance(stem, str) or not stem or stem.startswith(".") or stem[-1] in ". ":
    return False
  if any(c in "/\\" or unicodedata.category(c) in ("Cc", "Cs") for c in stem):
    return False
  try:
    n = len(stem.encode("utf-8"))
  except UnicodeEncodeError:
    return False
  return n <= MAX_STEM_BYTES and stem.casefold() not in RESERVED_STEMS


def safe_stem(stem: str) -> str:
  """`stem` when `is_safe_stem`, else a safe name derived from it, the same every time: the
  usable characters (others as '_'), cut to length, then '_' and 8 hex digits of its sha1;
  'input_<8 hex>' when nothing usable is left (e.g. for '..')."""
  if is_safe_stem(stem):
    return stem
  raw = stem.encode("utf-8", "surrogateescape")
  tag = hashlib.sha1(raw).hexdigest()[:8]
  keep = "".join("_" if (c in "/\\" or unicodedata.category(c) in ("Cc", "Cs")) else c
                 for c in stem).strip(". _")
  keep = keep.encode("utf-8", "ignore")[:MAX_STEM_BYTES - 9].decode("utf-8", "ignore").rstrip(". ")
  return f"{keep}_{tag}" if keep else f"input_{tag}"


def stem_note(path: str | os.PathLike, stem: str) -> str | None:
  """The note for an input whose file name could not be its output folder name, else None."""
  raw = pathlib.Path(path).stem
  if is_safe_stem(raw) or raw == stem:
    return None
  return f"name {raw!r} cannot be a folder name; results in {stem}/"


def unique_stems(paths: Sequence[os.PathLike]) -> list[str]:
  """Output folder names, the same for the same list of paths: the file stem (`safe_stem`), or
  STEM_EXT when two inputs share a stem; '_1', '_2', ... added while a name is taken (names
  that differ only in case count as taken: case-insensitive file systems)."""
  stems = [safe_stem(pathlib.Path(p).stem) for p in paths]
  counts: dict[str, int] = {}
  for s in stems:
    counts[s] = counts.get(s, 0) + 1
  out, used = [], set()
  for p, s in zip(paths, stems):
    ext = pathlib.Path(p).suffix.lstrip(".").lower()
    stem = s if counts[s] == 1 or not ext else safe_stem(f"{s}_{ext}")
    base, i = stem, 1
    while stem.casefold() in used:
      stem, i = safe_stem(f"{base}_{i}"), i + 1
    used.add(stem.casefold())
    out.append(stem)
  return out


def _open(path: pathlib.Path) -> Image.Image:
  """Decodes `path` (allowed formats only, pixel cap checked first, EXIF applied); InputError.
  Anything but a regular file (a pipe, a device: opening it could block) is refused unopened."""
  why = _not_a_file(path)
  if why == "missing":
    raise InputError(f"{path}: no such file")
  if why is not None:
    raise InputError(f"{path}: {why}, not an image file")
  try:
    return image_files.read_image(path)[0]
  except image_files.ImageFileError as e:
    raise InputError(str(e)) from None


def to_rgb(im: Image.Image, background: str = "black") -> tuple[np.ndarray, list[str]]:
  """Any Pillow image -> ([h, w, 3] uint8, notes on the conversion)."""
  if background not in BACKGROUNDS:
    raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}.")
  notes = []
  mode = im.mode
  if mode == "P":
    has_alpha = "transparency" in im.info or im.palette.mode == "RGBA"
    notes.append("palette image converted to RGB")
    im = im.convert("RGBA" if has_alpha else "RGB")
    mode = im.mode
  if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
    a = np.asarray(im, np.float64)
    scale = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
    if mode == "F" and a.max(initial=0) <= 1.0:
      scale = 1.0
    g = np.clip(np.round(a / scale * 255.0), 0, 255).astype(np.uint8)
    notes.append(f"grayscale image (mode {mode}) converted to RGB")
    return np.repeat(g[:, :, None], 3, axis=2), notes
  if mode in ("1", "L"):
    notes.append(f"grayscale image (mode {mode}) converted to RGB")
    return np.asarray(im.convert("RGB")), notes
  if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
    rgba = np.asarray(im.convert("RGBA"), np.float64)
    alpha = rgba[:, :, 3:] / 255.0
    bg = 255.0 if background == "white" else 0.0
    rgb = np.clip(np.round(rgba[:, :, :3] * alpha + bg * (1.0 - alpha)), 0, 255).astype(np.uint8)
    if alpha.min() < 1.0:
      notes.append(f"alpha channel composited on {background} (--alpha_background)")
    else:
      notes.append("fully opaque alpha channel dropped")
    if mode in ("LA", "La"):
      notes.append("grayscale image converted to RGB")
    return rgb, notes
  if mode != "RGB":
    notes.append(f"{mode} image converted to RGB")
    im = im.convert("RGB")
  return np.asarray(im), notes


def image_key(pixels_u8: np.ndarray) -> int:
  """crc32 of the uint8 pixel bytes: the per-input part of every restart's random key."""
  return zlib.crc32(np.ascontiguousarray(pixels_u8, np.uint8).tobytes()) & 0xFFFFFFFF


def _nearest_valid(side: int, sizes: Sequence[int]) -> int:
  """The valid size closest to `side` (ties: the larger one)."""
  return min(sizes, key=lambda s: (abs(s - side), -s))


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
  im = Image.fromarray(rgb, "RGB").resize((size, size), Image.Resampling.BICUBIC)
  return np.asarray(im)


def load_image(path: str | os.PathLike, generator_size: int, *, fit: str = "error",
               background: str = "black", stem: str | None = None,
               channels: int = 3) -> InputImage:
  """Reads one input and fits it to a generator of size `generator_size`. Raises InputError."""
  if fit not in FITS:
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}.")
  path = pathlib.Path(path)
  im = _open(path)
  fmt, mode, (w, h) = im.format, im.mode, im.size
  sizes = valid_sizes(generator_size)
  if w > generator_size or h > generator_size:
    raise InputError(
        f"{path}: {w}x{h} is larger than the generator's {generator_size}x{generator_size} "
        "output; inputs are the low-resolution images to up-sample (valid sizes: "
        f"{', '.join(map(str, sizes))}). Down-sample the photo first, e.g. "
        "`python -m pulse_jax.align`, or search it with --align.")
  rgb, notes = to_rgb(im, background)
  key = image_key(rgb)
  mask = None
  padding = resized_from = None
  if w == h and w in sizes:
    pass
  elif fit == "error":
    what = f"{w}x{h} is not square" if w != h else f"{w}x{h} does not divide"
    raise InputError(
        f"{path}: {what} the generator size {generator_size} by an integer factor; valid input "
        f"sizes (square): {', '.join(map(str, sizes))}. Resize or crop it, or pass --fit=resize "
        "(bicubic to the nearest valid size) or --fit=pad (pad to a valid square; padding "
        "excluded from the loss).")
  elif fit == "resize":
    side = _nearest_valid(max(w, h), sizes)
    rgb = _resize(rgb, side)
    resized_from = (w, h)
    notes.append(f"resized {w}x{h} -> {side}x{side} (bicubic, --fit=resize)"
                 + ("; aspect ratio changed" if w != h else ""))
  else:  # pad
    side = min(s for s in sizes if s >= max(w, h))
    left, top = (side - w) // 2, (side - h) // 2
    padding = (left, top, side - w - left, side - h - top)
    canvas = np.full((side, side, 3), int(round(PAD_VALUE * 255)), np.uint8)
    canvas[top:top + h, left:left + w] = rgb
    rgb = canvas
    mask = np.zeros((1, side, side), np.float32)
    mask[:, top:top + h, left:left + w] = 1.0
    notes.append(f"padded {w}x{h} -> {side}x{side} (left, top, right, bottom = {padding}; "
                 "--fit=pad, padding excluded from the loss)")
  pixels = rgb.astype(np.float32).transpose(2, 0, 1) / 255.0
  if channels == 1:
    pixels = pixels.mean(axis=0, keepdims=True)
    notes.append("converted to one channel for a grayscale generator")
  stem = stem or safe_stem(path.stem)
  note = stem_note(path, stem)
  if note:
    notes.append(note)
  return InputImage(path=str(path), stem=stem, pixels=pixels, mask=mask,
                    image_key=key, original_size=(w, h), original_mode=mode, format=fmt,
                    notes=notes, padding=padding, resized_from=resized_from)
