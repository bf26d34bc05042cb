"""What `python -m pulse_jax.run` writes: per-input images, latents, JSON reports, the summary.

Per input, under OUTPUT_DIR/<stem>/ (K = --duplicates, best first):
  input.png            the search target as searched (after conversion and --fit)
  hr_<k>.png           the K best restarts' high-resolution images (k = 0..K-1)
  lr_<k>.png           the same iterates down-sampled (what was compared with input.png)
  latents.npz          'latent' [K, l, D] and 'noise_<i>' [K, 1, r, r] (start-values format:
                       re-render with pulse_jax.render, or pass back as --init)
  report.json          see `input_report`
  NOT_WITHIN_EPS.txt   only when no restart reached eps: the closest L2 and advice
  frames/, progress.gif   with --save_intermediate: best-so-far HR/LR after each chunk
OUTPUT_DIR/summary.json  the run summary (`run_summary`).
"""
from __future__ import annotations

import glob
import json
import os
import platform
import sys
from typing import Sequence

import numpy as np
from PIL import Image

from pulse_jax.render import to_uint8

SUMMARY = "summary.json"
REPORT = "report.json"
LATENTS = "latents.npz"
NOT_WITHIN_EPS = "NOT_WITHIN_EPS.txt"
GIF = "progress.gif"
FRAMES = "frames"
INPUT_PNG = "input.png"
# Files and folders of ours in OUTPUT_DIR/<stem>/ (removed there before writing with --overwrite).
OWNED_PATTERNS = (INPUT_PNG, "hr_*.png", "lr_*.png", LATENTS, REPORT, NOT_WITHIN_EPS, GIF)


def planned_files(output_dir: str, stem: str, duplicates: int, save_intermediate: bool) -> list[str]:
  d = os.path.join(output_dir, stem)
  files = [os.path.join(d, n) for n in (INPUT_PNG, LATENTS, REPORT)]
  files += [os.path.join(d, f"{kind}_{k}.png") for k in range(duplicates) for kind in ("hr", "lr")]
  if save_intermediate:
    files.append(os.path.join(d, GIF))
  return files


def existing_outputs(output_dir: str, stem: str) -> list[str]:
  """Our files already in OUTPUT_DIR/<stem>/ (any run's, whatever its --duplicates)."""
  d = os.path.join(output_dir, stem)
  found = []
  for pat in OWNED_PATTERNS:
    found += sorted(glob.glob(os.path.join(glob.escape(d), pat)))
  frames = os.path.join(d, FRAMES)
  if os.path.isdir(frames) and os.listdir(frames):
    found.append(frames + os.sep)
  return found


def clear_outputs(output_dir: str, stem: str) -> None:
  """Removes our files from OUTPUT_DIR/<stem>/ (for --overwrite); leaves anything else."""
  d = os.path.join(output_dir, stem)
  for pat in OWNED_PATTERNS:
    for f in glob.glob(os.path.join(glob.escape(d), pat)):
      os.remove(f)
  frames = os.path.join(d, FRAMES)
  if os.path.isdir(frames):
    for f in glob.glob(os.path.join(glob.escape(frames), "*.png")):
      os.remove(f)


# ----------------------------------------------------------------------------- images

def to_pil(image01: np.ndarray) -> Image.Image:
  """[C, H, W] float in [0, 1] -> PIL image (RGB, or L for one channel)."""
  a = to_uint8(image01)
  return Image.fromarray(a[:, :, 0] if a.shape[-1] == 1 else a)


def save_png(image01: np.ndarray, path: str) -> None:
  to_pil(image01).save(path)


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
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0,
                 optimize=False)


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
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(jsonable(doc), f, indent=1, allow_nan=False)
    f.write("\n")
  os.replace(tmp, path)


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
        "best_step": result.best_step[b, r], "within_eps": result.within_eps[b, r]})
  outs = []
  for k in range(result.selected.shape[1]):
    r = int(result.selected[b, k])
    outs.append({"rank": k, "restart": r, "hr": files["hr"][k], "lr": files["lr"][k],
                 "within_eps": result.within_eps[b, r], "l2": result.l2[b, r],
                 "total": result.total[b, r], "best_step": result.best_step[b, r]})
  within = bool(result.within_eps[b].any())
  best_r = int(result.ranking[b, 0])
  return {
      "input": inp.describe(),
      "status": "within_eps" if within else "not_within_eps",
      "within_eps": within,
      "eps": eps,
      "success_rate": result.success_rate[b],
      "restarts_within_eps": int(result.within_eps[b].sum()),
      "best": {"restart": best_r, "l2": result.l2[b, best_r], "total": result.total[b, best_r],
               "best_step": result.best_step[b, best_r]},
      "closest_l2": float(np.nanmin(np.where(np.isfinite(result.l2[b]), result.l2[b], np.nan)))
      if np.isfinite(result.l2[b]).any() else None,
      "advice": advice_text,
      "outputs": outs,
      "latents": files["latents"],
      "restarts": rows,
      "settings": settings,
      "seed": config.seed,
      "weights": weights,
      "versions": env["versions"],
      "device": env["device"],
      "timings": timings,
  }


def print_summary(summary: dict, file=sys.stdout) -> None:
  s = summary
  print(f"pulse_jax.run: {s['inputs']} input(s): {s['within_eps']} within eps, "
        f"{s['not_within_eps']} not within eps, {s['failed']} failed"
        + (f", {s['skipped']} skipped" if s.get("skipped") else ""), file=file)
  if s["searched"]:
    print(f"  success rate {s['success_rate']:.0%} of searched inputs (eps={s['eps']:g}); "
          f"{s['seconds_per_image']:.2f} s per image; {s['restart_steps_per_s']:.1f} restart-steps/s"
          f"; compile {s['compile_s']:.1f} s, search {s['search_s']:.1f} s, wall {s['wall_s']:.1f} s",
          file=file)
  for f in s["files"]:
    extra = (f"L2 {f['best_l2']:.3g}" if f.get("best_l2") is not None else "") + (
        f"  {f['message']}" if f.get("message") else "")
    print(f"  {f['status']:<15} {f['input']}  {extra}".rstrip(), file=file)
  print(f"  summary: {s['summary_path']}", file=file)
