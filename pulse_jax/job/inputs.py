"""The inputs of a job: listed (--input), aligned (--align), loaded and fitted to the generator.

Each input is an `Item` that carries its file, its loaded image or its error, and its outcome.
In-memory pictures (`pulse_jax.upsample` with a PIL image or an array) go through the same
loading as files (`picture_items`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import tempfile

import numpy as np

from pulse_jax.io import input_images
from pulse_jax.io.images import to_uint8
from pulse_jax.job.errors import UsageError

# Inside the built-in model's range (docs/presets.md): both within eps with its preset.
SAMPLES = ("astronaut_8x8.png", "hopper_4x4.png")


def sample_paths() -> list[pathlib.Path]:
  """The shipped sample inputs (used when --input is not given)."""
  import pulse_jax.samples
  root = pathlib.Path(pulse_jax.samples.__file__).parent
  return [root / name for name in SAMPLES]


@dataclasses.dataclass
class Item:
  """One input through the run: its file, its loaded image or its error, its outcome."""
  path: str
  stem: str
  image: input_images.InputImage | None = None
  status: str = "pending"      # within_eps | not_within_eps | failed | skipped
  message: str = ""
  best_l2: float | None = None
  init: dict | None = None
  kept: bool = False           # complete outputs of an earlier run with the same settings
  label: str | None = None     # how an in-memory picture is named (its `path` is a temporary)
  mask_info: dict | None = None  # --mask: {'file', 'sha256', 'known_pixels', 'pixels'} (reports)

  def fail(self, message: str) -> None:
    self.status, self.message = "failed", message

  def keep(self, report: dict) -> None:
    """Takes the outcome from the report of an earlier run's complete outputs."""
    self.kept = True
    self.status = report.get("status", "not_within_eps")
    self.best_l2 = (report.get("best") or {}).get("l2")
    if self.status != "within_eps":
      self.message = (f"not within eps: closest L2 {report.get('closest_l2') or float('nan'):.4g}"
                      f" > eps {report.get('eps')}")

  def to_dict(self, output_dir: str | None) -> dict:
    d = {"input": self.path, "stem": self.stem, "status": self.status, "message": self.message,
         "best_l2": self.best_l2}
    if self.status in ("within_eps", "not_within_eps"):
      d["output_dir"] = os.path.join(output_dir, self.stem) if output_dir else None
      d["kept"] = self.kept
    return d


def collect(o, generator, *, files=None, log, warn, aligned_dir: str | None) -> tuple[list, list]:
  """(items, skipped files): the inputs listed (`files`, default --input), aligned into
  `aligned_dir` with --align, and loaded; each bad input is reported at once (and again in the
  summary). Items already loaded (in-memory pictures) are kept as they are."""
  skipped = []
  if files is None:
    if o.input is None:
      files = sample_paths()
      log(f"no --input: searching the shipped samples {', '.join(str(p) for p in files)}")
    else:
      try:
        files, skipped = input_images.list_inputs(o.input)
      except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    for s in skipped:
      log(f"skipping {s} ({input_images.skip_reason(s)})")
    if not files:
      raise UsageError(f"--input: no image files found in {o.input}")
    items = [Item(str(f), stem) for f, stem in zip(files, input_images.unique_stems(files))]
  else:
    items = list(files)
  if o.align:
    items = align_items(o, items, generator.resolution, aligned_dir, log, warn)
  for it in items:
    if it.status == "failed" or it.image is not None:
      continue
    try:
      check_input_header(it.path, generator.resolution)
      # --grayscale: RGB first, so that the target is the BT.601 luminance (`apply_forward`).
      it.image = input_images.load_image(it.path, generator.resolution, fit=o.fit,
                                       background=o.alpha_background, stem=it.stem,
                                       channels=3 if o.grayscale else generator.num_channels)
      if not o.grayscale and looks_gray(it.image.pixels):
        it.image.notes.append(GRAY_NOTE)
      for n in it.image.notes:
        log(f"{it.path}: note: {n}")
    except input_images.InputError as e:
      it.fail(str(e))
  return items, skipped


GRAY_NOTE = ("looks gray (R = G = B in every pixel); pass --grayscale (grayscale=True) to "
             "match only its luminance and let the search choose the colours")


def looks_gray(pixels: np.ndarray) -> bool:
  """Whether a target ``[C, h, w]`` of 3 channels has R = G = B in every pixel."""
  return pixels.shape[0] == 3 and bool(np.array_equal(pixels[0], pixels[1])
                                       and np.array_equal(pixels[0], pixels[2]))


