"""python -m pulse_jax.run --input=FILE_OR_DIR --output_dir=DIR [--weights=...] [options]

The PULSE job end to end: read the low-resolution inputs, search the generator's latent space
with many restarts per image (batched: --batch_size images of the same size per compiled
program), and write per input the best --duplicates HR images, their LR images, their latents
(re-render with pulse_jax.render, or refine with --init) and a JSON report; then print and
write the run summary (OUTPUT_DIR/summary.json). See docs/run.md.

With no --weights the built-in 64x64 DCGAN face model is used; with no --input the shipped
samples (pulse_jax/samples/astronaut_8x8.png and astronaut_16x16.png).

Exit status: 0 when every input was searched and saved (within eps or not: see the reports),
1 when some input failed (unreadable, wrong size, failed search), 2 on a usage or set-up error
(bad option, weights missing, existing outputs without --overwrite, nothing to do).

Everything but the flags lives in importable functions: `run_job(RunOptions(...)) -> summary`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import pathlib
import sys
import time
import traceback
from typing import Callable

import numpy as np

from pulse_jax import inputs as inputs_lib
from pulse_jax import outputs
from pulse_jax.search_config import LR_SCHEDULES, NOISE_TYPES, OPT_NAMES, SearchConfig

SAMPLES = ("astronaut_8x8.png", "astronaut_16x16.png")
DEFAULT_RESTARTS = 16
COMPUTE_DTYPES = ("float32", "bfloat16")


class UsageError(Exception):
  """A problem with the options or the set-up (exit status 2); nothing was searched."""


@dataclasses.dataclass
class RunOptions:
  """Every option of the job (the flags of `python -m pulse_jax.run`, same names)."""
  input: str | None = None
  output_dir: str = "runs"
  weights: str | None = None
  restarts: int = DEFAULT_RESTARTS
  batch_size: int = 1
  duplicates: int = 1
  # the reference's search options (names, formats and defaults)
  loss_str: str = "100*L2+0.05*GEOCROSS"
  eps: float = 2e-3
  noise_type: str = "trainable"
  num_trainable_noise_layers: int = 5
  tile_latent: bool = False
  bad_noise_layers: str = "17"
  opt_name: str = "adam"
  learning_rate: float = 0.4
  steps: int = 100
  lr_schedule: str = "linear1cycledrop"
  seed: int = 0
  init: str | None = None
  save_intermediate: bool = False
  overwrite: bool = False
  quiet: bool = False
  compute_dtype: str = "float32"
  remat: bool = False
  chunk_size: int = 25
  micro_batches: int = 1
  memory_budget_gb: float = 0.0
  fit: str = "error"
  alpha_background: str = "black"
  align: bool = False
  align_size: int | None = None
  checkpoint_dir: str | None = None
  checkpoint_every: int = 0

  def search_config(self, loss_str: str | None = None) -> SearchConfig:
    return SearchConfig(
        loss_str=loss_str or self.loss_str, eps=self.eps, noise_type=self.noise_type,
        num_trainable_noise_layers=self.num_trainable_noise_layers,
        bad_noise_layers=self.bad_noise_layers, tile_latent=self.tile_latent,
        opt_name=self.opt_name, learning_rate=self.learning_rate, steps=self.steps,
        lr_schedule=self.lr_schedule, seed=self.seed)


def sample_paths() -> list[pathlib.Path]:
  """The shipped sample inputs (used when --input is not given)."""
  import pulse_jax.samples
  root = pathlib.Path(pulse_jax.samples.__file__).parent
  return [root / name for name in SAMPLES]


def _is_writer() -> bool:
  import jax
  return jax.process_index() == 0


# ----------------------------------------------------------------------------- set-up

def check_options(o: RunOptions) -> None:
  problems = []
  if o.restarts < 1:
    problems.append(f"--restarts must be >= 1 (got {o.restarts})")
  if o.batch_size < 1:
    problems.append(f"--batch_size must be >= 1 (got {o.batch_size})")
  if o.duplicates < 1 or o.duplicates > o.restarts:
    problems.append(f"--duplicates must be in 1..--restarts ({o.restarts}) (got {o.duplicates})")
  if o.chunk_size < 1:
    problems.append(f"--chunk_size must be >= 1 (got {o.chunk_size})")
  if o.micro_batches < 0:
    problems.append(f"--micro_batches must be >= 0 (0: automatic) (got {o.micro_batches})")
  if o.memory_budget_gb < 0:
    problems.append(f"--memory_budget_gb must be >= 0 (got {o.memory_budget_gb})")
  if o.compute_dtype not in COMPUTE_DTYPES:
    problems.append(f"--compute_dtype must be one of {COMPUTE_DTYPES} (got {o.compute_dtype!r})")
  if o.fit not in inputs_lib.FITS:
    problems.append(f"--fit must be one of {inputs_lib.FITS} (got {o.fit!r})")
  if o.alpha_background not in inputs_lib.BACKGROUNDS:
    problems.append(f"--alpha_background must be one of {inputs_lib.BACKGROUNDS} "
                    f"(got {o.alpha_background!r})")
  if o.checkpoint_every < 0:
    problems.append(f"--checkpoint_every must be >= 0 (got {o.checkpoint_every})")
  if o.align_size is not None and o.align_size < 1:
    problems.append(f"--align_size must be >= 1 (got {o.align_size})")
  if o.init is not None and not os.path.exists(o.init):
    problems.append(f"--init: no such file or folder: {o.init}")
  try:
    o.search_config()
  except ValueError as e:
    problems.append(str(e))
  if problems:
    raise UsageError("; ".join(problems))


def loss_for_generator(loss_str: str, generator) -> tuple[str, list[str]]:
  """The loss string to search with, and notes (GEOCROSS needs W+: dropped for the DCGAN)."""
  from pulse_jax.losses import parse_loss_str
  terms = parse_loss_str(loss_str)
  if generator.has_wplus or not any(name == "GEOCROSS" for _, name in terms):
    return loss_str, []
  kept = [(w, n) for w, n in terms if n != "GEOCROSS"]
  if not kept:
    raise UsageError(f"--loss_str={loss_str!r} has only GEOCROSS, which does not apply to the "
                     f"{generator.kind} generator (no W+ latents); add an L2 or L1 term.")
  new = "+".join(f"{w:g}*{n}" for w, n in kept)
  return new, [f"note: GEOCROSS does not apply to the {generator.kind} generator (one latent "
               f"vector, no W+; the reference computes 0 for it when tiled): searching with "
               f"--loss_str={new!r}"]


def generator_notes(o: RunOptions, generator) -> list[str]:
  if generator.kind != "dcgan":
    return []
  notes = ["note: the DCGAN has no noise inputs and a single latent vector: --noise_type, "
           "--num_trainable_noise_layers, --bad_noise_layers and --tile_latent do not apply"]
  if o.compute_dtype != "float32" or o.remat:
    notes.append("note: --compute_dtype and --remat apply to StyleGAN only; the DCGAN runs in "
                 "float32")
  return notes


def weights_info(o: RunOptions, w, path: str) -> dict:
  from pulse_jax import models
  meta = w.metadata or {}
  return {"name": o.weights or f"{models.DEFAULT_MODEL} (built-in default)",
          "path": os.path.abspath(path), "kind": w.kind,
          "resolution": int(w.config.resolution),
          "sources": [{"file": s.get("file"), "sha256": s.get("sha256")}
                      for s in meta.get("sources", [])],
          "pulse_jax_version": meta.get("pulse_jax_version")}


@dataclasses.dataclass
class Item:
  """One input through the run: its file, its loaded image or its error, its outcome."""
  path: str
  stem: str
  image: inputs_lib.InputImage | None = None
  status: str = "pending"      # within_eps | not_within_eps | failed | skipped
  message: str = ""
  best_l2: float | None = None
  init: dict | None = None

  def fail(self, message: str) -> None:
    self.status, self.message = "failed", message

  def to_dict(self, output_dir: str) -> dict:
    d = {"input": self.path, "stem": self.stem, "status": self.status, "message": self.message,
         "best_l2": self.best_l2}
    if self.status in ("within_eps", "not_within_eps"):
      d["output_dir"] = os.path.join(output_dir, self.stem)
    return d


def _align_inputs(o: RunOptions, files, generator_size: int, log, warn) -> list[Item]:
  """--align: each raw photo -> its aligned N x N crops under OUTPUT_DIR/aligned/."""
  try:
    from pulse_jax import align
    from pulse_jax.face_landmarks import AlignDependencyError, FaceLandmarker
  except ImportError as e:
    raise UsageError(f"--align needs dlib: pip install 'pulse-jax[align]' ({e})") from None
  size = o.align_size or max(generator_size // 8, 1)
  if generator_size % size:
    raise UsageError(f"--align_size={size} does not divide the generator size {generator_size}; "
                     f"valid: {inputs_lib.valid_sizes(generator_size)}")
  out_dir = pathlib.Path(o.output_dir) / "aligned"
  try:
    landmarker = FaceLandmarker(None)
  except AlignDependencyError as e:
    raise UsageError(f"--align: {e}") from None
  items = []
  for f, stem in zip(files, inputs_lib.unique_stems(files)):
    if not o.overwrite:
      clash = sorted(out_dir.glob(f"{glob_escape(stem)}.png")) + sorted(
          out_dir.glob(f"{glob_escape(stem)}_[0-9]*.png"))
      if clash:
        raise UsageError(f"{clash[0]} exists (aligned crop of an earlier run); pass --overwrite "
                         "or choose another --output_dir.")
    try:
      res = align.align_file(f, out_dir, size, generator_size, landmarker=landmarker, stem=stem)
    except AlignDependencyError as e:
      raise UsageError(f"--align: {e}") from None
    for w_ in res.warnings:
      warn(f"{f}: {w_}")
    if not res.lr_paths:
      items.append(Item(str(f), stem, status="failed",
                        message=f"{f}: alignment found no usable face ({res.status}: "
                                f"{res.message}; " + "; ".join(fr.reason for fr in res.faces
                                                               if fr.reason) + ")"))
      continue
    log(f"aligned {f}: {res.message} -> " + ", ".join(res.lr_paths))
    for p in res.lr_paths:
      items.append(Item(p, pathlib.Path(p).stem))
  return items


def glob_escape(s: str) -> str:
  import glob
  return glob.escape(s)


def _load_init(path: str, generator, config: SearchConfig) -> dict:
  """An --init npz: {'latent': [k, l, D], 'noise_<i>': [k, 1, r, r]} checked against the problem."""
  try:
    with np.load(path, allow_pickle=False) as z:
      d = {k: np.asarray(z[k]) for k in z.files}
  except Exception as e:  # corrupt / not an npz
    raise ValueError(f"{path}: cannot read start values ({type(e).__name__}: {e}); expected a "
                     "latents.npz written by pulse_jax.run.") from None
  if "latent" not in d:
    raise ValueError(f"{path}: --init needs a 'latent' array [K, l, D] (a run's latents.npz); "
                     f"found {sorted(d)}.")
  want = (generator.latent_layers(config.tile_latent), generator.latent_dim)
  lat = d["latent"]
  if lat.ndim != 3 or tuple(lat.shape[1:]) != want:
    raise ValueError(f"{path}: 'latent' has shape {lat.shape}; this generator and options need "
                     f"[K, {want[0]}, {want[1]}].")
  rows = lat.shape[0]
  bad = [k for k, v in d.items() if v.shape[0] != rows]
  if bad:
    raise ValueError(f"{path}: arrays {bad} do not have the {rows} rows of 'latent'.")
  return d


def _init_rows(d: dict, restarts: int) -> dict:
  """R rows of start values from k saved rows: the first R, or cycled when k < R."""
  k = d["latent"].shape[0]
  idx = np.arange(restarts) % k
  return {name: np.asarray(v, np.float32)[idx] for name, v in d.items()}


# ----------------------------------------------------------------------------- the job

class _Progress:
  """Prints one line per chunk: images done, step, best loss, ETA."""

  def __init__(self, total_work: int, log, eps: float):
    self.total_work, self.log, self.eps = total_work, log, eps
    self.done_work = 0          # restart-steps of finished batches
    self.done_images = 0
    self.total_images = 0
    self.search_s = 0.0         # search seconds of finished batches
    self.batch_label = ""
    self.batch_work = 0         # restart-steps per step in the current batch
    self.on_frames: Callable | None = None

  def __call__(self, info) -> None:
    if info.frames is not None and self.on_frames is not None:
      self.on_frames(info)
    done = self.done_work + info.step * self.batch_work
    elapsed = self.search_s + info.elapsed_s
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (self.total_work - done) / rate if rate > 0 else float("nan")
    l2 = np.asarray(info.best_l2)
    within = int(np.sum(l2 <= self.eps))
    l2_txt = (f"best L2 {l2[0]:.3e}" if l2.size == 1 else
              f"best L2 {np.nanmin(l2):.3e}..{np.nanmax(l2):.3e}")
    self.log(f"[{self.done_images}/{self.total_images} images done] {self.batch_label} "
             f"step {info.step}/{info.steps}  {l2_txt} (eps {self.eps:g}, {within}/{l2.size} "
             f"within)  loss {np.nanmin(info.best_total):.4g}  {info.elapsed_s:.1f} s  "
             f"ETA {_fmt_s(eta)}")


def _fmt_s(s: float) -> str:
  if not np.isfinite(s):
    return "?"
  if s < 90:
    return f"{s:.0f} s"
  if s < 5400:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.1f} h"


def _batches(items: list[Item], batch_size: int) -> list[list[Item]]:
  """Images of the same size (and padding or not) together, in input order, batch_size each."""
  groups: dict[tuple, list[Item]] = {}
  for it in items:
    groups.setdefault((it.image.size, it.image.mask is not None), []).append(it)
  out = []
  for group in groups.values():
    out += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
  return out


def run_job(o: RunOptions, *, log: Callable[[str], None] | None = None,
            warn: Callable[[str], None] | None = None) -> dict:
  """Runs the whole job; returns the summary dict (also written to OUTPUT_DIR/summary.json).

  Raises UsageError for problems with the options or the set-up (before anything is searched).
  Per-input problems are reported in the summary (`files`, status 'failed') and make
  `summary['exit_code']` 1.
  """
  t_start = time.perf_counter()
  writer = _is_writer()
  say = log or (lambda s: print(s, flush=True))
  log = (lambda s: None) if (o.quiet or not writer) else say
  warn = warn or (lambda s: print(s, file=sys.stderr, flush=True))
  if not writer:
    warn = lambda s: None  # noqa: E731
  check_options(o)

  from pulse_jax import driver, generators, models
  try:
    wpath = models.resolve(o.weights, log=log)
    w = models.load(wpath, log=log)
    generator = generators.from_weights(w, o.compute_dtype, o.remat)
  except (FileNotFoundError, ValueError) as e:
    raise UsageError(f"--weights: {e}") from None
  G = generator.resolution
  loss_str, notes = loss_for_generator(o.loss_str, generator)
  config = o.search_config(loss_str)
  if generator.kind == "stylegan":
    try:
      config.check_layers(generator.num_layers)
    except ValueError as e:
      raise UsageError(str(e)) from None
  for n in notes + generator_notes(o, generator):
    log(n)

  # ---- inputs
  if o.input is None:
    files, skipped = sample_paths(), []
    log(f"no --input: searching the shipped samples {', '.join(str(p) for p in files)}")
  else:
    try:
      files, skipped = inputs_lib.list_inputs(o.input)
    except FileNotFoundError as e:
      raise UsageError(str(e)) from None
  for s in skipped:
    log(f"skipping {s} (not an image file extension)")
  if not files:
    raise UsageError(f"--input={o.input}: no image files found.")
  if o.align:
    items = _align_inputs(o, files, G, log, warn)
  else:
    items = [Item(str(f), stem) for f, stem in zip(files, inputs_lib.unique_stems(files))]
  for it in items:
    if it.status == "failed":
      continue
    try:
      it.image = inputs_lib.load_image(it.path, G, fit=o.fit, background=o.alpha_background,
                                       stem=it.stem, channels=generator.num_channels)
      for n in it.image.notes:
        log(f"{it.path}: note: {n}")
    except inputs_lib.InputError as e:
      it.fail(str(e))
  init_file = None
  if o.init is not None and os.path.isfile(o.init):
    try:
      init_file = _load_init(o.init, generator, config)
    except ValueError as e:
      raise UsageError(f"--init: {e}") from None
  for it in items:
    if it.image is None or o.init is None:
      continue
    if init_file is not None:
      it.init = init_file
    else:  # a previous run's output folder: DIR/<stem>/latents.npz
      p = os.path.join(o.init, it.stem, outputs.LATENTS)
      try:
        it.init = _load_init(p, generator, config) if os.path.isfile(p) else None
        if it.init is None:
          it.fail(f"{it.path}: --init={o.init}: no {p} for this input.")
      except ValueError as e:
        it.fail(f"{it.path}: --init: {e}")
  if o.init is not None and any(it.init is not None for it in items):
    k = min(it.init["latent"].shape[0] for it in items if it.init is not None)
    if k < o.restarts:
      log(f"note: --init holds {k} start value(s) for --restarts={o.restarts}: restart r starts "
          f"from saved row r mod {k}")

  # ---- existing outputs (checked before anything is searched)
  todo = [it for it in items if it.image is not None and it.status != "failed"]
  summary_path = os.path.join(o.output_dir, outputs.SUMMARY)
  clashes = [summary_path] if os.path.exists(summary_path) else []
  for it in todo:
    clashes += outputs.existing_outputs(o.output_dir, it.stem)
  if clashes and not o.overwrite:
    more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
    raise UsageError(f"output files exist: {', '.join(clashes[:3])}{more}; pass --overwrite to "
                     "replace them, or choose another --output_dir.")
  if writer:
    os.makedirs(o.output_dir, exist_ok=True)
    for it in todo:
      outputs.clear_outputs(o.output_dir, it.stem)
      os.makedirs(os.path.join(o.output_dir, it.stem), exist_ok=True)

  env = {"versions": outputs.versions(), "device": outputs.device_info()}
  winfo = weights_info(o, w, wpath)
  settings = {**config.to_dict(), "loss_str_given": o.loss_str, "restarts": o.restarts,
              "duplicates": o.duplicates, "batch_size": o.batch_size,
              "chunk_size": o.chunk_size, "micro_batches": o.micro_batches,
              "memory_budget_gb": o.memory_budget_gb,
              "compute_dtype": o.compute_dtype, "remat": o.remat,
              "fit": o.fit, "alpha_background": o.alpha_background, "init": o.init,
              "align": o.align, "align_size": o.align_size,
              "save_intermediate": o.save_intermediate}

  # ---- search, batch by batch
  batches = _batches(todo, o.batch_size)
  progress = _Progress(sum(len(b) for b in batches) * o.restarts * o.steps, log, config.eps)
  progress.total_images = len(todo)
  compile_s = search_s = 0.0
  restart_steps = 0
  searched_s = 0.0
  for bi, batch in enumerate(batches):
    t_batch = time.perf_counter()
    size = batch[0].image.size
    progress.batch_label = (f"batch {bi + 1}/{len(batches)} ({len(batch)} x {size}x{size} -> "
                            f"{G}x{G})")
    progress.batch_work = len(batch) * o.restarts
    ref = np.stack([it.image.pixels for it in batch])
    mask = (np.stack([it.image.mask for it in batch]) if batch[0].image.mask is not None
            else None)
    keys = [it.image.image_key for it in batch]
    start = None
    if any(it.init is not None for it in batch):
      rows = [_init_rows(it.init, o.restarts) for it in batch]
      start = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    frames: dict[int, list] = {i: [] for i in range(len(batch))}

    def on_frames(info, batch=batch, frames=frames):
      if not writer:
        return
      for i, it in enumerate(batch):
        d = os.path.join(o.output_dir, it.stem, outputs.FRAMES)
        os.makedirs(d, exist_ok=True)
        hr, lr = outputs.to_pil(info.frames["hr"][i]), outputs.to_pil(info.frames["lr"][i])
        hr.save(os.path.join(d, f"hr_step{info.step:04d}.png"))
        lr.save(os.path.join(d, f"lr_step{info.step:04d}.png"))
        frames[i].append(outputs.frame_strip([outputs.to_pil(it.image.pixels), lr, hr],
                                             outputs.gif_cell(G)))

    progress.on_frames = on_frames
    ckpt = None
    if o.checkpoint_dir:
      tag = hashlib.sha1(repr([(it.stem, it.image.image_key) for it in batch]).encode())
      ckpt = os.path.join(o.checkpoint_dir, f"batch-{batch[0].stem}-{tag.hexdigest()[:10]}")
    try:
      result = driver.search_images(
          generator, w.params, ref, config=config, restarts=o.restarts, image_keys=keys,
          start=start, mask=mask, keep=o.duplicates, chunk_size=o.chunk_size,
          micro_batches=o.micro_batches,
          memory_budget_bytes=int(o.memory_budget_gb * 2**30) or None, progress=progress,
          frames=o.save_intermediate, checkpoint_dir=ckpt, checkpoint_every=o.checkpoint_every)
    except Exception as e:  # pylint: disable=broad-except
      msg = f"search failed: {type(e).__name__}: {e}"
      warn(f"error: batch {bi + 1} ({', '.join(it.path for it in batch)}): {msg}")
      if not o.quiet:
        warn(traceback.format_exc(limit=3))
      for it in batch:
        it.fail(f"{it.path}: {msg}")
      progress.done_images += len(batch)
      progress.total_work -= len(batch) * o.restarts * o.steps
      continue
    t = result.timings
    compile_s += t["compile_s"]
    search_s += t["search_s"]
    batch_steps = len(batch) * o.restarts * max(o.steps - result.resumed_from_step, 0)
    restart_steps += batch_steps
    progress.done_work += len(batch) * o.restarts * o.steps
    progress.search_s += t["search_s"]
    progress.done_images += len(batch)
    timings = {"compile_s": t["compile_s"], "search_s": t["search_s"], "init_s": t["init_s"],
               "restart_steps_per_s": t["restart_steps_per_s"], "batch_images": len(batch),
               "batch_index": bi, "num_devices": result.num_devices,
               "micro_batches": result.micro_batches,
               "resumed_from_step": result.resumed_from_step,
               "batch_wall_s": time.perf_counter() - t_batch}
    for i, it in enumerate(batch):
      try:
        _write_input(o, it, result, i, frames[i], config, settings, winfo, env, timings, writer,
                     log, warn)
      except Exception as e:  # pylint: disable=broad-except
        it.fail(f"{it.path}: writing outputs failed: {type(e).__name__}: {e}")
        warn(f"error: {it.message}")
    searched_s += time.perf_counter() - t_batch

  # ---- summary
  searched = [it for it in items if it.status in ("within_eps", "not_within_eps")]
  ok = [it for it in searched if it.status == "within_eps"]
  failed = [it for it in items if it.status == "failed"]
  summary = {
      "inputs": len(items), "searched": len(searched), "within_eps": len(ok),
      "not_within_eps": len(searched) - len(ok), "failed": len(failed), "skipped": len(skipped),
      "success_rate": len(ok) / len(searched) if searched else 0.0, "eps": config.eps,
      "seconds_per_image": searched_s / len(searched) if searched else None,
      "restart_steps_per_s": restart_steps / search_s if search_s > 0 else 0.0,
      "compile_s": compile_s, "search_s": search_s, "wall_s": time.perf_counter() - t_start,
      "restarts": o.restarts, "steps": o.steps, "batches": len(batches),
      "exit_code": 1 if failed else 0, "summary_path": summary_path,
      "files": [it.to_dict(o.output_dir) for it in items]
      + [{"input": str(s), "stem": None, "status": "skipped",
          "message": "not an image file extension"} for s in skipped],
      "settings": settings, "weights": winfo, "versions": env["versions"],
      "device": env["device"]}
  for it in failed:
    warn(f"error: {it.message}")
  if writer:
    os.makedirs(o.output_dir, exist_ok=True)
    outputs.write_json(summary_path, summary)
  return summary


def _write_input(o, it: Item, result, i: int, frames: list, config, settings, winfo, env,
                 timings, writer: bool, log, warn) -> None:
  within = bool(result.within_eps[i].any())
  best_r = int(result.ranking[i, 0])
  it.best_l2 = float(result.l2[i, best_r])
  it.status = "within_eps" if within else "not_within_eps"
  advice = None
  if not within:
    advice = outputs.advice(it.stem, config.eps, it.best_l2, o.restarts, o.steps, best_r)
    it.message = f"not within eps: closest L2 {it.best_l2:.4g} > eps {config.eps:g}"
    warn(f"warning: {advice}")
  else:
    log(f"{it.path}: {int(result.within_eps[i].sum())}/{o.restarts} restarts within eps "
        f"{config.eps:g}; best L2 {it.best_l2:.3e} (restart {best_r}, step "
        f"{int(result.best_step[i, best_r])})")
  if not writer:
    return
  d = os.path.join(o.output_dir, it.stem)
  os.makedirs(d, exist_ok=True)
  files = {"hr": [], "lr": [], "latents": outputs.LATENTS}
  outputs.save_png(it.image.pixels, os.path.join(d, outputs.INPUT_PNG))
  for k in range(result.hr.shape[1]):
    for kind in ("hr", "lr"):
      name = f"{kind}_{k}.png"
      outputs.save_png(getattr(result, kind)[i, k], os.path.join(d, name))
      files[kind].append(name)
  np.savez(os.path.join(d, outputs.LATENTS),
           **{k: np.asarray(v[i], np.float32) for k, v in result.start_values.items()})
  if not within:
    with open(os.path.join(d, outputs.NOT_WITHIN_EPS), "w") as f:
      f.write(advice + "\n")
  if frames:
    outputs.write_gif(frames, os.path.join(d, outputs.GIF))
  report = outputs.input_report(
      it.image, result, i, config=config, restarts=o.restarts, duplicates=o.duplicates,
      files=files, settings=settings, weights=winfo, env=env, timings=timings,
      advice_text=advice)
  outputs.write_json(os.path.join(d, outputs.REPORT), report)


# ----------------------------------------------------------------------------- command line

def define_flags():
  from absl import flags
  from pulse_jax import models
  f = flags
  f.DEFINE_string("input", None, "An input image (anything Pillow reads: PNG, JPEG, WebP, BMP, "
                  "...) or a folder of them. Square, with the generator size an integer multiple "
                  "of its size (else see --fit). Default: the shipped samples "
                  "pulse_jax/samples/astronaut_8x8.png and astronaut_16x16.png.")
  f.DEFINE_string("output_dir", "runs", "Where OUTPUT_DIR/<input stem>/ folders and "
                  "summary.json are written.")
  f.DEFINE_string("weights", None, "A converted weights directory (python -m weights_convert) "
                  f"or a built-in model name ({', '.join(sorted(models.BUILTIN))}). Default: the "
                  f"built-in {models.DEFAULT_MODEL} (64x64 DCGAN faces).")
  f.DEFINE_integer("restarts", DEFAULT_RESTARTS, "Independent searches (random starts) per "
                   "image, run together; the best are kept.", lower_bound=1)
  f.DEFINE_integer("batch_size", 1, "Images (of the same size) searched by one compiled program.",
                   lower_bound=1)
  f.DEFINE_integer("duplicates", 1, "Distinct outputs (best restarts) saved per input; at most "
                   "--restarts.", lower_bound=1)
  f.DEFINE_string("loss_str", "100*L2+0.05*GEOCROSS", "Loss: 'weight*NAME' terms joined by '+', "
                  "NAME in L2, L1, GEOCROSS (GEOCROSS is dropped for the DCGAN).")
  f.DEFINE_float("eps", 2e-3, "Success threshold on each restart's L2 (mean squared error of the "
                 "down-sampled output); L2 is also clamped below at eps.")
  f.DEFINE_enum("noise_type", "trainable", list(NOISE_TYPES), "StyleGAN noise maps: zero, fixed "
                "(random) or trainable.")
  f.DEFINE_integer("num_trainable_noise_layers", 5, "With --noise_type=trainable: how many "
                   "noise layers (from the lowest resolution) are optimised.")
  f.DEFINE_boolean("tile_latent", False, "Search one latent vector shared by every style layer "
                   "(StyleGAN) instead of W+.")
  f.DEFINE_string("bad_noise_layers", "17", "Noise layers set to zero, joined by '.' "
                  "(e.g. '16.17'; '' for none).")
  f.DEFINE_enum("opt_name", "adam", list(OPT_NAMES), "Optimiser (with the spherical projection).")
  f.DEFINE_float("learning_rate", 0.4, "Peak learning rate.")
  f.DEFINE_integer("steps", 100, "Optimisation steps per restart.", lower_bound=1)
  f.DEFINE_enum("lr_schedule", "linear1cycledrop", list(LR_SCHEDULES), "Learning-rate schedule.")
  f.DEFINE_integer("seed", 0, "Random seed (honoured, 0 included): a restart's start depends "
                   "only on the seed, the input's pixels and the restart index.")
  f.DEFINE_string("init", None, "Start values: a latents.npz written by a run (restart r starts "
                  "from row r mod K), or a previous OUTPUT_DIR (uses <stem>/latents.npz per "
                  "input). Use with few --steps to refine.")
  f.DEFINE_boolean("save_intermediate", False, "Save the best-so-far HR/LR images after each "
                   "chunk of steps (<stem>/frames/) and an animated <stem>/progress.gif.")
  f.DEFINE_boolean("overwrite", False, "Replace existing outputs (never done without it).")
  f.DEFINE_boolean("quiet", False, "No progress lines or notes (errors, warnings and the "
                   "summary are still printed).")
  f.DEFINE_enum("compute_dtype", "float32", list(COMPUTE_DTYPES), "Generator arithmetic "
                "(StyleGAN); losses and optimiser stay float32.")
  f.DEFINE_boolean("remat", False, "Recompute StyleGAN activations in the backward pass "
                   "(less memory, more time).")
  f.DEFINE_integer("chunk_size", 25, "Steps per compiled chunk: one progress line (and "
                   "intermediate frame) per chunk.", lower_bound=1)
  f.DEFINE_integer("micro_batches", 1, "Compute each step's restarts in this many sequential "
                   "groups: peak memory of batch x restarts / micro_batches restarts, same "
                   "results. 0: the fewest that fit in --memory_budget_gb (compiles to check). "
                   "For many restarts at 1024 on one device (docs/scaling.md).", lower_bound=0)
  f.DEFINE_float("memory_budget_gb", 0.0, "Device memory (GiB) --micro_batches=0 may use per "
                 "device; 0: 90% of the device's limit (GPU/TPU; on the CPU, which reports "
                 "none, 0 means one batch).", lower_bound=0.0)
  f.DEFINE_enum("fit", "error", list(inputs_lib.FITS), "Inputs whose size does not divide the "
                "generator size, or not square: error; resize (bicubic to the nearest valid "
                "square size); pad (to the smallest valid square, padding excluded from the "
                "loss).")
  f.DEFINE_enum("alpha_background", "black", list(inputs_lib.BACKGROUNDS), "Colour that "
                "transparent pixels are composited on.")
  f.DEFINE_boolean("align", False, "Treat inputs as raw photos: detect, align and crop each face "
                   "the FFHQ way (pulse_jax.align; needs dlib: pip install 'pulse-jax[align]') "
                   "into OUTPUT_DIR/aligned/, then search each crop.")
  f.DEFINE_integer("align_size", None, "With --align: size of the aligned crops searched "
                   "(default: generator size / 8).")
  # Multi-device / multi-host (see pulse_jax.distributed).
  f.DEFINE_string("coordinator_address", None, "host:port of process 0 for a multi-process run "
                  "('auto': detect the cluster).")
  f.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
  f.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
  f.DEFINE_string("checkpoint_dir", None, "Save the search state there every "
                  "--checkpoint_every steps, and resume from it after an interruption.")
  f.DEFINE_integer("checkpoint_every", 0, "Steps between search checkpoints (0: never).",
                   lower_bound=0)


def options_from_flags(FLAGS) -> RunOptions:
  names = [fld.name for fld in dataclasses.fields(RunOptions)]
  return RunOptions(**{n: getattr(FLAGS, n) for n in names})


def main(argv) -> int:
  from absl import flags, logging
  FLAGS = flags.FLAGS
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax / jax INFO lines drown the progress
  if len(argv) > 1:
    print(f"pulse_jax.run: error: unexpected arguments {argv[1:]} (options are --name=value)",
          file=sys.stderr)
    return 2
  if importlib.util.find_spec("pulse_jax.distributed") is not None:
    from pulse_jax import distributed
    try:
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except (ValueError, RuntimeError) as e:
      print(f"pulse_jax.run: error: multi-process start-up failed: {e}", file=sys.stderr)
      return 2
  try:
    summary = run_job(options_from_flags(FLAGS))
  except UsageError as e:
    print(f"pulse_jax.run: error: {e}", file=sys.stderr)
    return 2
  if _is_writer():
    outputs.print_summary(summary)
  return summary["exit_code"]


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
