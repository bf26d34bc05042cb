"""Real photos in: find faces, align them the FFHQ way, and down-sample them for the search.

The logic of ``python -m pulse_jax.align`` (flags and main: ``pulse_jax.align``) and of run's
``--align`` (``pulse_jax.job.inputs``): ``align_path(input, output_dir, size, hr_size)``.

What it does per photo, what it writes and its outcomes (ok, no_face, too_small, error):
the docstring of ``pulse_jax.align``.

The FFHQ recipe (NVlabs/ffhq-dataset, as in PULSE's ``shape_predictor.py``), re-implemented with
numpy + Pillow (no scipy):
  eye_avg = mean of both eye centres, eye_to_eye = right - left eye centre,
  mouth_avg = midpoint of the mouth corners, eye_to_mouth = mouth_avg - eye_avg;
  x = normalise(eye_to_eye - rot90(eye_to_mouth)) * max(2 |eye_to_eye|, 1.8 |eye_to_mouth|),
  y = rot90(x), centre c = eye_avg + 0.1 eye_to_mouth, quad = c -x -y, c -x +y, c +x +y, c +x -y.
So in the aligned crop of side S the centre c lands at (S/2, S/2), the quad's half side |x| is
S/2, and for a frontal face whose eye distance dominates (2|e2e| >= 1.8|e2m|) the eye centres land
at x = 3S/8 and 5S/8 (384 and 640 in a 1024 crop), 0.1 |e2m| * S / (2|x|) above the centre;
`crop_coords` maps any photo point into the crop exactly.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

from pulse_jax.io import images as image_files
from pulse_jax.io import input_images
from pulse_jax.io.face_landmarks import AlignDependencyError, Detection, FaceLandmarker
from pulse_jax.io.images import to_uint8

log = logging.getLogger(__name__)

REPORT_NAME = "align_report.json"
TRANSFORM_SIZE = 4096   # FFHQ resamples the quad at 4096 px, then shrinks to the output size
FFHQ_BLUR_TRUNCATE = 4.0  # scipy's gaussian_filter default: radius int(4 sigma + 0.5)


# ----------------------------------------------------------------------------- geometry

@dataclasses.dataclass
class FaceGeometry:
  eye_left: np.ndarray      # [2] centre of landmarks 36..41 (the photo's left eye)
  eye_right: np.ndarray     # [2] centre of landmarks 42..47
  mouth: np.ndarray         # [2] midpoint of the mouth corners (landmarks 48 and 54)
  quad: np.ndarray          # [4, 2] top-left, bottom-left, bottom-right, top-right (photo px)
  qsize: float              # side of the quad in photo pixels

  @property
  def eye_distance(self) -> float:
    return float(np.hypot(*(self.eye_right - self.eye_left)))


def ffhq_geometry(landmarks: np.ndarray) -> FaceGeometry:
  """FFHQ's oriented crop square from dlib's 68 landmarks ([68, 2], x/y pixel indices)."""
  lm = np.asarray(landmarks, np.float64)
  if lm.shape != (68, 2):
    raise ValueError(f"expected [68, 2] landmarks, got {lm.shape}")
  eye_left = lm[36:42].mean(axis=0)
  eye_right = lm[42:48].mean(axis=0)
  eye_avg = (eye_left + eye_right) / 2
  eye_to_eye = eye_right - eye_left
  mouth = (lm[48] + lm[54]) / 2
  eye_to_mouth = mouth - eye_avg
  # x: the eye line blended with the perpendicular of the eye-mouth line; y: x turned 90 deg.
  x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
  x = x / np.hypot(*x)
  x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
  y = np.array([-x[1], x[0]])
  c = eye_avg + eye_to_mouth * 0.1
  quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
  return FaceGeometry(eye_left, eye_right, mouth, quad, float(np.hypot(*x) * 2))


def crop_coords(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
  """Photo pixel coords -> pixel coords in the `size` x `size` crop of `quad` (exact affine map).

  The quad's corner 0 is the crop's top-left pixel edge: a photo point there lands at
  (-0.5, -0.5) in pixel-index convention, and the quad's centre at ((size - 1) / 2,) * 2.
  """
  quad = np.asarray(quad, np.float64)
  basis = np.stack([quad[3] - quad[0], quad[1] - quad[0]], axis=1)   # columns: crop x, crop y
  t = np.linalg.solve(basis, (np.asarray(points, np.float64) - quad[0]).T).T
  return t * size - 0.5


# ----------------------------------------------------------------------------- blur

def _good_fft_size(n: int) -> int:
  best = 1 << int(np.ceil(np.log2(max(n, 1))))
  p5 = 1
  while p5 < best:
    p35 = p5
    while p35 < best:
      p = p35
      while p < n:
        p *= 2
      best = min(best, p)
      p35 *= 3
    p5 *= 5
  return best


def _blur_axis(a: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
  r = len(k) // 2
  n = a.shape[axis]
  pad = [(0, 0)] * a.ndim
  pad[axis] = (r, r)
  p = np.pad(a, pad, mode="symmetric")   # scipy.ndimage 'reflect' (edge sample repeated)
  if len(k) <= 64:                       # direct: sum of shifted copies
    out = np.zeros(a.shape, np.float64)
    for j, kj in enumerate(k):
      out += kj * np.take(p, np.arange(j, j + n), axis=axis)
    return out.astype(a.dtype)
  m = _good_fft_size(p.shape[axis] + len(k) - 1)
  spec = np.fft.rfft(p, m, axis=axis) * np.expand_dims(
      np.fft.rfft(k, m), tuple(i for i in range(a.ndim) if i != axis))
  full = np.fft.irfft(spec, m, axis=axis)
  return np.take(full, np.arange(2 * r, 2 * r + n), axis=axis).astype(a.dtype)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
  """`img [H, W, C]` blurred over H and W like ``scipy.ndimage.gaussian_filter(img, [s, s, 0])``
  (mode 'reflect', truncate 4): separable, direct for small kernels, FFT for large ones, with
  the taps of `pulse_jax.forward.blur.gaussian_taps` (radius ``int(4 sigma + 0.5)``). Same
  shape and dtype as `img`."""
  img = np.asarray(img)
  if sigma <= 0:
    return img.copy()
  from pulse_jax.forward.blur import gaussian_taps  # pylint: disable=import-outside-toplevel
  k = gaussian_taps(float(sigma), radius=int(FFHQ_BLUR_TRUNCATE * float(sigma) + 0.5))
  out = np.empty_like(img)
  for ch in range(img.shape[2]):          # one channel at a time to bound memory
    out[..., ch] = _blur_axis(_blur_axis(img[..., ch], k, 0), k, 1)
  return out


# ----------------------------------------------------------------------------- crop

def ffhq_crop(image: Image.Image, quad: np.ndarray, qsize: float, output_size: int,
              transform_size: int = TRANSFORM_SIZE, enable_padding: bool = True) -> Image.Image:
  """Resample `quad` of `image` to an `output_size` square, the FFHQ way: shrink big photos,
  crop around the quad, pad by reflection (blurred and faded to the median colour) where the
  quad leaves the photo, transform at `transform_size` and resize with Lanczos."""
  img = image.convert("RGB")
  quad = np.array(quad, np.float64)
  transform_size = max(int(transform_size), int(output_size))

  shrink = int(np.floor(qsize / output_size * 0.5))
  if shrink > 1:
    size = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
    img = img.resize(size, Image.Resampling.LANCZOS)
    quad /= shrink
    qsize /= shrink

  border = max(int(np.rint(qsize * 0.1)), 3)
  lo = np.floor(quad.min(axis=0)).astype(int)
  hi = np.ceil(quad.max(axis=0)).astype(int)
  crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
          min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
  if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
    img = img.crop(crop)
    quad -= crop[0:2]

  lo = np.floor(quad.min(axis=0)).astype(int)
  hi = np.ceil(quad.max(axis=0)).astype(int)
  pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
         max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0))
  if enable_padding and max(pad) > border - 4:
    pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
    a = np.pad(np.asarray(img, np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)),
               mode="reflect")
    h, w, _ = a.shape
    yy, xx = np.ogrid[:h, :w]
    xx = xx.astype(np.float32)
    yy = yy.astype(np.float32)
    # 1 at the outer edge of the padding, 0 where the photo starts, negative inside it.
    mask = np.maximum(1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
                      1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3]))[..., None]
    a = a + (gaussian_blur(a, qsize * 0.02) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a = a + (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    img = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
    quad += pad[:2]

  img = img.transform((transform_size, transform_size), Image.Transform.QUAD,
                      tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR)
  if output_size < transform_size:
    img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
  return img


def downsample_image(hr: Image.Image, size: int) -> Image.Image:
  """`hr` (square RGB) down-sampled to `size` with the search's own bicubic forward model."""
  from pulse_jax.forward.bicubic import downsample  # pylint: disable=import-outside-toplevel
  w, h = hr.size
  if w != h or w % size:
    raise ValueError(f"HR crop {w}x{h} is not a square multiple of size {size}")
  x = np.asarray(hr.convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255.0
  lr = np.asarray(downsample(x, w // size))[0].transpose(1, 2, 0)
  return Image.fromarray(to_uint8(lr), "RGB")


# ----------------------------------------------------------------------------- faces

@dataclasses.dataclass
class AlignedFace:
  """One aligned face. Coordinates are in the (EXIF-transposed) photo unless said otherwise."""
  index: int                 # left-to-right order in the photo
  landmarks: np.ndarray      # [68, 2]
  quad: np.ndarray           # [4, 2] top-left, bottom-left, bottom-right, top-right
  qsize: float
  eye_left: np.ndarray
  eye_right: np.ndarray
  mouth: np.ndarray
  eye_distance: float
  score: float
  rotation: int              # degrees CCW the photo was turned for the detector to find it
  eyes_in_crop: np.ndarray   # [2, 2] where the eye centres land in `image` (from the geometry)
  image: Image.Image | None  # the aligned hr_size x hr_size RGB crop


def _sorted(dets: Iterable[Detection]) -> list[Detection]:
  return sorted(dets, key=lambda d: (d.landmarks[:, 0].mean(), d.landmarks[:, 1].mean()))


def align_detection(image: Image.Image, det: Detection, index: int = 0, hr_size: int = 1024,
                    transform_size: int = TRANSFORM_SIZE, render: bool = True) -> AlignedFace:
  g = ffhq_geometry(det.landmarks)
  crop = ffhq_crop(image, g.quad, g.qsize, hr_size, transform_size) if render else None
  return AlignedFace(
      index=index, landmarks=det.landmarks, quad=g.quad, qsize=g.qsize, eye_left=g.eye_left,
      eye_right=g.eye_right, mouth=g.mouth, eye_distance=g.eye_distance, score=det.score,
      rotation=det.rotation,
      eyes_in_crop=crop_coords(np.stack([g.eye_left, g.eye_right]), g.quad, hr_size),
      image=crop)


def _landmarker(predictor_path, landmarker, **kw) -> FaceLandmarker:
  return landmarker if landmarker is not None else FaceLandmarker(predictor_path, **kw)


def align_faces(image: Image.Image, predictor_path: str | os.PathLike | None = None,
                hr_size: int = 1024, *, landmarker: FaceLandmarker | None = None,
                min_eye_distance: float = 0.0, try_rotations: bool = True,
                upsample: int = 1, threshold: float = 0.5, detect_max_side: int = 1024,
                transform_size: int = TRANSFORM_SIZE) -> list[AlignedFace]:
  """Every face in `image`, FFHQ-aligned to `hr_size` x `hr_size`, left to right.

  The EXIF orientation is applied first. Faces whose eye distance is below `min_eye_distance`
  photo pixels are left out. Raises `AlignDependencyError` when dlib or its model is missing.
  """
  image = ImageOps.exif_transpose(image).convert("RGB")
  lmk = _landmarker(predictor_path, landmarker, upsample=upsample, threshold=threshold,
                    detect_max_side=detect_max_side)
  out = []
  for i, det in enumerate(_sorted(lmk.detect(image, try_rotations=try_rotations))):
    if ffhq_geometry(det.landmarks).eye_distance < min_eye_distance:
      continue
    out.append(align_detection(image, det, i, hr_size, transform_size))
  return out


# ----------------------------------------------------------------------------- files

def _jsonable(v: Any) -> Any:
  if isinstance(v, np.ndarray):
    return np.round(v.astype(np.float64), 3).tolist()
  if isinstance(v, (np.floating, float)):
    return round(float(v), 4)
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, dict):
    return {k: _jsonable(x) for k, x in v.items()}
  return v


@dataclasses.dataclass
class FaceResult:
  index: int
  status: str                         # 'ok' | 'skipped'
  reason: str = ""
  lr_path: str | None = None          # the size x size PNG (the search's input)
  hr_path: str | None = None          # the aligned hr_size x hr_size PNG
  score: float = 0.0
  eye_distance: float = 0.0
  rotation: int = 0
  quad: np.ndarray | None = None
  eyes_in_crop: np.ndarray | None = None


@dataclasses.dataclass
class FileResult:
  input: str
  status: str                         # 'ok' | 'no_face' | 'too_small' | 'error'
  message: str = ""
  image_size: tuple[int, int] | None = None   # after the EXIF orientation
  exif_orientation: int | None = None
  rotation: int = 0                   # degrees CCW needed for detection (0: found upright)
  faces: list[FaceResult] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return self.status == "ok"

  @property
  def lr_paths(self) -> list[str]:
    return [f.lr_path for f in self.faces if f.lr_path]

  @property
  def hr_paths(self) -> list[str]:
    return [f.hr_path for f in self.faces if f.hr_path]

  def to_dict(self) -> dict:
    return _jsonable(dataclasses.asdict(self))


def load_photo(path: str | os.PathLike) -> tuple[Image.Image, int | None]:
  """Open `path` and apply its EXIF orientation; returns (RGB image, EXIF orientation tag).

  Reads only `image_files.ALLOWED_FORMATS` and refuses a header over `MAX_IMAGE_PIXELS` before
  decoding, as `run` does: raises `ImageFileError` naming the file.
  """
  im, orientation = image_files.read_image(path)
  return im.convert("RGB"), orientation


def check_sizes(size: int, hr_size: int) -> None:
  if size < 1 or hr_size < 1 or hr_size % size:
    raise ValueError(f"--hr_size ({hr_size}) must be a positive multiple of --size ({size})")


def align_file(path: str | os.PathLike, out_dir: str | os.PathLike, size: int,
               hr_size: int = 1024, *, predictor_path: str | os.PathLike | None = None,
               landmarker: FaceLandmarker | None = None, min_eye_distance: float = 16.0,
               try_rotations: bool = True, save_hr: bool = True, stem: str | None = None,
               upsample: int = 1, threshold: float = 0.5, detect_max_side: int = 1024,
               transform_size: int = TRANSFORM_SIZE) -> FileResult:
  """Align every face of one photo and write `STEM[_i].png` (size x size) and `hr/STEM[_i].png`.

  A face is skipped (with its reason) when its eye distance is below `min_eye_distance` photo
  pixels or below `size / 4` (its low-res crop would then be up-sampled from the photo).
  Problems with this file are reported in the result, not raised; only a missing dlib or
  landmark model raises `AlignDependencyError`.
  """
  check_sizes(size, hr_size)
  path = pathlib.Path(path)
  out_dir = pathlib.Path(out_dir)
  stem = stem or path.stem
  res = FileResult(input=str(path), status="error")
  try:
    image, res.exif_orientation = load_photo(path)
  except image_files.ImageFileError as e:   # refused or unreadable: names the file and the fix
    res.message = str(e)
    return res
  except Exception as e:  # pylint: disable=broad-except
    res.message = f"unreadable: {type(e).__name__}: {e}"
    return res
  res.image_size = image.size
  lmk = _landmarker(predictor_path, landmarker, upsample=upsample, threshold=threshold,
                    detect_max_side=detect_max_side)
  try:
    dets = _sorted(lmk.detect(image, try_rotations=try_rotations))
    if lmk.rejected:
      res.warnings.append(
          f"{len(lmk.rejected)} weak detection(s) below --detection_threshold={lmk.threshold}: "
          "scores " + ", ".join(f"{s:.2f}" for s in sorted(lmk.rejected, reverse=True)))
    if not dets:
      res.status = "no_face"
      res.message = "no face found" + (" (also tried 90/180/270 degree rotations)"
                                       if try_rotations else "")
      return res
    res.rotation = dets[0].rotation
    if res.rotation:
      res.warnings.append(f"no face upright; found after rotating the photo {res.rotation} "
                          "degrees counter-clockwise (check the photo's orientation)")
    min_d = max(float(min_eye_distance), size / 4.0)
    for i, det in enumerate(dets):
      name = f"{stem}.png" if len(dets) == 1 else f"{stem}_{i}.png"
      g = ffhq_geometry(det.landmarks)
      fr = FaceResult(index=i, status="skipped", score=det.score, eye_distance=g.eye_distance,
                      rotation=det.rotation, quad=g.quad)
      res.faces.append(fr)
      if g.eye_distance < min_d:
        why = (f"< --min_eye_distance={min_eye_distance:g}" if min_d == min_eye_distance else
               f"< size / 4 = {min_d:g} (the {size}x{size} crop would be up-sampled)")
        fr.reason = f"face too small: eye distance {g.eye_distance:.1f} px {why}"
        continue
      targets = [out_dir / name] + ([out_dir / "hr" / name] if save_hr else [])
      if any(t.resolve() == path.resolve() for t in targets):
        fr.reason = f"output {name} would overwrite the input photo: use another --output_dir"
        continue
      face = align_detection(image, det, i, hr_size, transform_size)
      fr.eyes_in_crop = face.eyes_in_crop
      out_dir.mkdir(parents=True, exist_ok=True)
      if save_hr:
        (out_dir / "hr").mkdir(exist_ok=True)
        fr.hr_path = str(out_dir / "hr" / name)
        face.image.save(fr.hr_path)
      fr.lr_path = str(out_dir / name)
      downsample_image(face.image, size).save(fr.lr_path)
      fr.status = "ok"
    n_ok = sum(f.status == "ok" for f in res.faces)
    res.status = ("ok" if n_ok else "too_small" if all("too small" in f.reason for f in res.faces)
                  else "error")
    res.message = f"{n_ok} of {len(dets)} face(s) aligned"
  except AlignDependencyError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    res.status = "error"
    res.message = f"{type(e).__name__}: {e}"
  return res


def align_path(input_path: str | os.PathLike, out_dir: str | os.PathLike, size: int,
               hr_size: int = 1024, *, predictor_path=None, report: bool = True,
               **kwargs) -> list[FileResult]:
  """`align_file` on a file or every image in a folder; writes `align_report.json`."""
  check_sizes(size, hr_size)
  files, skipped = input_images.list_inputs(input_path)   # run's listing, run's extensions
  out_dir = pathlib.Path(out_dir)
  if pathlib.Path(input_path).is_dir() and out_dir.resolve() == pathlib.Path(input_path).resolve():
    raise ValueError("--output_dir must not be the --input folder (outputs would mix with, "
                     "or overwrite, the photos)")
  out_dir.mkdir(parents=True, exist_ok=True)
  landmarker = FaceLandmarker(
      predictor_path, **{k: kwargs.pop(k) for k in ("upsample", "threshold", "detect_max_side")
                         if k in kwargs})
  # An image name on what cannot be read (unreadable, a FIFO, a broken link): an 'error' entry
  # in its place, never opened.
  exts = input_images.image_extensions()
  unreadable = {f for f in skipped if f.suffix.lower() in exts}
  results, used = [], set()
  for f in sorted([*files, *unreadable]):
    stem = f.stem
    if stem in used:                  # a.jpg and a.png in one folder
      stem = f"{f.stem}_{f.suffix.lstrip('.').lower()}"
    used.add(stem)
    if f in unreadable:
      results.append(FileResult(input=str(f), status="error",
                                message=f"not read: {input_images.skip_reason(f)}"))
      continue
    r = align_file(f, out_dir, size, hr_size, landmarker=landmarker, stem=stem, **kwargs)
    results.append(r)
  if report:
    write_report(results, out_dir / REPORT_NAME, settings=dict(
        input=str(input_path), size=size, hr_size=hr_size,
        landmarks_model=str(landmarker.model_path), detection_threshold=landmarker.threshold,
        upsample=landmarker.upsample, detect_max_side=landmarker.detect_max_side, **kwargs))
  return results


def write_report(results: Sequence[FileResult], path: str | os.PathLike,
                 settings: dict | None = None) -> None:
  counts: dict[str, int] = {}
  for r in results:
    counts[r.status] = counts.get(r.status, 0) + 1
  doc = dict(settings=_jsonable(settings or {}), counts=counts,
             faces_written=sum(len(r.lr_paths) for r in results),
             files=[r.to_dict() for r in results])
  pathlib.Path(path).write_text(json.dumps(doc, indent=2) + "\n")