def check_input_header(path: str, generator_size: int) -> None:
  """InputError, from the file's header (before any pixel is decoded), for an input larger
  than the generator's output: no --fit uses one (inputs are the low-resolution images, at
  most the generator's size; `inputs.load_image` refuses them after decoding). Files whose
  header cannot be read are left to `load_image`, which names the problem."""
  from pulse_jax.io import images as image_files
  try:
    with image_files.open_image(path) as im:
      w, h = im.size
  except (image_files.ImageFileError, OSError):
    return
  if w > generator_size or h > generator_size:
    sizes = ", ".join(map(str, input_images.valid_sizes(generator_size)))
    raise input_images.InputError(
        f"{path}: {w}x{h} (from its header; not decoded) is larger than the generator's "
        f"{generator_size}x{generator_size} output; inputs are the low-resolution images to "
        f"up-sample (valid sizes: {sizes}), and no --fit uses a larger one. Down-sample the "
        "photo first, e.g. `python -m pulse_jax.align`, or search it with --align.")


# ----------------------------------------------------------------------------- forward model

def apply_forward(o, items: list[Item], forward, log) -> None:
  """Fits the loaded inputs to the forward model (`pulse_jax.forward`; docs/forward.md).

  --grayscale: the target is one channel (a gray input kept exactly, a colour one converted
  to luminance, with a note). --mask: each input's known pixels (`forward.mask`) become its
  loss mask (times --fit=pad's padding mask); a missing, unreadable or wrong-size mask, or one
  without a known pixel, fails that input only (the others are searched). UsageError for
  --mask with --align (masks have the size of the input files, not of the aligned crops).
  """
  loaded = [it for it in items if it.image is not None and it.status != "failed"]
  if forward.grayscale:
    for it in loaded:
      _gray_target(it, forward, log)
  if o.mask:
    if o.align:
      raise UsageError("--mask: cannot be combined with --align (a mask has the size of its "
                       "input file; --align searches new crops of it)")
    _attach_masks(o.mask, loaded, log)


def _gray_target(it: Item, forward, log) -> None:
  image = it.image
  was_gray = image.pixels.shape[0] == 1 or all(
      np.array_equal(image.pixels[0], image.pixels[c]) for c in range(1, image.pixels.shape[0]))
  image.pixels, notes = forward.prepare_target(image.pixels)
  if was_gray:  # searched as the one channel it has, not as RGB
    image.notes = [n for n in image.notes if not (n.startswith("grayscale image")
                                                  and n.endswith("converted to RGB"))]
    notes = ["gray input searched as one channel (--grayscale)"]
  image.notes += notes
  for n in notes:
    log(f"{it.path}: note: {n}")


def mask_files(inputs: list[os.PathLike], mask_arg: str | os.PathLike
               ) -> tuple[dict[str, pathlib.Path], dict[str, Exception]]:
  """--mask: ({stem: mask file}, {stem: MaskError}) for each input, keyed like
  `unique_stems`.

  mask_arg: a file (every input's mask) or a folder (the file with the input's stem and an
  image or .npy extension, listed by `folder_files`; the input itself is never its own mask).
  Raises FileNotFoundError when mask_arg does not exist.
  """
  from pulse_jax.forward.mask import MaskError
  from pulse_jax.io.npy_files import listing
  arg = pathlib.Path(mask_arg)
  if not arg.exists():
    raise FileNotFoundError(f"--mask: no such file or folder: {arg}")
  stems = input_images.unique_stems(inputs)
  if not arg.is_dir():
    return {stem: arg for stem in stems}, {}
  by_stem: dict[str, list[pathlib.Path]] = {}
  for f in input_images.folder_files(arg, input_images.image_extensions() | {".npy"})[0]:
    by_stem.setdefault(f.stem, []).append(f)
  found: dict[str, pathlib.Path] = {}
  errors: dict[str, MaskError] = {}
  for inp, stem in zip(inputs, stems):
    inp = pathlib.Path(inp)
    cands = by_stem.get(inp.stem, [])
    if inp.exists():
      cands = [c for c in cands if not c.resolve() == inp.resolve()]
    if not cands:
      errors[stem] = MaskError(f"--mask {arg}: no mask for input {inp} (expected a file named "
                               f"{inp.stem}.png, .npy, ... in that folder).")
    elif len(cands) > 1:
      errors[stem] = MaskError(f"--mask {arg}: several masks for input {inp}: "
                               f"{listing(c.name for c in cands)}; keep one.")
    else:
      found[stem] = cands[0]
  return found, errors


