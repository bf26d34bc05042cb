"""The quality harness: ground-truth HR images -> degraded LR inputs -> searched with one or more
configurations -> every figure per image and in aggregate, beside the nearest and bicubic
up-sampling baselines (the PULSE paper's Table 2). `python -m pulse_jax.evaluate` and
`pulse_jax.evaluate` run `evaluate`; docs/quality.md ("The harness") describes the files.

OUTPUT_DIR after `evaluate` (nothing is written outside it):
  gt/<stem>.png            the ground truth at the generator's resolution (uint8 RGB)
  lr/<stem>.png            D(ground truth) in float, quantised to uint8 (the searched inputs)
  nearest/<stem>.png, bicubic/<stem>.png   the baselines (`pulse_jax.metrics.upsampling`)
  <config>/                each configuration's run folder (`pulse_jax.run`'s files)
  evaluation.json, evaluation.md, index.html   the figures, the table, the page

Every figure is computed from those files (uint8 PNGs read back as float in [0, 1]): PSNR and
SSIM against gt/<stem>.png, NIQE where the image is at least `NIQE_MIN_SIDE` px, the L2 and the
within-eps test from each input's report.json (the baselines: the L2 of D(baseline) against
the LR input), the restart-steps from its "stopping" block and the times from its "timings".
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from typing import Callable

import numpy as np

from pulse_jax.io import images as image_files
from pulse_jax.io import input_images
from pulse_jax.io import run_files
from pulse_jax.job import options
from pulse_jax.job import settings as run_options
from pulse_jax.job.errors import UsageError
from pulse_jax.job.settings import RunOptions

FORMAT = "pulse_jax.evaluation/1"
EVALUATION_JSON = "evaluation.json"
EVALUATION_MD = "evaluation.md"
GT_DIR, LR_DIR = "gt", "lr"
BASELINES = ("nearest", "bicubic")
NIQE_MIN_SIDE = 192           # pulse_jax.metrics.niqe needs 2 x 2 blocks of 96 px
DEFAULT_CONFIG = "pulse"      # the one configuration when none is given
# Names a configuration cannot take (the harness's own files and folders), without case.
RESERVED = (GT_DIR, LR_DIR, *BASELINES, "ground_truth", EVALUATION_JSON, EVALUATION_MD,
            run_files.INDEX)
# Options a configuration cannot change: the inputs and outputs are the harness's, the model
# and the degradation are shared by every configuration (the LR inputs are made once).
FIXED = ("input", "output_dir", "weights", *(o.name for o in options.GROUPS["forward"]))
# The table's columns: (key in a method's aggregate, heading, format).
COLUMNS = (("success_rate", "success rate", "{:.0%}"), ("median_l2", "median best L2", "{:.3g}"),
           ("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("niqe", "NIQE", "{:.2f}"),
           ("restart_steps", "restart-steps", "{:.0f}"), ("s_per_image", "s per image", "{:.2f}"))


# ----------------------------------------------------------------------------- configurations

@dataclasses.dataclass(frozen=True)
class Config:
  """One configuration: its name (its folder OUTPUT_DIR/<name>/) and the options it sets over
  the common ones ({option name: value}, values of the option's type)."""
  name: str
  changes: dict


def _parse_value(o: options.Option, text: str):
  """A configuration's value (text) as the option's type; ValueError('must be ...')."""
  low = text.strip().lower()
  if o.optional and low in ("", "none"):
    return None
  if o.type is bool:
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise ValueError(f"must be true or false (got {text!r})")
  try:
    if o.type is int:
      return int(text)
    if o.type is float:
      return float(text)
  except ValueError:
    raise ValueError(f"must be {'an integer' if o.type is int else 'a number'} (got {text!r})") \
        from None
  return text


def configurable() -> list[str]:
  """The options a configuration may set: every job option but `FIXED`."""
  return [o.name for o in options.run_options() if o.name not in FIXED]


def check_config_name(name: str) -> None:
  if not (name and all(c.isalnum() or c in "_-" for c in name) and name.isascii()):
    raise UsageError(f"--configs: configuration name {name!r} must be letters, digits, '_' "
                     "or '-'")
  if name.casefold() in RESERVED:
    raise UsageError(f"--configs: {name!r} is a name of the harness's own files; reserved: "
                     f"{', '.join(RESERVED)}")


def parse_configs(spec) -> list[Config]:
  """The configurations of `--configs`: 'name:flag=value;flag=value,name2:...' (a flag may be
  written with or without '--'; a boolean alone is true, 'noflag' false; 'name' or 'name:'
  alone changes nothing), or a mapping {name: {option: value}} (the API). Empty or None: one
  configuration, `DEFAULT_CONFIG`, with the common options. UsageError naming --configs."""
  if not spec:
    return [Config(DEFAULT_CONFIG, {})]
  if isinstance(spec, dict):
    raw = [(name, dict(changes or {})) for name, changes in spec.items()]
  else:
    raw = []
    for part in (p.strip() for p in str(spec).split(",")):
      if not part:
        continue
      name, _, body = part.partition(":")
      changes = {}
      for item in (s.strip() for s in body.split(";")):
        if not item:
          continue
        key, eq, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not eq:
          o = options.OPTIONS.get(key)
          negated = options.OPTIONS.get(key[2:]) if key.startswith("no") else None
          if o is not None and o.type is bool:
            changes[key] = True
            continue
          if o is None and negated is not None and negated.type is bool:
            changes[key[2:]] = False
            continue
          raise UsageError(f"--configs: {name.strip()}: {item!r} is not flag=value")
        changes[key] = value.strip()
      raw.append((name.strip(), changes))
  allowed = configurable()
  out, seen = [], set()
  for name, changes in raw:
    check_config_name(name)
    if name.casefold() in seen:
      raise UsageError(f"--configs: configuration {name!r} given twice")
    seen.add(name.casefold())
    typed = {}
    for key, value in changes.items():
      if key in FIXED:
        raise UsageError(f"--configs: {name}: --{key} is shared by every configuration (the "
                         "inputs, the model and the degradation are made once); give it as a "
                         "flag of its own")
      if key not in allowed:
        raise UsageError(f"--configs: {name}: unknown option {key!r}; a configuration may set "
                         f"{', '.join(allowed)}")
      try:
        typed[key] = _parse_value(options.OPTIONS[key], value) if isinstance(value, str) \
            else value
      except ValueError as e:
        raise UsageError(f"--configs: {name}: --{key}: {e}") from None
    out.append(Config(name, typed))
  if not out:
    raise UsageError("--configs: no configuration given")
  return out


def config_options(base: RunOptions, config: Config, output_dir: str) -> RunOptions:
  """The job options of one configuration: the common ones given, the configuration's
  changes, the LR folder as --input and OUTPUT_DIR/<name> as --output_dir (a --checkpoint_dir
  gets a sub-folder per configuration)."""
  given = {n: getattr(base, n) for n in base.given_names() if n not in ("input", "output_dir")}
  given.update(config.changes)
  if given.get("checkpoint_dir"):
    given["checkpoint_dir"] = os.path.join(os.fspath(given["checkpoint_dir"]), config.name)
  return RunOptions(**given, input=os.path.join(output_dir, LR_DIR),
                    output_dir=os.path.join(output_dir, config.name))


# ----------------------------------------------------------------------------- ground truth

@dataclasses.dataclass
class GroundTruth:
  """One ground-truth image: its file, output stem, pixels [G, G, 3] uint8 at the generator's
  resolution, and a note when it was resized (None when it was G x G already)."""
  path: str
  stem: str
  pixels: np.ndarray
  resized_from: tuple[int, int] | None


def hr_files(hr) -> list[pathlib.Path]:
  """The ground-truth files: a folder (its image files, `input_images.list_inputs`), a file,
  or several of either (a list, or one string of comma-separated names). UsageError naming --hr
  when there is none or a name does not exist."""
  names = hr if isinstance(hr, (list, tuple)) else (
      [s for s in str(hr).split(",") if s.strip()] if isinstance(hr, str) else [hr])
  if not names:
    raise UsageError("--hr: no ground-truth images given")
  files = []
  for name in names:
    try:
      found, _ = input_images.list_inputs(name.strip() if isinstance(name, str) else name)
    except FileNotFoundError as e:
      raise UsageError(str(e).replace("--input", "--hr", 1)) from None
    files += found
  if not files:
    raise UsageError(f"--hr: no image files in {', '.join(map(str, names))}")
  return files


def read_ground_truth(path: pathlib.Path, stem: str, size: int) -> GroundTruth:
  """Reads one ground-truth image with the allow-listed reader (`pulse_jax.io.images`),
  converted to RGB (alpha on black); it must be square; resized to size x size (PIL LANCZOS)
  when it is not already. InputError naming the file."""
  from PIL import Image
  try:
    im, _ = image_files.read_image(path)
  except image_files.ImageFileError as e:
    raise input_images.InputError(f"--hr: {e}") from None
  w, h = im.size
  if w != h:
    raise input_images.InputError(f"--hr: {path}: {w}x{h} is not square; the ground truth must "
                                  "be a square image (crop it first)")
  rgb, _ = input_images.to_rgb(im)
  resized = None
  if w != size:
    rgb = np.asarray(Image.fromarray(rgb, "RGB").resize((size, size), Image.Resampling.LANCZOS))
    resized = (w, h)
  return GroundTruth(str(path), stem, np.ascontiguousarray(rgb, np.uint8), resized)


def degrade(gt_u8: np.ndarray, forward) -> np.ndarray:
  """D(ground truth) in float32, quantised: `gt_u8: [G, G, 3]` uint8 -> `[g, g, C']` uint8
  (C' = 1 with --grayscale), g = G / factor (`image_files.to_uint8`: rounded half to even)."""
  import jax.numpy as jnp
  hr = np.moveaxis(gt_u8.astype(np.float32) / 255.0, -1, 0)[None]      # [1, 3, G, G]
  arrays = {k: jnp.asarray(v) for k, v in forward.arrays().items()}
  lr = np.asarray(forward.apply(jnp.asarray(hr), arrays))[0]           # [C', g, g]
  return image_files.to_uint8(lr, channels_first=True)


def _write_png(path: str, pixels_u8: np.ndarray) -> None:
  from PIL import Image
  px = pixels_u8[..., 0] if pixels_u8.ndim == 3 and pixels_u8.shape[-1] == 1 else pixels_u8
  Image.fromarray(px, "L" if px.ndim == 2 else "RGB").save(path)


def read_png(path: str) -> np.ndarray:
  """A PNG the harness or a run wrote as [H, W, 3] float64 in [0, 1] (gray replicated)."""
  im, _ = image_files.read_image(path)
  rgb, _ = input_images.to_rgb(im)
  return rgb.astype(np.float64) / 255.0


# ----------------------------------------------------------------------------- figures

def image_figures(image: np.ndarray, gt: np.ndarray) -> dict:
  """PSNR and SSIM of `image` against `gt` (both [G, G, 3] float in [0, 1]) and NIQE when
  G >= NIQE_MIN_SIDE (else None). PSNR of equal images (inf) is None."""
  from pulse_jax.metrics import fidelity, niqe
  p = fidelity.psnr(image, gt)
  return {"psnr": p if math.isfinite(p) else None,
          "ssim": float(fidelity.ssim(image, gt)),
          "niqe": (float(niqe.niqe(np.round(image * 255.0)))
                   if min(image.shape[:2]) >= NIQE_MIN_SIDE else None)}


def lr_l2(image: np.ndarray, lr: np.ndarray, forward) -> float:
  """Mean squared error of D(image) against the LR input (`image: [G, G, 3]`, `lr: [g, g, C']`
  float in [0, 1]), over every pixel and channel."""
  import jax.numpy as jnp
  x = np.moveaxis(image.astype(np.float32), -1, 0)[None]
  arrays = {k: jnp.asarray(v) for k, v in forward.arrays().items()}
  d = np.asarray(forward.apply(jnp.asarray(x), arrays), np.float64)[0]
  return float(np.mean((np.moveaxis(d, 0, -1) - lr) ** 2))


def method_figures_of_run(run_dir: str, stem: str, gt: np.ndarray) -> dict:
  """One configuration's figures of one input, from OUTPUT_DIR/<config>/<stem>/: its
  report.json (status, within eps, the best candidate's L2, restart-steps, times) and hr_0.png
  (PSNR, SSIM, NIQE against `gt`). {'status': 'failed', ...None} when there is no report."""
  d = os.path.join(run_dir, stem)
  try:
    with open(os.path.join(d, run_files.REPORT)) as f:
      report = json.load(f)
  except (OSError, ValueError):
    return {"status": "failed", "within_eps": False, "l2": None, "psnr": None, "ssim": None,
            "niqe": None, "restart_steps": None, "steps_run": None, "search_s": None,
            "wall_s": None, "image": None}
  best = report["outputs"][0]
  t = report.get("timings") or {}
  per = max(int(t.get("batch_images") or 1), 1)
  stopping = report.get("stopping") if isinstance(report.get("stopping"), dict) else {}
  steps = stopping.get("restart_steps")
  if steps is None and t.get("restart_steps") is not None:
    steps = t["restart_steps"] / per
  image = os.path.join(d, best["hr"])
  out = {"status": report["status"], "within_eps": bool(report["within_eps"]),
         "l2": float(best["l2"])}
  out.update(image_figures(read_png(image), gt))
  out.update({"restart_steps": steps, "steps_run": stopping.get("steps_run"),
              "search_s": t["search_s"] / per if "search_s" in t else None,
              "wall_s": t["batch_wall_s"] / per if "batch_wall_s" in t else None,
              "image": os.path.relpath(image, os.path.dirname(run_dir))})
  return out


def _mean(values) -> float | None:
  v = [x for x in values if x is not None and math.isfinite(x)]
  return float(np.mean(v)) if v else None


def _median(values) -> float | None:
  v = [x for x in values if x is not None and math.isfinite(x)]
  return float(np.median(v)) if v else None


def aggregate(per_image: list[dict]) -> dict:
  """A method's figures over the images: success rate (within eps / images; a failed input
  counts as not within), median best L2, mean PSNR, SSIM, NIQE, restart-steps, wall seconds
  per image (`s_per_image`) and search seconds per image, over the images that have them."""
  return {"images": len(per_image),
          "within_eps": sum(bool(f["within_eps"]) for f in per_image),
          "failed": sum(f.get("status") == "failed" for f in per_image),
          "success_rate": (sum(bool(f["within_eps"]) for f in per_image) / len(per_image)
                           if per_image else None),
          "median_l2": _median(f["l2"] for f in per_image),
          "psnr": _mean(f["psnr"] for f in per_image),
          "ssim": _mean(f["ssim"] for f in per_image),
          "niqe": _mean(f["niqe"] for f in per_image),
          "restart_steps": _mean(f.get("restart_steps") for f in per_image),
          "s_per_image": _mean(f.get("wall_s") for f in per_image),
          "search_s_per_image": _mean(f.get("search_s") for f in per_image)}


# ----------------------------------------------------------------------------- the harness

def _prepare_lr_folder(folder: str, stems: list[str], overwrite: bool) -> None:
  """OUTPUT_DIR/lr/ must hold only this evaluation's inputs (it is every run's --input): files
  of another set are an error, or removed with --overwrite."""
  os.makedirs(folder, exist_ok=True)
  mine = {f"{s}.png" for s in stems}
  others = sorted(p.name for p in pathlib.Path(folder).iterdir()
                  if p.name not in mine and not p.name.startswith("."))
  if others and not overwrite:
    raise UsageError(f"{folder} holds files of another evaluation ({', '.join(others[:5])}"
                     f"{', ...' if len(others) > 5 else ''}); use a new --output_dir, or "
                     "--overwrite to replace them")
  for name in others:
    p = pathlib.Path(folder) / name
    if p.is_file() or p.is_symlink():
      p.unlink()
    else:
      raise UsageError(f"{p}: a folder inside the LR inputs' folder; remove it or use a new "
                       "--output_dir")


def evaluate(hr, factor: int, base: RunOptions | None = None, configs=None, *, model=None,
             log: Callable[[str], None] | None = None,
             warn: Callable[[str], None] | None = None) -> dict:
  """The harness: reads the ground truth `hr` (`hr_files`), degrades it by `factor` with the
  forward model of `base`'s forward options, runs each configuration (`parse_configs`) into
  OUTPUT_DIR/<name>/ and writes evaluation.json, evaluation.md and index.html into
  `base.output_dir`. Returns the evaluation (what evaluation.json holds) with 'exit_code': 0,
  or 1 when some configuration failed an input.

  base: the common options (`RunOptions`; their --output_dir is OUTPUT_DIR, required; --input
  is not used); model: the loaded model (default: --weights). Raises UsageError for bad
  options or configurations, InputError naming a ground-truth file that cannot be used
  (unreadable, not square), both before anything is searched.
  """
  from pulse_jax.io import evaluation_page
  from pulse_jax.job import model as job_model
  from pulse_jax.job import pipeline
  say = log or (lambda s: print(s, flush=True))
  base = base or RunOptions()
  if base.output_dir is None or "output_dir" not in base.given_names():
    raise UsageError("--output_dir: required (where the LR inputs, the runs and the figures "
                     "are written)")
  out_dir = os.fspath(base.output_dir)
  if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
    raise UsageError(f"--factor: must be an integer >= 1 (got {factor!r})")
  factor = int(factor)
  cfgs = parse_configs(configs)
  files = hr_files(hr)

  # Options checked (each configuration's too) before anything is loaded or written.
  resolved = run_options.resolve(base, model.name if model is not None else base.weights)
  run_options.check_options(resolved)
  runs = []
  for c in cfgs:
    o = config_options(base, c, out_dir)
    r = run_options.resolve(o, model.name if model is not None else o.weights)
    try:
      run_options.check_options(r)
    except UsageError as e:
      raise UsageError(f"--configs: {c.name}: {e}") from None
    runs.append((c, o))

  model = model or job_model.load_model(resolved.weights, say)
  G = model.resolution
  if G % factor:
    raise UsageError(f"--factor: must divide the generator's size {G} (got {factor})")
  generator = model.generator(resolved.compute_dtype, resolved.remat)
  forward = pipeline.forward_model(resolved, generator).with_factor(factor)
  try:
    forward.check_hr_shape((3, G, G))
  except ValueError as e:
    raise UsageError(f"--factor={factor}: {e}") from None
  stems = input_images.unique_stems(files)
  truths = [read_ground_truth(f, s, G) for f, s in zip(files, stems)]   # InputError first
  for t in truths:
    if t.resized_from:
      say(f"{t.path}: ground truth {t.resized_from[0]}x{t.resized_from[1]} resized to {G}x{G} "
          "(LANCZOS)")

  os.makedirs(out_dir, exist_ok=True)
  _prepare_lr_folder(os.path.join(out_dir, LR_DIR), stems, bool(resolved.overwrite))
  for sub in (GT_DIR, *BASELINES):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  images = []
  for t in truths:
    lr = degrade(t.pixels, forward)
    entry = {"stem": t.stem, "hr": t.path, "resized_from": t.resized_from,
             "gt": f"{GT_DIR}/{t.stem}.png", "lr": f"{LR_DIR}/{t.stem}.png", "methods": {}}
    _write_png(os.path.join(out_dir, entry["gt"]), t.pixels)
    _write_png(os.path.join(out_dir, entry["lr"]), lr)
    images.append(entry)

  # The configurations, one run each (outputs of an earlier identical run are kept).
  exit_code, run_info = 0, []
  for c, o in runs:
    if not resolved.quiet:
      say(f"configuration {c.name}: {_describe(c)}")
    t0 = time.perf_counter()
    summary = pipeline.run(o, model=model, log=lambda s, n=c.name: say(f"[{n}] {s}"), warn=warn)
    # wall_s: this call's seconds; inputs kept from an earlier identical run (`kept`) take
    # none, so a resumed evaluation's per-image seconds are the reports' (method figures).
    run_info.append({"name": c.name, "options": c.changes, "output_dir": c.name,
                     "wall_s": time.perf_counter() - t0, "kept": int(summary.get("kept") or 0),
                     "exit_code": summary["exit_code"]})
    exit_code = max(exit_code, int(summary["exit_code"]))

  # The figures, from the files.
  from pulse_jax.metrics import upsampling
  for entry in images:
    gt = read_png(os.path.join(out_dir, entry["gt"]))
    lr = np.asarray(read_png(os.path.join(out_dir, entry["lr"])))
    lr_d = lr[..., :1] if forward.target_channels == 1 else lr
    entry["ground_truth"] = {"niqe": image_figures(gt, gt)["niqe"]}
    for name, up in (("nearest", upsampling.nearest), ("bicubic", upsampling.bicubic)):
      path = f"{name}/{entry['stem']}.png"
      _write_png(os.path.join(out_dir, path), image_files.to_uint8(up(lr, factor)))
      img = read_png(os.path.join(out_dir, path))
      l2 = lr_l2(img, lr_d, forward)
      entry["methods"][name] = {"status": "baseline", "within_eps": l2 <= forward.effective_eps(
          resolved.eps), "l2": l2, **image_figures(img, gt), "restart_steps": None,
          "steps_run": None, "search_s": None, "wall_s": None, "image": path}
    for c, _ in runs:
      entry["methods"][c.name] = method_figures_of_run(os.path.join(out_dir, c.name),
                                                       entry["stem"], gt)
  methods = [*BASELINES, *(c.name for c, _ in runs)]
  evaluation = {
      "format": FORMAT, "factor": factor, "generator": {"name": model.name, "resolution": G,
                                                       "kind": model.kind},
      "lr_size": G // factor, "forward": forward.describe(), "eps": resolved.eps,
      "options": {n: getattr(base, n) for n in sorted(base.given_names())
                  if n not in ("input",)},
      "configs": run_info, "methods": methods,
      "niqe_min_side": NIQE_MIN_SIDE,
      "aggregate": {m: aggregate([e["methods"][m] for e in images]) for m in methods},
      "ground_truth": {"niqe": _mean(e["ground_truth"]["niqe"] for e in images)},
      "images": images, "exit_code": exit_code}
  evaluation = _jsonable(evaluation)
  _write_json(os.path.join(out_dir, EVALUATION_JSON), evaluation)
  with open(os.path.join(out_dir, EVALUATION_MD), "w", encoding="utf-8") as f:
    f.write(table_markdown(evaluation))
  page = evaluation_page.write_page(out_dir, evaluation)
  say(table_markdown(evaluation))
  say(f"evaluation: {os.path.join(out_dir, EVALUATION_JSON)}, {page}")
  return evaluation


def _describe(c: Config) -> str:
  return "; ".join(f"--{k}={v}" for k, v in c.changes.items()) or "the common options"


def _jsonable(x):
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    return _jsonable(x.item())
  if isinstance(x, os.PathLike):
    return os.fspath(x)
  return x


def _write_json(path: str, value: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, allow_nan=False)
  os.replace(tmp, path)


def cell(value, fmt: str) -> str:
  """A table cell: the value formatted, '-' for None."""
  return "-" if value is None else fmt.format(value)


def table_rows(evaluation: dict) -> list[tuple[str, list[str]]]:
  """(row name, cells) of the table: the ground truth (NIQE only), then each method."""
  agg = evaluation["aggregate"]
  rows = [("ground truth", ["-"] * 4 + [cell(evaluation["ground_truth"]["niqe"], "{:.2f}")]
           + ["-"] * 2)]
  for m in evaluation["methods"]:
    rows.append((m, [cell(agg[m][k], fmt) for k, _, fmt in COLUMNS]))
  return rows


def table_markdown(evaluation: dict) -> str:
  """evaluation.md: the table (rows: ground truth, nearest, bicubic, each configuration)."""
  g = evaluation["generator"]
  lines = [f"# Evaluation: {len(evaluation['images'])} image(s), {evaluation['lr_size']} px -> "
           f"{g['resolution']} px (factor {evaluation['factor']}), {g['name']}", "",
           "| method | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
           "|---|" + "---:|" * len(COLUMNS)]
  for name, cells in table_rows(evaluation):
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += ["", f"eps {evaluation['eps']:g}; best L2: of the best candidate (hr_0) against the LR input, "
            "for the baselines of D(up-sampled) against it; PSNR, SSIM against the ground "
            f"truth; NIQE only at {NIQE_MIN_SIDE} px and more ('-' below); restart-steps and s "
            "per image (wall time of its batch, compile included) per image, means.", ""]
  return "\n".join(lines)
