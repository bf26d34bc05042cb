"""What `python -m pulse_jax.run` writes: per-input images, latents, JSON reports, the summary.

Per input, under OUTPUT_DIR/<stem>/ (R = --restarts, K = --duplicates, best first):
  input.png            the search target as searched (after conversion and --fit)
  hr_<k>.png           the K best restarts' high-resolution images (k = 0..K-1)
  lr_<k>.png           the same iterates through the forward model D (docs/forward.md; the
                       reference's bicubic down-sampling by default): what was compared with
                       input.png (one channel with --grayscale)
  latents.npz          every restart's best iterate, row r = restart r: 'latent' [R, l, D] and
                       'noise_<i>' [R, 1, r, r] (start-values format: pass back as --init to
                       continue every restart), 'kept' [K] the restarts of hr_<k>.png (best
                       first) and 'rank' [R] each restart's rank (0: best); with --ilo, once a
                       cut point was entered, the kept activation at the last one entered:
                       'ilo.<layer>' [R, ...] (StyleGAN2: 'ilo.<layer>.x', 'ilo.<layer>.img');
                       pulse_jax.render renders the kept rows (from the activation when there
                       is one; --init ignores it: a search starts from the latents)
  spread.png           only when at least 2 restarts are within eps: the per-pixel spread
                       (standard deviation, mean over RGB) of the HR images of every within-eps
                       restart, as a heat map (`pulse_jax.io.images.heat_map`, fixed scale
                       `SPREAD_VMAX`: dark 0, bright 0.25 and above); bright = not fixed by the
                       input. spread.npy: the same map's values, [H, W] float32 in [0, 1] units
  report.json          see `input_report`; written last; "files" lists every file written
  NOT_WITHIN_EPS.txt   only when no restart reached eps: the closest L2 and advice
  frames/, progress.gif   with --save_intermediate: best-so-far HR/LR after each chunk
OUTPUT_DIR/summary.json  the run summary.

Every file is written to a hidden temporary name and renamed into place, and report.json comes
last: an input's outputs are complete exactly when its report.json exists (`complete_report`),
so a run killed at any point never leaves outputs that look complete.

<stem> is a plain folder name (`inputs.unique_stems`: a file name that cannot be one, e.g.
'...png', gets a safe name, with a `stem_note`), and every per-input path is checked to be a
real folder inside OUTPUT_DIR before anything is written or removed there (`input_dir`: no
symbolic link is followed). A run removes only files it wrote: those an earlier report.json of
the folder lists ("files"), and its own temporaries (`clear_outputs`).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from pulse_jax.job import options
from pulse_jax.io import responsible_use
from pulse_jax.io.gallery import ILO_LINE
from pulse_jax.io.images import SPREAD_VMAX, heat_map, to_uint8

from pulse_jax.io.run_files import (FRAMES, GIF, INPUT_PNG, LATENTS, NOT_WITHIN_EPS, REPORT,
                                    TRACE)

# The names a run writes in OUTPUT_DIR/<stem>/ (and in its frames/ folder): the only files
# `clear_outputs` may remove there, and only those an earlier report.json lists (temporaries:
# any of ours, of any process id).
_OWN_NAME = (r"(input\.png|[hl]r_\d+\.png|latents\.npz|trace\.json|report\.json|"
             r"NOT_WITHIN_EPS\.txt|progress\.gif|spread\.png|spread\.npy)")
OWN_FILE = re.compile(_OWN_NAME)
OWN_TMP = re.compile(rf"\.{_OWN_NAME}\.tmp-\d+")
OWN_FRAME = re.compile(r"[hl]r_step\d+\.png")
OWN_FRAME_TMP = re.compile(r"\.[hl]r_step\d+\.png\.tmp-\d+")
# Settings that change the speed or memory of a run but not its results: a re-run may change
# them and still keep the complete outputs of an earlier run (see `resume_differences`).
RESULT_NEUTRAL_SETTINGS = options.result_neutral()
# An input's spread map (written only when at least 2 restarts are within eps): the heat map
# and its values.
SPREAD_PNG = "spread.png"
SPREAD_NPY = "spread.npy"
NO_SPREAD = ("fewer than 2 restarts within eps: no map; a map of failed restarts would not "
             "show what the input determines")


class UnsafeOutputPath(ValueError):
  """A per-input output folder that the job must not write into or delete from (the message
  names it and says why)."""


def input_dir(output_dir: str, stem: str, *, sub: str | None = None) -> str:
  """OUTPUT_DIR/<stem> (or OUTPUT_DIR/<stem>/<sub>), proven to be inside OUTPUT_DIR.

  Raises UnsafeOutputPath when `stem` is not a plain folder name (`inputs.is_safe_stem`), or
  when the folder (or `sub`) exists as a symbolic link or as something else than a folder, or
  resolves outside OUTPUT_DIR: the job never writes or deletes through such a path.
  """
  from pulse_jax.io.input_images import is_safe_stem
  if not is_safe_stem(stem):
    raise UnsafeOutputPath(f"{stem!r} cannot be an output folder name (not a plain name)")
  root = os.path.realpath(output_dir)
  d = os.path.join(output_dir, stem)
  parts = [d] + ([os.path.join(d, sub)] if sub is not None else [])
  for p in parts:
    if os.path.islink(p):
      raise UnsafeOutputPath(f"{p} is a symbolic link (to {os.readlink(p)}); the job does not "
                             "write through links: remove it, or choose another --output_dir")
    if os.path.lexists(p) and not os.path.isdir(p):
      raise UnsafeOutputPath(f"{p} exists and is not a folder: remove it, or choose another "
                             "--output_dir")
  target = os.path.realpath(parts[-1])
  if os.path.commonpath([root, target]) != root or target == root:
    raise UnsafeOutputPath(f"{parts[-1]} resolves to {target}, outside {output_dir}")
  return parts[-1]


def planned_files(output_dir: str, stem: str, duplicates: int, save_intermediate: bool) -> list[str]:
  d = os.path.join(output_dir, stem)
  files = [os.path.join(d, n) for n in (INPUT_PNG, LATENTS, TRACE, REPORT)]
  files += [os.path.join(d, f"{kind}_{k}.png") for k in range(duplicates) for kind in ("hr", "lr")]
  files += [os.path.join(d, n) for n in (SPREAD_PNG, SPREAD_NPY)]  # when 2 or more within eps
  if save_intermediate:
    files.append(os.path.join(d, GIF))
  return files


def existing_outputs(output_dir: str, stem: str) -> list[str]:
  """Our files already in OUTPUT_DIR/<stem>/ (any run's, whatever its --duplicates): the names
  a run writes (`OWN_FILE`), and a non-empty frames/ folder."""
  d = input_dir(output_dir, stem)
  if not os.path.isdir(d):
    return []
  found = [os.path.join(d, n) for n in sorted(os.listdir(d)) if OWN_FILE.fullmatch(n)]
  frames = os.path.join(d, FRAMES)
  if os.path.isdir(frames) and not os.path.islink(frames) and os.listdir(frames):
    found.append(frames + os.sep)
  return found


def report_files(report) -> list[str]:
  """The file names (relative to OUTPUT_DIR/<stem>/) that the run of `report` (an earlier
  report.json of ours) wrote: its "files" list, or for reports without one, the files every
  run writes and the outputs and latents it lists; only names a run writes (`OWN_FILE`, and
  `OWN_FRAME` under frames/) are returned: a tampered report cannot name anything else."""
  if not isinstance(report, dict):
    return []
  if isinstance(report.get("files"), list):
    names = list(report["files"])
  else:
    names = [INPUT_PNG, LATENTS, TRACE, REPORT, report.get("latents")]
    if report.get("status") == "not_within_eps":
      names.append(NOT_WITHIN_EPS)
    for o in report.get("outputs") if isinstance(report.get("outputs"), list) else []:
      if isinstance(o, dict):
        names += [o.get("hr"), o.get("lr")]
  out = []
  for n in names:
    if not isinstance(n, str) or n in out:
      continue
    if OWN_FILE.fullmatch(n) or (n.startswith(FRAMES + "/")
                                 and OWN_FRAME.fullmatch(n[len(FRAMES) + 1:])):
      out.append(n)
  return out


def clear_outputs(output_dir: str, stem: str) -> list[str]:
  """Removes from OUTPUT_DIR/<stem>/ the files an earlier run of ours wrote there, and nothing
  else: those its report.json lists (`report_files`; the report itself last), and our
  temporaries (`.<name>.tmp-<pid>` of a killed run). Returns the removed paths.

  Files without a report.json (a run interrupted before writing it) are left: the new run
  replaces them under the same names. Raises UnsafeOutputPath when the folder is not a plain
  folder inside OUTPUT_DIR (`input_dir`).
  """
  d = input_dir(output_dir, stem)
  if not os.path.isdir(d):
    return []
  report = None
  try:
    with open(os.path.join(d, REPORT)) as f:
      report = json.load(f)
  except (OSError, ValueError):
    pass
  names = report_files(report)
  names = [n for n in names if n != REPORT] + ([REPORT] if REPORT in names else [])  # last
  names += sorted(n for n in os.listdir(d) if OWN_TMP.fullmatch(n))
  frames = os.path.join(d, FRAMES)
  if os.path.isdir(frames) and not os.path.islink(frames):
    names += [f"{FRAMES}/{n}" for n in sorted(os.listdir(frames)) if OWN_FRAME_TMP.fullmatch(n)]
  else:
    names = [n for n in names if not n.startswith(FRAMES + "/")]
  removed = []
  for n in names:
    p = os.path.join(d, *n.split("/"))
    if os.path.islink(p) or os.path.isfile(p):
      os.remove(p)
      removed.append(p)
  return removed


# ----------------------------------------------------------------------------- complete outputs

def complete_report(output_dir: str, stem: str) -> dict | None:
  """The report.json of OUTPUT_DIR/<stem>/ when its outputs are complete, else None.

  Complete: report.json (written last) exists and every file it lists is there. Raises
  ValueError when report.json exists but cannot be read (not written by a run: it is
  renamed into place whole).
  """
  d = input_dir(output_dir, stem)
  path = os.path.join(d, REPORT)
  try:
    with open(path) as f:
      report = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
  if not isinstance(report, dict):
    raise ValueError(f"{path}: not a pulse_jax.run report")
  names = [INPUT_PNG, report.get("latents") or LATENTS]
  for o in report.get("outputs") or []:
    names += [o.get("hr"), o.get("lr")]
  spread = report.get("spread") if isinstance(report.get("spread"), dict) else {}
  names += [n for n in (spread.get("file"), spread.get("values")) if n is not None]
  if not all(n and os.path.isfile(os.path.join(d, n)) for n in names):
    return None
  return report


def differences(before, now, label: str = "earlier run") -> list[str]:
  """'key (earlier run: a, now: b)' for each differing key of two JSON-like dicts, nested."""
  if not (isinstance(before, dict) and isinstance(now, dict)):
    return [] if before == now else [f"({label}: {before!r}, now: {now!r})"]
  out = []
  for k in sorted(set(before) | set(now)):
    a, b = before.get(k), now.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += [f"{k}.{d}" for d in differences(a, b, label)]
    elif a != b:
      out.append(f"{k} ({label}: {a!r}, now: {b!r})")
  return out


def result_identity(settings: dict, weights: dict) -> dict:
  """What a run's results depend on, as JSON: the settings but `RESULT_NEUTRAL_SETTINGS`, and
  the weights (their source files' sha256, or the directory when the metadata has none)."""
  w = {k: weights.get(k) for k in ("kind", "resolution", "sources")}
  if not weights.get("sources"):
    w["path"] = weights.get("path")
  return {"settings": {k: v for k, v in jsonable(settings).items()
                       if k not in RESULT_NEUTRAL_SETTINGS},
          "weights": jsonable(w)}


def resume_differences(report: dict, identity: dict, inp,
                       mask: dict | None = None) -> list[str]:
  """Why a complete output folder (its `report`) is not this command's result for `inp`
  (an `inputs.InputImage`): differing settings, weights, input pixels or --mask of the input
  (`mask`: its report entry, {'sha256': ...} or None); [] when it is."""
  before = result_identity(report.get("settings") or {}, report.get("weights") or {})
  diffs = differences(before, identity)
  was = report.get("input") or {}
  for k in ("image_key", "size"):
    if was.get(k) != inp.describe()[k]:
      diffs.append(f"input.{k} (earlier run: {was.get(k)!r}, now: {inp.describe()[k]!r})")
  was_mask, now_mask = ((m or {}).get("sha256") for m in (report.get("mask"), mask))
  if was_mask != now_mask:
    diffs.append(f"mask.sha256 (earlier run: {was_mask!r}, now: {now_mask!r})")
  return diffs


# ----------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a hidden temporary path next to `path`, renamed to `path` when the block succeeds
  (removed when it fails): a reader never sees a partly written file."""
  d, name = os.path.split(path)
  tmp = os.path.join(d, f".{name}.tmp-{os.getpid()}")
  if os.path.lexists(tmp):  # left by a killed process of the same id: never written through
    os.remove(tmp)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save_npz(path: str, arrays: dict) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)


def save_npy(path: str, array: np.ndarray) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.save(f, array, allow_pickle=False)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(text)


def latent_arrays(all_values: dict, ranking: np.ndarray, kept: np.ndarray) -> dict:
  """latents.npz of one input: every restart's best iterate (row r = restart r, float32),
  'kept' [K] (the restarts of hr_<k>.png, best first) and 'rank' [R] (0: best)."""
  ranking = np.asarray(ranking)
  rank = np.empty(ranking.shape[0], np.int32)
  rank[ranking] = np.arange(ranking.shape[0], dtype=np.int32)
  out = {k: np.asarray(v, np.float32) for k, v in all_values.items()}
  out.update(kept=np.asarray(kept, np.int32), rank=rank)
  return out


# ----------------------------------------------------------------------------- images

def to_pil(image01: np.ndarray) -> Image.Image:
  """[C, H, W] float in [0, 1] -> PIL image (RGB, or L for one channel)."""
  a = to_uint8(image01, channels_first=True)
  return Image.fromarray(a[:, :, 0] if a.shape[-1] == 1 else a)


def save_png(image01: np.ndarray, path: str) -> None:
  save_image(to_pil(image01), path)


def save_spread(spread: np.ndarray, folder: str) -> list[str]:
  """Writes an input's spread map into `folder`: SPREAD_PNG (`heat_map` on the fixed scale
  `SPREAD_VMAX`) and SPREAD_NPY (the values). spread: [H, W] float32. Returns the names."""
  save_image(Image.fromarray(heat_map(spread, SPREAD_VMAX)), os.path.join(folder, SPREAD_PNG))
  save_npy(os.path.join(folder, SPREAD_NPY), np.asarray(spread, np.float32))
  return [SPREAD_PNG, SPREAD_NPY]


def load_spread(folder: str) -> np.ndarray | None:
  """The values of an input's spread map ([H, W] float32, SPREAD_NPY in `folder`), or None when
  there is none (no file: fewer than 2 restarts within eps, or an older run)."""
  path = os.path.join(folder, SPREAD_NPY)
  if not os.path.isfile(path):
    return None
  return np.asarray(np.load(path, allow_pickle=False), np.float32)


def save_image(im: Image.Image, path: str) -> None:
  """A PNG, written atomically (`atomic_path`)."""
  with atomic_path(path) as tmp:
    im.save(tmp, format="PNG")


def upscale_nearest(im: Image.Image, size: int) -> Image.Image:
  """To size x size: nearest-neighbour when enlarging (pixels stay visible), Lanczos otherwise."""
  if im.width >= size:
    return im if im.width == size else im.resize((size, size), Image.Resampling.LANCZOS)
  return im.resize((size, size), Image.Resampling.NEAREST)


def gif_cell(generator_size: int) -> int:
  """Side of each picture in progress.gif: at least 128 px, at most 256 px."""
  return min(max(generator_size, 128), 256)


def frame_strip(parts: Sequence[Image.Image], size: int, gap: int = 2,
                background=(255, 255, 255)) -> Image.Image:
  """Side by side, each scaled to `size` (see `upscale_nearest`), `gap` pixels apart."""
  out = Image.new("RGB", (len(parts) * size + (len(parts) - 1) * gap, size), background)
  for i, p in enumerate(parts):
    out.paste(upscale_nearest(p.convert("RGB"), size), (i * (size + gap), 0))
  return out


def write_gif(frames: Sequence[Image.Image], path: str, ms_per_frame: int = 400) -> None:
  """Animated GIF (loops; the last frame held three times as long)."""
  frames = list(frames)
  durations = [ms_per_frame] * (len(frames) - 1) + [ms_per_frame * 3]
  with atomic_path(path) as tmp:
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                   duration=durations, loop=0, optimize=False)


# ----------------------------------------------------------------------------- reports

def versions() -> dict:
  from importlib import metadata
  out = {"python": platform.python_version()}
  for dist in ("pulse-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
               "pillow"):
    try:
      out[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
      out[dist] = None
  return out


def device_info() -> dict:
  import jax
  devs = jax.devices()
  return {"backend": jax.default_backend(), "device_count": len(devs),
          "local_device_count": jax.local_device_count(),
          "process_count": jax.process_count(),
          "device_kinds": sorted({d.device_kind for d in devs}),
          "platform": platform.platform(), "cpu_count": os.cpu_count()}


def jsonable(v):
  if isinstance(v, dict):
    return {str(k): jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [jsonable(x) for x in v]
  if isinstance(v, np.ndarray):
    return jsonable(v.tolist())
  if isinstance(v, (np.bool_, bool)):
    return bool(v)
  if isinstance(v, (np.integer,)):
    return int(v)
  if isinstance(v, (np.floating, float)):
    f = float(v)
    return f if np.isfinite(f) else None
  return v


def write_json(path: str, doc: dict) -> None:
  """JSON (non-finite floats as null), written atomically (`atomic_path`)."""
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(jsonable(doc), f, indent=1, allow_nan=False)
    f.write("\n")


def advice(stem: str, eps: float, closest_l2: float, restarts: int, steps: int,
           best_restart: int) -> str:
  """What to try when no restart reached eps (concrete flags, from the numbers of this run)."""
  ratio = closest_l2 / eps if eps > 0 else float("inf")
  larger = float(f"{closest_l2 * 1.1:.2g}")
  return (
      f"{stem}: no restart reached eps={eps:g}; the closest L2 was {closest_l2:.4g} "
      f"({ratio:.2f}x eps, restart {best_restart}). The best attempt is saved anyway, marked "
      f"NOT_WITHIN_EPS. To get within eps try: more steps (--steps={steps * 3}); more restarts "
      f"(--restarts={restarts * 4}); a larger eps (--eps={larger:g} would have accepted this "
      "result); or a cleaner input: a tightly cropped, aligned face (--align, or python -m "
      "pulse_jax.align), without compression artefacts, noise, borders or text.")


def range_of(result, b: int) -> dict:
  """Input b's range of plausible faces, from a `runtime.loop.SearchResult` (JSON-ready numbers).

  {'selection': 'diverse' | 'l2', 'filled': kept candidates not within eps, 'diversity': mean
  pairwise distance of the kept candidates (None when K < 2), 'spread': [H, W] float32 map or
  None (fewer than 2 restarts within eps), 'spread_count', 'spread_mean', 'spread_max',
  'steps_run', 'ended_early', 'first_within_step': [R] ints (0: never within eps)}.
  A result without these fields (a search core before them) gives selection 'l2', no diversity,
  no map, every step run."""
  within = np.asarray(result.within_eps[b], bool)
  kept = np.asarray(result.selected[b], np.int64)
  filled = getattr(result, "filled", None)
  diversity = getattr(result, "diversity", None)
  spread_count = getattr(result, "spread_count", None)
  count = int(spread_count[b]) if spread_count is not None else 0
  spread = getattr(result, "spread", None)
  spread = np.asarray(spread[b], np.float32) if spread is not None and count >= 2 else None
  mean = getattr(result, "spread_mean", None)
  steps_run = getattr(result, "steps_run", None)
  trace_steps = next(iter(result.trace.values())).shape[0] if result.trace else 0
  ended = getattr(result, "ended_early", None)
  first = getattr(result, "first_within_step", None)
  finite = lambda v: float(v) if v is not None and np.isfinite(v) else None  # noqa: E731
  return {
      "selection": str(getattr(result, "selection", "l2")),
      "filled": int(filled[b]) if filled is not None else int((~within[kept]).sum()),
      "diversity": finite(diversity[b]) if diversity is not None else None,
      "spread": spread,
      "spread_count": count,
      "spread_mean": (None if spread is None else finite(np.nanmean(spread)) if mean is None
                      else finite(mean[b])),
      "spread_max": finite(np.nanmax(spread)) if spread is not None else None,
      "steps_run": int(steps_run[b]) if steps_run is not None else int(trace_steps),
      "ended_early": bool(ended[b]) if ended is not None else False,
      "first_within_step": ([int(x) for x in first[b]] if first is not None else None),
  }


def search_steps(config, result) -> int:
  """Steps of the whole search: config.steps, plus config.ilo_steps per ILO cut point searched
  (`result.ilo_layers`; none without --ilo)."""
  from pulse_jax.search import ilo
  return int(ilo.total_steps(config, len(getattr(result, "ilo_layers", ()) or ())))


def ilo_block(result, b: int, *, config) -> dict | None:
  """The report's "ilo" block of input b (`runtime.loop.SearchResult`'s ILO fields), None when
  the search used no ILO (`result.ilo_layers` empty).

  {'layers': the cut points searched, in order; 'entered': those reached (the search may end
  before the last); 'starts': the step (0-based) each was entered at; 'steps_per_layer',
  'radius' (the l1 ball's radius, a fraction of ||centre||_1), 'learning_rate'; 'kept_layer':
  the last layer entered (the kept images render from its activation: latents.npz
  'ilo.<kept_layer>'), None when none was; 'kept': per kept candidate {'rank', 'restart',
  'moved': {layer: ||a - c||_1 / ||c||_1 of its kept activation, at most radius}}; 'best': the
  same for the best restart; 'meaning': `pulse_jax.io.gallery.ILO_LINE`}."""
  from pulse_jax.search import ilo
  layers = tuple(getattr(result, "ilo_layers", ()) or ())
  if not layers:
    return None
  moved_all = getattr(result, "ilo_moved", None) or {}
  entered = [layer for layer in layers if layer in moved_all]

  def moved(r: int) -> dict:
    return {layer: float(moved_all[layer][b, r]) for layer in entered}

  kept = [{"rank": k, "restart": int(r), "moved": moved(int(r))}
          for k, r in enumerate(np.asarray(result.selected[b]).tolist())]
  best_r = int(result.ranking[b, 0])
  return {"layers": list(layers), "entered": entered,
          "starts": [int(s) for s in ilo.phase_starts(config, len(layers))],
          "steps_per_layer": int(config.ilo_steps), "radius": float(config.ilo_radius),
          "learning_rate": float(config.ilo_learning_rate),
          "kept_layer": getattr(result, "ilo_kept_layer", None),
          "kept": kept, "best": {"restart": best_r, "moved": moved(best_r)},
          "meaning": ILO_LINE}


def ilo_text(block: dict) -> str:
  """One line of an input's ILO block: 'ILO b4,b8: the kept image left the generator's range
  by 3.1% (b4), 7.9% (b8) of the activation (radius 10%)' (the best restart's moves)."""
  layers = ",".join(block.get("layers") or [])
  moved = (block.get("best") or {}).get("moved") or {}
  radius = f"radius {block.get('radius', 0):.0%}"
  if not moved:
    return (f"ILO {layers}: no cut point entered (the search ended first): the kept image is "
            "in the generator's range")
  by = ", ".join(f"{v:.1%} ({layer})" for layer, v in moved.items())
  return (f"ILO {layers}: the kept image left the generator's range by {by} of the activation "
          f"({radius})")


def range_blocks(result, b: int, *, steps: int, spread_file: str | None) -> dict:
  """The report's "candidates", "spread" and "stopping" blocks of input b (`range_of`):
  which restarts were kept and how different they are, the spread map (spread_file: its file
  name, or None when not written) and how long the search of this input ran."""
  rng = range_of(result, b)
  restarts = result.l2.shape[1]
  kept = [{"rank": k, "restart": int(r), "l2": result.l2[b, r],
           "within_eps": bool(result.within_eps[b, r])}
          for k, r in enumerate(np.asarray(result.selected[b]).tolist())]
  has_map = rng["spread"] is not None
  return {
      "candidates": {"selection": rng["selection"], "kept": kept, "filled": rng["filled"],
                     "diversity": rng["diversity"]},
      "spread": {"file": spread_file if has_map else None,
                 "values": SPREAD_NPY if has_map and spread_file else None,
                 "restarts": rng["spread_count"], "mean": rng["spread_mean"],
                 "max": rng["spread_max"], "vmax": SPREAD_VMAX,
                 "why": None if has_map else NO_SPREAD},
      "stopping": {"steps_run": rng["steps_run"], "steps": steps,
                   "ended_early": rng["ended_early"],
                   "first_within_step": rng["first_within_step"],
                   "restart_steps": restarts * rng["steps_run"]},
  }


def input_report(inp, result, b: int, *, config, restarts: int, duplicates: int,
                 files: dict, settings: dict, weights: dict, env: dict, timings: dict,
                 advice_text: str | None) -> dict:
  """The report of input `b` of a batch's `driver.SearchResult`."""
  eps = config.eps
  rows = []
  for r in range(restarts):
    rows.append({
        "restart": r, "total": result.total[b, r],
        "terms": {k: v[b, r] for k, v in result.terms.items()},
        "l2": result.l2[b, r], "min_l2": result.min_l2[b, r],
        "best_step": result.best_step[b, r], "within_eps": result.within_eps[b, r],
        "failed": result.failed[b, r]})
  outs = []
  for k in range(result.selected.shape[1]):
    r = int(result.selected[b, k])
    outs.append({"rank": k, "restart": r, "hr": files["hr"][k], "lr": files["lr"][k],
                 "within_eps": result.within_eps[b, r], "l2": result.l2[b, r],
                 "total": result.total[b, r], "best_step": result.best_step[b, r]})
  within = bool(result.within_eps[b].any())
  best_r = int(result.ranking[b, 0])
  blocks = range_blocks(result, b, steps=search_steps(config, result),
                       spread_file=files.get("spread"))
  ilo = ilo_block(result, b, config=config)
  if ilo is not None:
    blocks["ilo"] = ilo
  return {
      "input": inp.describe(),
      "status": "within_eps" if within else "not_within_eps",
      "within_eps": within,
      "eps": eps,
      "success_rate": result.success_rate[b],
      "restarts_within_eps": int(result.within_eps[b].sum()),
      "restarts_failed": int(result.failed[b].sum()),
      "best": {"restart": best_r, "l2": result.l2[b, best_r], "total": result.total[b, best_r],
               "best_step": result.best_step[b, best_r]},
      "closest_l2": float(np.nanmin(np.where(np.isfinite(result.l2[b]), result.l2[b], np.nan)))
      if np.isfinite(result.l2[b]).any() else None,
      "advice": advice_text,
      "outputs": outs,
      **blocks,
      "latents": files["latents"],
      "restarts": rows,
      "settings": settings,
      "seed": config.seed,
      "weights": weights,
      "versions": env["versions"],
      "device": env["device"],
      "timings": timings,
      "responsible_use": responsible_use.NOTICE,
  }