def masks_for(inputs: list[os.PathLike], mask_arg: str | os.PathLike,
              sizes: dict[str, tuple[int, int]] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Exception]]:
  """({stem: [1, h, w] float32 mask}, {stem: MaskError}): `mask_files` then
  `pulse_jax.forward.mask.load_mask`.

  sizes: optional {stem: (width, height)} of the inputs, to check each mask's size.
  """
  from pulse_jax.forward.mask import MaskError, load_mask
  files, errors = mask_files(inputs, mask_arg)
  masks = {}
  for stem, path in files.items():
    try:
      masks[stem] = load_mask(path, None if sizes is None else sizes.get(stem))
    except MaskError as e:
      errors[stem] = e
  return masks, errors


def _attach_masks(mask_arg, items: list[Item], log) -> None:
  from pulse_jax.forward import mask as mask_lib
  paths = [it.path for it in items]
  try:
    files, errors = mask_files(paths, mask_arg)
  except FileNotFoundError as e:
    raise UsageError(str(e)) from None
  for it, key in zip(items, input_images.unique_stems(paths)):
    try:
      if key in errors:
        raise errors[key]
      file = files[key]
      known = mask_lib.load_mask(file, it.image.original_size)
      known, notes = mask_lib.fit_to_input(known, it.image, source=f"--mask {file}")
    except mask_lib.MaskError as e:
      it.fail(f"{it.path}: {e}")
      continue
    it.image.mask = known
    it.image.notes += notes
    it.mask_info = {"file": str(file), "sha256": hashlib.sha256(known.tobytes()).hexdigest(),
                    "known_pixels": int(known.sum()), "pixels": int(known.size)}
    for n in notes:
      log(f"{it.path}: note: {n}")


def report_bad(items: list[Item], log, warn) -> None:
  bad = [it for it in items if it.status == "failed"]
  for it in bad:
    warn(f"error: {it.message}")
  if bad:
    log(f"{len(bad)} of {len(items)} input(s) cannot be searched (listed above)"
        + ("; searching the others" if len(bad) < len(items) else ""))


# ----------------------------------------------------------------------------- in-memory pictures

def picture_items(sources: list, folder: str) -> list[Item]:
  """Items of `pulse_jax.upsample`'s inputs: a path (a file, or a folder: its image files),
  a PIL image, or an array [H, W], [H, W, C] or [C, H, W] (uint8, or float in [0, 1]).

  Pictures are written losslessly (PNG) into `folder` (a temporary one) and loaded from there
  like any file, so that they are searched exactly as the same picture in a file; their
  labels ('<array 0>', '<PIL image 1>') replace the temporary names in messages and reports.
  """
  entries = []  # (path or None, label or None, picture or None)
  for i, s in enumerate(sources):
    if isinstance(s, (str, os.PathLike)):
      p = pathlib.Path(s)
      if p.is_dir():
        found, _ = input_images.list_inputs(p)
        entries += [(f, None, None) for f in found]
      elif p.exists():
        entries.append((p, None, None))
      else:
        raise UsageError(f"--input: no such file or folder: {p}")
    else:
      kind = "PIL image" if hasattr(s, "getbands") else "array"
      entries.append((pathlib.Path(f"input_{i}.png"), f"<{kind} {i}>", s))
  if not entries:
    raise UsageError(f"--input: no image files found in {sources}")
  items = []
  for (path, label, picture), stem in zip(entries, input_images.unique_stems(
      [e[0] for e in entries])):
    if picture is None:
      items.append(Item(str(path), stem))
      continue
    tmp = os.path.join(folder, f"{stem}.png")
    to_pil_image(picture, label).save(tmp, format="PNG")
    items.append(Item(tmp, stem, label=label))
  return items


def to_pil_image(picture, label: str = "the picture"):
  """A PIL image as is; an array [H, W], [H, W, C] or [C, H, W] (C in 1, 3, 4; integers in
  0..255, or floats in [0, 1], rounded to 8 bits as an image file holds them) as a PIL image.
  InputError for anything else."""
  from PIL import Image
  if hasattr(picture, "getbands"):
    return picture
  a = _channels_last(np.asarray(picture))
  if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4))) or a.size == 0:
    raise input_images.InputError(f"{label}: an array of shape {a.shape} is not an image; "
                                "expected [H, W], [H, W, C] or [C, H, W] with C = 1, 3 or 4.")
  if a.dtype.kind in "iu" and a.dtype != np.uint8:
    if a.min() < 0 or a.max() > 255:
      raise input_images.InputError(f"{label}: integer pixels must be in 0..255 (got "
                                  f"{a.min()}..{a.max()}).")
    a = a.astype(np.uint8)
  elif a.dtype.kind == "f":
    f = a.astype(np.float64)
    if not (np.isfinite(f).all() and f.min() >= 0.0 and f.max() <= 1.0):
      raise input_images.InputError(f"{label}: a {a.dtype} array must hold values in [0, 1] "
                                  f"(got {np.nanmin(f):g}..{np.nanmax(f):g}); pass uint8 for "
                                  "0..255.")
    a = to_uint8(f, dtype=np.float64)   # in [0, 1] already: the clamp changes nothing
  elif a.dtype != np.uint8:
    raise input_images.InputError(f"{label}: arrays of {a.dtype} are not images; pass uint8, or "
                                "floats in [0, 1].")
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[:, :, 0]
  return Image.fromarray(a, "L" if a.ndim == 2 else {3: "RGB", 4: "RGBA"}[a.shape[-1]])


