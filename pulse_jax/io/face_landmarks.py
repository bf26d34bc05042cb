"""Face detection and 68-point landmarks with dlib (optional dependency, imported lazily).

dlib and its landmark model are needed only to align real photos (`pulse_jax.align`); nothing
else in pulse-jax imports this module's dlib parts. Install them with the `align` extra, from a
clone of pulse-jax, or as the two packages it names:

    pip install -e '.[align]'           # = dlib-bin + face_recognition_models
    pip install dlib-bin face_recognition_models

The 68-point model `shape_predictor_68_face_landmarks.dat` is never downloaded at run time. It is
looked up, in order, at: an explicit path (`--landmarks_model`), the environment variable
`PULSE_JAX_LANDMARKS_MODEL`, the PyPI package `face_recognition_models` (located with
`importlib.util.find_spec`, not imported), and Debian's `libdlib-data`
(`/usr/share/dlib/shape_predictor_68_face_landmarks.dat`).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import pathlib
from typing import Any

import numpy as np
from PIL import Image

MODEL_NAME = "shape_predictor_68_face_landmarks.dat"
MODEL_ENV = "PULSE_JAX_LANDMARKS_MODEL"
DEBIAN_MODEL = pathlib.Path("/usr/share/dlib") / MODEL_NAME
PACKAGES = "dlib-bin face_recognition_models"   # the `align` extra (setup.cfg)
INSTALL_HINT = (f"pip install -e '.[align]'   (from a clone of pulse-jax), or the packages: "
                f"pip install {PACKAGES}")


class AlignDependencyError(RuntimeError):
  """dlib or the landmark model is missing; the message says how to install it."""


def import_dlib() -> Any:
  """Import dlib lazily, with the exact install command when it is missing."""
  try:
    import dlib  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise AlignDependencyError(
        "Face alignment needs dlib, which is not installed. Install the optional extra:\n"
        f"    {INSTALL_HINT}") from e
  return dlib


def dlib_available() -> bool:
  try:
    return importlib.util.find_spec("dlib") is not None
  except (ImportError, ValueError):
    return False


def _face_recognition_models_path() -> pathlib.Path | None:
  try:
    spec = importlib.util.find_spec("face_recognition_models")
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for base in spec.submodule_search_locations:
    path = pathlib.Path(base) / "models" / MODEL_NAME
    if path.is_file():
      return path
  return None


def candidate_model_paths() -> list[pathlib.Path]:
  """Where the 68-point model is looked for (after an explicit path), in order."""
  out = []
  if os.environ.get(MODEL_ENV):
    out.append(pathlib.Path(os.environ[MODEL_ENV]))
  frm = _face_recognition_models_path()
  if frm is not None:
    out.append(frm)
  out.append(DEBIAN_MODEL)
  return out


def find_landmarks_model(path: str | os.PathLike | None = None) -> pathlib.Path:
  """The 68-point landmark model file on disk; never downloads anything."""
  if path:
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
      raise AlignDependencyError(f"--landmarks_model: no such file: {p}")
    return p
  for p in candidate_model_paths():
    if p.is_file():
      return p
  if not dlib_available():  # nothing of the extra is installed: name both parts
    raise AlignDependencyError(
        f"Face alignment needs dlib and its 68-point landmark model {MODEL_NAME}; neither is "
        f"installed. Install the optional extra:\n    {INSTALL_HINT}")
  raise AlignDependencyError(
      f"dlib's 68-point landmark model {MODEL_NAME} was not found (dlib itself is installed). "
      "Install it with one of:\n"
      f"    pip install -e '.[align]'        # from a clone of pulse-jax: {PACKAGES}\n"
      "    pip install face_recognition_models\n"
      "    apt-get install libdlib-data     # Debian/Ubuntu: " + str(DEBIAN_MODEL) + "\n"
      f"or point to the file with --landmarks_model=PATH (or ${MODEL_ENV}=PATH).")


def landmarks_available(path: str | os.PathLike | None = None) -> bool:
  try:
    find_landmarks_model(path)
  except AlignDependencyError:
    return False
  return dlib_available()


@functools.lru_cache(maxsize=4)
def _load(model_path: str):
  dlib = import_dlib()
  return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(model_path)


@dataclasses.dataclass
class Detection:
  """One face found in a photo (coordinates in the photo as given, pixel-index convention)."""
  landmarks: np.ndarray         # [68, 2] float64 (x, y)
  score: float                  # dlib HOG detector score (higher is surer)
  box: tuple[float, float, float, float]  # (left, top, right, bottom)
  rotation: int = 0             # photo rotated by this many degrees CCW for detection


# PIL transposes that rotate counter-clockwise by 90, 180, 270 degrees.
_ROTATIONS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
              270: Image.Transpose.ROTATE_270}


def unrotate_points(pts: np.ndarray, rotation: int, size: tuple[int, int]) -> np.ndarray:
  """Map pixel coords in the photo rotated CCW by `rotation` back to the photo (`size` = (w, h))."""
  w, h = size
  pts = np.asarray(pts, np.float64)
  xr, yr = pts[..., 0], pts[..., 1]
  if rotation == 0:
    x, y = xr, yr
  elif rotation == 90:        # (x, y) -> (y, w - 1 - x)
    x, y = w - 1 - yr, xr
  elif rotation == 180:       # (x, y) -> (w - 1 - x, h - 1 - y)
    x, y = w - 1 - xr, h - 1 - yr
  elif rotation == 270:       # (x, y) -> (h - 1 - y, x)
    x, y = yr, h - 1 - xr
  else:
    raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
  return np.stack([x, y], axis=-1)


class FaceLandmarker:
  """dlib's HOG frontal face detector + 68-point shape predictor.

  Detection runs on a copy scaled so that its longest side is at most `detect_max_side`
  (0: never scaled), with `upsample` pyramid up-samplings; landmarks are then predicted on the
  full-resolution photo.
  """

  def __init__(self, model_path: str | os.PathLike | None = None, *, upsample: int = 1,
               threshold: float = 0.5, detect_max_side: int = 1024):
    self.model_path = find_landmarks_model(model_path)
    self.dlib, self.detector, self.predictor = _load(str(self.model_path))
    self.upsample = int(upsample)
    self.threshold = float(threshold)
    self.detect_max_side = int(detect_max_side)
    self.rejected: list[float] = []   # scores of candidates below threshold, last call

  def _detect_upright(self, rgb: np.ndarray) -> tuple[list[Detection], list[float]]:
    h, w = rgb.shape[:2]
    scale = 1.0
    small = rgb
    if self.detect_max_side and max(h, w) > self.detect_max_side:
      scale = self.detect_max_side / max(h, w)
      size = (max(1, round(w * scale)), max(1, round(h * scale)))
      small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    small = np.ascontiguousarray(small)
    rects, scores, _ = self.detector.run(small, self.upsample, min(self.threshold, 0.0))
    found, rejected = [], []
    for r, s in zip(rects, scores):
      if s < self.threshold:
        rejected.append(float(s))
        continue
      box = (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
      rect = self.dlib.rectangle(*(int(round(v)) for v in box))
      shape = self.predictor(rgb, rect)
      lm = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
      found.append(Detection(lm, float(s), box))
    return found, rejected

  def detect(self, image: Image.Image, try_rotations: bool = True) -> list[Detection]:
    """Faces in `image` (RGB). If none upright and `try_rotations`, tries 90/180/270 degrees;
    landmarks are always returned in the coordinates of `image` itself."""
    image = image.convert("RGB")
    rgb = np.ascontiguousarray(np.asarray(image))
    found, self.rejected = self._detect_upright(rgb)
    if found or not try_rotations:
      return found
    for rotation, op in _ROTATIONS.items():
      rot = np.ascontiguousarray(np.asarray(image.transpose(op)))
      found, rejected = self._detect_upright(rot)
      self.rejected += rejected
      if found:
        for d in found:
          d.landmarks = unrotate_points(d.landmarks, rotation, image.size)
          corners = unrotate_points(np.array([d.box[:2], d.box[2:]]), rotation, image.size)
          d.box = (*corners.min(0), *corners.max(0))
          d.rotation = rotation
        return found
    return []