def trace_doc(result, b: int) -> dict:
  """<stem>/trace.json of input `b` (the format `pulse_jax.gallery` reads): per restart, the
  losses at every step's iterate before its update, for the steps this input ran (`steps_run`:
  an input that stopped early has shorter curves, not a tail of nulls); non-finite values
  become null."""
  steps = next(iter(result.trace.values())).shape[0] if result.trace else 0
  steps = min(steps, range_of(result, b)["steps_run"])
  return {"format": "pulse_jax.trace/1", "steps": list(range(1, steps + 1)),
          "restarts": {str(r): {k: v[:steps, b, r] for k, v in result.trace.items()
                                if k != "active"}
                       for r in range(result.l2.shape[1])}}


def write_compact_json(path: str, doc: dict) -> None:
  """Like `write_json`, on one line (traces: steps x restarts numbers)."""
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(jsonable(doc), f, separators=(",", ":"), allow_nan=False)
    f.write("\n")


def print_summary(summary: dict, file=sys.stdout) -> None:
  s = summary
  kept = s.get("kept") or 0
  print(f"pulse_jax.run: {s['inputs']} input(s): {s['within_eps']} within eps, "
        f"{s['not_within_eps']} not within eps, {s['failed']} failed"
        + (f", {s['skipped']} skipped" if s.get("skipped") else "")
        + (f"; {kept} kept from an earlier run (not searched again)" if kept else ""),
        file=file)
  if s["searched"]:
    speed = (f"{s['seconds_per_image']:.2f} s per image; {s['restart_steps_per_s']:.1f} "
             f"restart-steps/s; compile {s['compile_s']:.1f} s, search {s['search_s']:.1f} s, "
             if s.get("seconds_per_image") is not None else "nothing searched; ")
    print(f"  success rate {s['success_rate']:.0%} of searched inputs (eps={s['eps']:g}); "
          f"{speed}wall {s['wall_s']:.1f} s", file=file)
  for f in s["files"]:
    extra = (f"L2 {f['best_l2']:.3g}" if f.get("best_l2") is not None else "") + (
        f"  {f['message']}" if f.get("message") else "") + (_kept_text(f) if f.get("kept") else "")
    print(f"  {f['status']:<15} {f['input']}  {extra}".rstrip(), file=file)
  if s.get("error"):
    print(f"  summary: NOT WRITTEN: {s['error']}", file=file)
  else:
    print(f"  summary: {s['summary_path']}", file=file)


def _kept_text(entry: dict) -> str:
  """'  (kept: searched in 12.3 s by an earlier run)' for an input kept from an earlier run."""
  t = entry.get("timings") if isinstance(entry.get("timings"), dict) else {}
  wall = t.get("batch_wall_s")
  if isinstance(wall, (int, float)) and np.isfinite(wall):
    return f"  (kept: searched in {wall:.1f} s by an earlier run)"
  return "  (kept from an earlier run)"