def _channels_last(a: np.ndarray) -> np.ndarray:
  """[C, H, W] -> [H, W, C]; [H, W, C] and [H, W] as they are. When both read as images
  (C = 1, 3 or 4 first and last), the square one wins, [H, W, C] on a tie."""
  if a.ndim != 3 or a.shape[0] not in (1, 3, 4):
    return a
  if a.shape[-1] not in (1, 3, 4) or (a.shape[1] == a.shape[2] and a.shape[0] != a.shape[1]):
    return np.moveaxis(a, 0, -1)
  return a


def relabel(items: list[Item]) -> None:
  """In-memory pictures: their labels for the temporary names, in paths and messages."""
  for it in items:
    if it.label is None:
      continue
    it.message = it.message.replace(it.path, it.label)
    if it.image is not None:
      it.image.path = it.label
    it.path = it.label


# ----------------------------------------------------------------------------- --align

def align_items(o, items: list[Item], generator_size: int, out_dir: str, log,
                warn) -> list[Item]:
  """--align: each raw photo -> its aligned N x N crops under `out_dir` (OUTPUT_DIR/aligned/).

  The crops are made in a temporary folder and moved into place: a crop that exists with the
  same bytes (the same command run again) is fine, one with other bytes needs --overwrite.
  """
  try:
    from pulse_jax.job import align
    from pulse_jax.io.face_landmarks import AlignDependencyError, FaceLandmarker
  except ImportError as e:
    raise UsageError("--align needs dlib: pip install -e '.[align]' from a clone, or pip "
                     f"install dlib-bin face_recognition_models ({e})") from None
  size = o.align_size or max(generator_size // 8, 1)
  if generator_size % size:
    raise UsageError(f"--align_size: {size} does not divide the generator size "
                     f"{generator_size}; valid: {input_images.valid_sizes(generator_size)}")
  out_dir = pathlib.Path(out_dir)
  try:
    landmarker = FaceLandmarker(None)
  except AlignDependencyError as e:
    raise UsageError(f"--align: {e}") from None
  out = []
  for it in items:
    f, stem = it.path, it.stem
    with tempfile.TemporaryDirectory(prefix=".align-", dir=_made(out_dir)) as tmp:
      try:
        res = align.align_file(f, tmp, size, generator_size, landmarker=landmarker, stem=stem)
      except AlignDependencyError as e:
        raise UsageError(f"--align: {e}") from None
      lr_paths = [_place(p, tmp, out_dir, o.overwrite) for p in res.lr_paths]
      for p in res.hr_paths:
        _place(p, tmp, out_dir, o.overwrite)
    name = it.label or f
    for w_ in res.warnings:
      warn(f"{name}: {w_}")
    if not lr_paths:
      out.append(Item(str(f), stem, status="failed", label=it.label,
                      message=f"{name}: alignment found no usable face ({res.status}: "
                              f"{res.message}; " + "; ".join(fr.reason for fr in res.faces
                                                             if fr.reason) + ")"))
      continue
    log(f"aligned {name}: {res.message} -> " + ", ".join(lr_paths))
    out += [Item(p, input_images.safe_stem(pathlib.Path(p).stem)) for p in lr_paths]
  return out


def _made(d: pathlib.Path) -> pathlib.Path:
  d.mkdir(parents=True, exist_ok=True)
  return d


def _place(path: str, tmp: str, out_dir: pathlib.Path, overwrite: bool) -> str:
  """Moves `path` (under `tmp`) to the same place under `out_dir`; returns where it went."""
  dest = out_dir / os.path.relpath(path, tmp)
  if dest.exists() and not overwrite:
    if dest.read_bytes() != pathlib.Path(path).read_bytes():
      raise UsageError(f"{dest} exists with other pixels (an aligned crop of an earlier run with "
                       "other inputs or options); pass --overwrite to replace it, or choose "
                       "another --output_dir.")
    return str(dest)
  _made(dest.parent)
  os.replace(path, dest)
  return str(dest)
