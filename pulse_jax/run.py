"""python -m pulse_jax.run --input=FILE_OR_DIR --output_dir=DIR [--weights=...] [options]

The PULSE job end to end: read the low-resolution inputs, search the generator's latent space
with many restarts per image (batched: --batch_size images of the same size per compiled
program), and write per input the best --duplicates HR images, their LR images, every
restart's latents (re-render with pulse_jax.render, or continue with --init) and a JSON report;
then print and write the run summary (OUTPUT_DIR/summary.json). See docs/run.md.

With no --weights the built-in 64x64 DCGAN face model is used; with no --input the shipped
samples (pulse_jax/samples/astronaut_8x8.png and astronaut_16x16.png).

Run the same command again after an interruption: inputs whose outputs are complete are kept,
the others are searched again (from their newest checkpoint with --checkpoint_dir).

Exit status: 0 when every input was searched and saved (within eps or not: see the reports),
or on --help / -h / --helpfull; 1 when some input failed (unreadable, wrong size, failed
search); 2 on a usage or set-up error (a bad option, named in the message; weights missing;
outputs of another run without --overwrite; nothing to do).

Everything but the flags lives in importable functions: `run_job(RunOptions(...)) -> summary`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback
from typing import Callable

import numpy as np

from pulse_jax import compile_cache, gallery, responsible_use
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
  compile_cache: bool = True

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

def flag_message(flag: str, message) -> str:
  """'--flag: message', without repeating a leading 'flag ' of the message."""
  m = str(message)
  if m.startswith(flag + " "):
    m = m[len(flag) + 1:]
  return f"--{flag}: {m}"


def config_flag_message(e: Exception) -> str:
  """A SearchConfig error as '--flag: message' when it names an option first, else as is."""
  m = str(e)
  for f in dataclasses.fields(SearchConfig):
    if m.startswith(f.name) and m[len(f.name):len(f.name) + 1] in (" ", "=", ":"):
      return flag_message(f.name, m)
  return m


def config_problems(o: RunOptions) -> list[str]:
  """SearchConfig's validation of the options, one '--flag: message' per bad option."""
  problems = []
  for f in dataclasses.fields(SearchConfig):
    if not hasattr(o, f.name):
      continue
    try:
      SearchConfig(**{f.name: getattr(o, f.name)})
    except (ValueError, TypeError) as e:
      problems.append(flag_message(f.name, e))
  if not problems:  # a rule over several options
    try:
      o.search_config()
    except (ValueError, TypeError) as e:
      problems.append(config_flag_message(e))
  return problems


def check_options(o: RunOptions) -> None:
  """Raises UsageError naming every bad option ('--flag: what is wrong; --flag2: ...')."""
  problems = []
  if o.restarts < 1:
    problems.append(f"--restarts: must be >= 1 (got {o.restarts})")
  if o.batch_size < 1:
    problems.append(f"--batch_size: must be >= 1 (got {o.batch_size})")
  if o.duplicates < 1 or o.duplicates > o.restarts:
    problems.append(f"--duplicates: must be in 1..--restarts ({o.restarts}) (got {o.duplicates})")
  if o.chunk_size < 1:
    problems.append(f"--chunk_size: must be >= 1 (got {o.chunk_size})")
  if o.micro_batches < 0:
    problems.append(f"--micro_batches: must be >= 0 (0: automatic) (got {o.micro_batches})")
  if o.memory_budget_gb < 0:
    problems.append(f"--memory_budget_gb: must be >= 0 (got {o.memory_budget_gb})")
  if o.compute_dtype not in COMPUTE_DTYPES:
    problems.append(f"--compute_dtype: must be one of {COMPUTE_DTYPES} (got {o.compute_dtype!r})")
  if o.fit not in inputs_lib.FITS:
    problems.append(f"--fit: must be one of {inputs_lib.FITS} (got {o.fit!r})")
  if o.alpha_background not in inputs_lib.BACKGROUNDS:
    problems.append(f"--alpha_background: must be one of {inputs_lib.BACKGROUNDS} "
                    f"(got {o.alpha_background!r})")
  if o.checkpoint_every < 0:
    problems.append(f"--checkpoint_every: must be >= 0 (got {o.checkpoint_every})")
  if o.align_size is not None and o.align_size < 1:
    problems.append(f"--align_size: must be >= 1 (got {o.align_size})")
  if o.init is not None and not os.path.exists(o.init):
    problems.append(f"--init: no such file or folder: {o.init}")
  problems += config_problems(o)
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
  kept: bool = False           # complete outputs of an earlier run with the same settings

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

  def to_dict(self, output_dir: str) -> dict:
    d = {"input": self.path, "stem": self.stem, "status": self.status, "message": self.message,
         "best_l2": self.best_l2}
    if self.status in ("within_eps", "not_within_eps"):
      d["output_dir"] = os.path.join(output_dir, self.stem)
      d["kept"] = self.kept
    return d


def _align_inputs(o: RunOptions, files, generator_size: int, log, warn) -> list[Item]:
  """--align: each raw photo -> its aligned N x N crops under OUTPUT_DIR/aligned/.

  The crops are made in a temporary folder and moved into place: a crop that exists with the
  same bytes (the same command run again) is fine, one with other bytes needs --overwrite.
  """
  try:
    from pulse_jax import align
    from pulse_jax.face_landmarks import AlignDependencyError, FaceLandmarker
  except ImportError as e:
    raise UsageError(f"--align needs dlib: pip install 'pulse-jax[align]' ({e})") from None
  size = o.align_size or max(generator_size // 8, 1)
  if generator_size % size:
    raise UsageError(f"--align_size: {size} does not divide the generator size "
                     f"{generator_size}; valid: {inputs_lib.valid_sizes(generator_size)}")
  out_dir = pathlib.Path(o.output_dir) / "aligned"
  try:
    landmarker = FaceLandmarker(None)
  except AlignDependencyError as e:
    raise UsageError(f"--align: {e}") from None
  items = []
  for f, stem in zip(files, inputs_lib.unique_stems(files)):
    with tempfile.TemporaryDirectory(prefix=".align-", dir=_made(out_dir)) as tmp:
      try:
        res = align.align_file(f, tmp, size, generator_size, landmarker=landmarker, stem=stem)
      except AlignDependencyError as e:
        raise UsageError(f"--align: {e}") from None
      lr_paths = [_place(p, tmp, out_dir, o.overwrite) for p in res.lr_paths]
      for p in res.hr_paths:
        _place(p, tmp, out_dir, o.overwrite)
    for w_ in res.warnings:
      warn(f"{f}: {w_}")
    if not lr_paths:
      items.append(Item(str(f), stem, status="failed",
                        message=f"{f}: alignment found no usable face ({res.status}: "
                                f"{res.message}; " + "; ".join(fr.reason for fr in res.faces
                                                               if fr.reason) + ")"))
      continue
    log(f"aligned {f}: {res.message} -> " + ", ".join(lr_paths))
    items += [Item(p, pathlib.Path(p).stem) for p in lr_paths]
  return items


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


INIT_META = ("kept", "rank")  # latents.npz arrays that are not start values


def _load_init(path: str, generator, config: SearchConfig) -> dict:
  """An --init npz as start values {'latent': [k, l, D], 'noise_<i>': [k, 1, r, r]}, checked
  against the generator and options ('kept' and 'rank' of a run's latents.npz are dropped)."""
  try:
    with np.load(path, allow_pickle=False) as z:
      d = {k: np.asarray(z[k]) for k in z.files if k not in INIT_META}
  except Exception as e:  # corrupt / not an npz
    raise ValueError(f"{path}: cannot read start values ({type(e).__name__}: {e}); expected a "
                     "latents.npz written by pulse_jax.run.") from None
  if "latent" not in d:
    raise ValueError(f"{path}: --init needs a 'latent' array [K, l, D] (a run's latents.npz); "
                     f"found {sorted(d)}.")
  want = {"latent": (generator.latent_layers(config.tile_latent), generator.latent_dim)}
  want.update({f"noise_{i}": tuple(s) for i, s in enumerate(generator.noise_shapes)})
  rows = d["latent"].shape[0] if d["latent"].ndim else 0
  for k, v in d.items():
    if k not in want:
      raise ValueError(f"{path}: unexpected array {k!r}; expected 'latent' and noise maps "
                       f"noise_0..noise_{len(generator.noise_shapes) - 1} of this generator.")
    if v.ndim < 1 or tuple(v.shape[1:]) != want[k] or v.shape[0] != rows or rows == 0:
      raise ValueError(f"{path}: '{k}' has shape {v.shape}; this generator and options need "
                       f"[K, {', '.join(map(str, want[k]))}] with the K rows of 'latent'.")
  return d


def _span(word: str, a: int, b: int) -> str:
  """'restart 3' or 'restarts 3..15'."""
  return f"{word} {a}" if a == b else f"{word}s {a}..{b}"


def init_rule(rows: int, restarts: int) -> str:
  """The --init rule for `rows` saved rows and `restarts` restarts, as printed."""
  head = f"{rows} row{'s' * (rows != 1)} for {restarts} restart{'s' * (restarts != 1)}: "
  if rows == restarts:
    return head + "restart r continues row r"
  if rows > restarts:
    return (head + f"{_span('restart', 0, restarts - 1)} continue{'s' * (restarts == 1)} "
            f"{_span('row', 0, restarts - 1)}; {_span('row', restarts, rows - 1)} not used")
  return (head + f"{_span('restart', 0, rows - 1)} continue{'s' * (rows == 1)} "
          f"{_span('row', 0, rows - 1)}; {_span('restart', rows, restarts - 1)} start"
          f"{'s' * (restarts - rows == 1)} from fresh random draws (as without --init)")


def _batch_start(batch: list[Item], generator, config: SearchConfig,
                 restarts: int) -> dict | None:
  """Start values [B * R rows] for a batch with --init: restart r of an input continues its
  row r; restarts past its rows (and noise maps it lacks) get their usual random draws."""
  if all(it.init is None for it in batch):
    return None
  from pulse_jax import driver
  start = driver.initial_start_values(generator, config, restarts,
                                      [it.image.image_key for it in batch])
  for b, it in enumerate(batch):
    m = min(it.init["latent"].shape[0], restarts) if it.init is not None else 0
    for k, v in (it.init or {}).items():
      if k in start:  # a noise map that the options make zero is not a start value
        start[k][b, :m] = v[:m]
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in start.items()}


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
  Per-input problems are reported when found and in the summary (`files`, status 'failed')
  and make `summary['exit_code']` 1. Inputs whose complete outputs an earlier run with the
  same settings left in OUTPUT_DIR are kept, not searched again (`_check_existing`).
  """
  t_start = time.perf_counter()
  writer = _is_writer()
  say = log or (lambda s: print(s, flush=True))
  log = (lambda s: None) if (o.quiet or not writer) else say
  warn = warn or (lambda s: print(s, file=sys.stderr, flush=True))
  if not writer:
    warn = lambda s: None  # noqa: E731
  check_options(o)
  if o.compile_cache:
    compile_cache.enable()

  w, wpath, generator = _load_generator(o, log)
  loss_str, notes = loss_for_generator(o.loss_str, generator)
  config = o.search_config(loss_str)
  if generator.kind == "stylegan":
    try:
      config.check_layers(generator.num_layers)
    except ValueError as e:
      raise UsageError(config_flag_message(e)) from None
  for n in notes + generator_notes(o, generator):
    log(n)

  items, skipped = _inputs(o, generator, config, log, warn)
  todo = [it for it in items if it.image is not None and it.status != "failed"]
  env = {"versions": outputs.versions(), "device": outputs.device_info()}
  winfo = weights_info(o, w, wpath)
  settings = run_settings(o, config)
  summary_path = os.path.join(o.output_dir, outputs.SUMMARY)
  _check_existing(o, todo, outputs.result_identity(settings, winfo), summary_path, writer, log)
  if writer:
    os.makedirs(o.output_dir, exist_ok=True)
    for it in todo:
      if not it.kept:
        outputs.clear_outputs(o.output_dir, it.stem)
        os.makedirs(os.path.join(o.output_dir, it.stem), exist_ok=True)

  job = _Job(o, generator, w.params, config, settings, winfo, env, writer, log, warn)
  batches = _batches(todo, o.batch_size)
  job.search(batches)
  summary = _summary(o, job, items, skipped, len(batches), config, settings, winfo, env,
                     summary_path, t_start, writer)
  if writer:
    try:
      log(f"gallery: {gallery.write_gallery(o.output_dir)}")
    except Exception as e:  # pylint: disable=broad-except  # the results are saved already
      warn(f"warning: gallery page not written: {type(e).__name__}: {e}")
  return summary


def run_settings(o: RunOptions, config: SearchConfig) -> dict:
  """The settings recorded in every report (and compared when a run is started again)."""
  return {**config.to_dict(), "loss_str_given": o.loss_str, "restarts": o.restarts,
          "duplicates": o.duplicates, "batch_size": o.batch_size,
          "chunk_size": o.chunk_size, "micro_batches": o.micro_batches,
          "memory_budget_gb": o.memory_budget_gb,
          "compute_dtype": o.compute_dtype, "remat": o.remat,
          "fit": o.fit, "alpha_background": o.alpha_background, "init": o.init,
          "align": o.align, "align_size": o.align_size,
          "save_intermediate": o.save_intermediate}


def _load_generator(o: RunOptions, log):
  """(weights, weights directory, generator) for --weights; UsageError naming the flag."""
  from pulse_jax import generators, models
  try:
    wpath = models.resolve(o.weights, log=log)
    w = models.load(wpath, log=log)
    generator = generators.from_weights(w, o.compute_dtype, o.remat)
  except (FileNotFoundError, ValueError) as e:
    msg = str(e)
    raise UsageError(msg if msg.startswith("--weights") else
                     f"--weights={o.weights or models.DEFAULT_MODEL}: {msg}") from None
  return w, wpath, generator


def _inputs(o: RunOptions, generator, config: SearchConfig, log, warn):
  """(items, skipped files): the inputs listed, aligned, loaded and given their --init start
  values; each bad input is reported at once (and again in the summary)."""
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
    raise UsageError(f"--input: no image files found in {o.input}")
  if o.align:
    items = _align_inputs(o, files, generator.resolution, log, warn)
  else:
    items = [Item(str(f), stem) for f, stem in zip(files, inputs_lib.unique_stems(files))]
  for it in items:
    if it.status == "failed":
      continue
    try:
      it.image = inputs_lib.load_image(it.path, generator.resolution, fit=o.fit,
                                       background=o.alpha_background, stem=it.stem,
                                       channels=generator.num_channels)
      for n in it.image.notes:
        log(f"{it.path}: note: {n}")
    except inputs_lib.InputError as e:
      it.fail(str(e))
  if o.init is not None:
    _attach_init(o, items, generator, config, log)
  bad = [it for it in items if it.status == "failed"]
  for it in bad:
    warn(f"error: {it.message}")
  if bad:
    log(f"{len(bad)} of {len(items)} input(s) cannot be searched (listed above)"
        + ("; searching the others" if len(bad) < len(items) else ""))
  return items, skipped


def _attach_init(o: RunOptions, items: list[Item], generator, config: SearchConfig,
                 log) -> None:
  """--init: each loadable input's saved rows (one npz for all, or DIR/<stem>/latents.npz),
  and one line per distinct rule (`init_rule`)."""
  init_file = None
  if os.path.isfile(o.init):
    try:
      init_file = _load_init(o.init, generator, config)
    except ValueError as e:
      raise UsageError(f"--init: {e}") from None
  rules: dict[str, list[str]] = {}
  for it in items:
    if it.image is None or it.status == "failed":
      continue
    if init_file is not None:
      it.init, source = init_file, o.init
    else:  # a previous run's output folder: DIR/<stem>/latents.npz
      source = os.path.join(o.init, it.stem, outputs.LATENTS)
      if not os.path.isfile(source):
        it.fail(f"{it.path}: --init={o.init}: no {source} for this input.")
        continue
      try:
        it.init = _load_init(source, generator, config)
      except ValueError as e:
        it.fail(f"{it.path}: --init: {e}")
        continue
    rules.setdefault(init_rule(it.init["latent"].shape[0], o.restarts), []).append(source)
  for rule, sources in rules.items():
    where = sources[0] if len(sources) == 1 else f"{len(sources)} inputs' latents.npz"
    log(f"init ({where}): {rule}")


def _check_existing(o: RunOptions, todo: list[Item], identity: dict, summary_path: str,
                    writer: bool, log) -> None:
  """What an earlier run left in OUTPUT_DIR, checked before anything is searched.

  Without --overwrite: an input whose outputs are complete (report.json, written last) with
  the same settings, weights and input pixels is kept (not searched again); incomplete
  outputs (a run interrupted before their report.json) are searched again; complete outputs
  of other settings, or a summary.json of another run, raise UsageError. With --overwrite
  everything is searched again and replaced. Process 0 (the writer) decides for every
  process, so that all skip the same batches.
  """
  if o.overwrite:
    return
  reports, error = (_earlier_outputs(o, todo, identity, summary_path, log) if writer
                    else ({}, None))
  kept = np.array([i in reports for i in range(len(todo))] + [error is not None], np.int32)
  kept = _from_process_0(kept)
  if kept[-1]:
    raise UsageError(error or "process 0 found outputs of an earlier run that this command "
                     "would not reproduce (see its message)")
  for i, it in enumerate(todo):
    if kept[i]:
      it.keep(reports.get(i, {}))


def _earlier_outputs(o: RunOptions, todo: list[Item], identity: dict, summary_path: str,
                     log) -> tuple[dict[int, dict], str | None]:
  """({index in todo: report} of the complete outputs to keep, the clash message or None)."""
  reports, clashes = {}, []
  for i, it in enumerate(todo):
    d = os.path.join(o.output_dir, it.stem)
    if not outputs.existing_outputs(o.output_dir, it.stem):
      continue
    try:
      report = outputs.complete_report(o.output_dir, it.stem)
    except ValueError as e:
      clashes.append(str(e))
      continue
    if report is None:
      log(f"{d}: incomplete outputs of an interrupted run: searching this input again")
      continue
    diffs = outputs.resume_differences(report, identity, it.image)
    if diffs:
      clashes.append(f"{d} (other settings: {_first(diffs)})")
    else:
      reports[i] = report
  if os.path.exists(summary_path):
    try:
      with open(summary_path) as f:
        s = json.load(f)
      diffs = outputs.differences(
          {"input": s.get("input", "?"), **outputs.result_identity(s["settings"], s["weights"])},
          {"input": o.input, **identity})
    except (OSError, ValueError, KeyError, TypeError) as e:
      diffs = [f"unreadable: {type(e).__name__}"]
    if diffs:
      clashes.append(f"{summary_path} (another run: {_first(diffs)})")
  if not clashes:
    return reports, None
  more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
  return reports, (f"outputs of an earlier run exist that this command would not reproduce: "
                   f"{', '.join(clashes[:3])}{more}; pass --overwrite to replace them, or "
                   "choose another --output_dir.")


def _from_process_0(x: np.ndarray) -> np.ndarray:
  """Process 0's `x` on every process (multi-process runs); `x` itself otherwise."""
  import jax
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.broadcast_one_to_all(x))


def _first(diffs: list[str], n: int = 3) -> str:
  return "; ".join(diffs[:n]) + (f"; and {len(diffs) - n} more" if len(diffs) > n else "")


class _Job:
  """The searches of a run, batch by batch, and their totals."""

  def __init__(self, o: RunOptions, generator, params, config: SearchConfig, settings: dict,
               winfo: dict, env: dict, writer: bool, log, warn):
    self.o, self.generator, self.params, self.config = o, generator, params, config
    self.settings, self.winfo, self.env = settings, winfo, env
    self.writer, self.log, self.warn = writer, log, warn
    self.compile_s = self.search_s = self.searched_s = 0.0
    self.restart_steps = 0

  def search(self, batches: list[list[Item]]) -> None:
    """Searches every batch with an input to search (batch numbers count every batch, so
    that they are the same when a run is started again)."""
    o = self.o
    work = [b for b in batches if not all(it.kept for it in b)]
    self.progress = _Progress(sum(len(b) for b in work) * o.restarts * o.steps, self.log,
                              self.config.eps)
    self.progress.total_images = sum(len(b) for b in work)
    for bi, batch in enumerate(batches):
      label = self._label(bi, len(batches), batch)
      if not all(it.kept for it in batch):
        self._search_batch(bi, label, batch)
      else:
        self.log(f"{label}: skipped: the outputs of {', '.join(it.path for it in batch)} are "
                 "complete (an earlier run with the same settings), kept")

  def _label(self, bi: int, n: int, batch: list[Item]) -> str:
    size, G = batch[0].image.size, self.generator.resolution
    return f"batch {bi + 1}/{n} ({len(batch)} x {size}x{size} -> {G}x{G})"

  def _checkpoint_dir(self, batch: list[Item]) -> str | None:
    if not self.o.checkpoint_dir:
      return None
    tag = hashlib.sha1(repr([(it.stem, it.image.image_key) for it in batch]).encode())
    return os.path.join(self.o.checkpoint_dir, f"batch-{batch[0].stem}-{tag.hexdigest()[:10]}")

  def _search_batch(self, bi: int, label: str, batch: list[Item]) -> None:
    """Searches one batch and writes the outputs of its inputs that are not kept."""
    from pulse_jax import driver
    o, progress = self.o, self.progress
    t_batch = time.perf_counter()
    progress.batch_label = label
    progress.batch_work = len(batch) * o.restarts
    ref = np.stack([it.image.pixels for it in batch])
    mask = (np.stack([it.image.mask for it in batch]) if batch[0].image.mask is not None
            else None)
    frames: dict[int, list] = {i: [] for i in range(len(batch))}
    progress.on_frames = functools.partial(self._save_frames, batch, frames)
    try:
      result = driver.search_images(
          self.generator, self.params, ref, config=self.config, restarts=o.restarts,
          image_keys=[it.image.image_key for it in batch],
          start=_batch_start(batch, self.generator, self.config, o.restarts), mask=mask,
          keep=o.duplicates, chunk_size=o.chunk_size, micro_batches=o.micro_batches,
          memory_budget_bytes=int(o.memory_budget_gb * 2**30) or None, progress=progress,
          frames=o.save_intermediate, checkpoint_dir=self._checkpoint_dir(batch),
          checkpoint_every=o.checkpoint_every, log=lambda s: self.log(f"{label}: {s}"))
    except Exception as e:  # pylint: disable=broad-except
      self._failed(bi, batch, e)
      return
    timings = self._account(bi, batch, result, t_batch)
    for i, it in enumerate(batch):
      if it.kept:  # searched again only as part of its batch (same results): not rewritten
        continue
      try:
        _write_input(o, it, result, i, frames[i], self.config, self.settings, self.winfo,
                     self.env, timings, self.writer, self.log, self.warn)
      except Exception as e:  # pylint: disable=broad-except
        it.fail(f"{it.path}: writing outputs failed: {type(e).__name__}: {e}")
        self.warn(f"error: {it.message}")
    self.searched_s += time.perf_counter() - t_batch

  def _failed(self, bi: int, batch: list[Item], e: Exception) -> None:
    o = self.o
    msg = f"search failed: {type(e).__name__}: {e}"
    self.warn(f"error: batch {bi + 1} ({', '.join(it.path for it in batch)}): {msg}")
    if not o.quiet:
      self.warn(traceback.format_exc(limit=3))
    for it in batch:
      if not it.kept:
        it.fail(f"{it.path}: {msg}")
    self.progress.done_images += len(batch)
    self.progress.total_work -= len(batch) * o.restarts * o.steps

  def _account(self, bi: int, batch: list[Item], result, t_batch: float) -> dict:
    """Adds a searched batch to the totals; returns the timings for its reports."""
    o, t, progress = self.o, result.timings, self.progress
    self.compile_s += t["compile_s"]
    self.search_s += t["search_s"]
    self.restart_steps += len(batch) * o.restarts * max(o.steps - result.resumed_from_step, 0)
    progress.done_work += len(batch) * o.restarts * o.steps
    progress.search_s += t["search_s"]
    progress.done_images += len(batch)
    return {"compile_s": t["compile_s"], "search_s": t["search_s"], "init_s": t["init_s"],
            "restart_steps_per_s": t["restart_steps_per_s"], "batch_images": len(batch),
            "batch_index": bi, "num_devices": result.num_devices,
            "micro_batches": result.micro_batches,
            "resumed_from_step": result.resumed_from_step,
            "batch_wall_s": time.perf_counter() - t_batch}

  def _save_frames(self, batch: list[Item], frames: dict, info) -> None:
    """--save_intermediate: each input's best-so-far HR/LR after a chunk, and a GIF frame."""
    if not self.writer:
      return
    G = self.generator.resolution
    for i, it in enumerate(batch):
      if it.kept:
        continue
      d = os.path.join(self.o.output_dir, it.stem, outputs.FRAMES)
      os.makedirs(d, exist_ok=True)
      hr, lr = outputs.to_pil(info.frames["hr"][i]), outputs.to_pil(info.frames["lr"][i])
      outputs.save_image(hr, os.path.join(d, f"hr_step{info.step:04d}.png"))
      outputs.save_image(lr, os.path.join(d, f"lr_step{info.step:04d}.png"))
      frames[i].append(outputs.frame_strip([outputs.to_pil(it.image.pixels), lr, hr],
                                           outputs.gif_cell(G)))


def _summary(o: RunOptions, job: _Job, items: list[Item], skipped, num_batches: int,
             config: SearchConfig, settings: dict, winfo: dict, env: dict, summary_path: str,
             t_start: float, writer: bool) -> dict:
  """The run summary (written to OUTPUT_DIR/summary.json by the writer process)."""
  searched = [it for it in items if it.status in ("within_eps", "not_within_eps")]
  ran = [it for it in searched if not it.kept]
  ok = [it for it in searched if it.status == "within_eps"]
  failed = [it for it in items if it.status == "failed"]
  summary = {
      "inputs": len(items), "searched": len(searched), "within_eps": len(ok),
      "not_within_eps": len(searched) - len(ok), "failed": len(failed), "skipped": len(skipped),
      "kept": len(searched) - len(ran),
      "success_rate": len(ok) / len(searched) if searched else 0.0, "eps": config.eps,
      "seconds_per_image": job.searched_s / len(ran) if ran else None,
      "restart_steps_per_s": job.restart_steps / job.search_s if job.search_s > 0 else 0.0,
      "compile_s": job.compile_s, "search_s": job.search_s,
      "wall_s": time.perf_counter() - t_start,
      "restarts": o.restarts, "steps": o.steps, "batches": num_batches,
      "exit_code": 1 if failed else 0, "summary_path": summary_path, "input": o.input,
      "files": [it.to_dict(o.output_dir) for it in items]
      + [{"input": str(s), "stem": None, "status": "skipped",
          "message": "not an image file extension"} for s in skipped],
      "settings": settings, "weights": winfo, "versions": env["versions"],
      "device": env["device"], "responsible_use": responsible_use.NOTICE}
  if writer:
    os.makedirs(o.output_dir, exist_ok=True)
    outputs.write_json(summary_path, summary)
  return summary


def _write_input(o, it: Item, result, i: int, frames: list, config, settings, winfo, env,
                 timings, writer: bool, log, warn) -> None:
  """Input i of a batch's result: its files, each renamed into place, report.json last (its
  presence marks the outputs complete)."""
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
  outputs.write_compact_json(os.path.join(d, outputs.TRACE), outputs.trace_doc(result, i))
  outputs.save_npz(os.path.join(d, outputs.LATENTS), outputs.latent_arrays(
      {k: v[i] for k, v in result.all_start_values.items()}, result.ranking[i],
      result.selected[i]))
  if not within:
    outputs.write_text(os.path.join(d, outputs.NOT_WITHIN_EPS), advice + "\n")
  if frames:
    outputs.write_gif(frames, os.path.join(d, outputs.GIF))
  report = outputs.input_report(
      it.image, result, i, config=config, restarts=o.restarts, duplicates=o.duplicates,
      files=files, settings=settings, weights=winfo, env=env, timings=timings,
      advice_text=advice)
  outputs.write_json(os.path.join(d, outputs.REPORT), report)  # last: the outputs are complete


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
  f.DEFINE_string("init", None, "Start values: a latents.npz written by a run (restart r "
                  "continues its row r; restarts past its rows start from their usual random "
                  "draws, extra rows are not used), or a previous OUTPUT_DIR (uses "
                  "<stem>/latents.npz per input). Continues every restart of that run.")
  f.DEFINE_boolean("save_intermediate", False, "Save the best-so-far HR/LR images after each "
                   "chunk of steps (<stem>/frames/) and an animated <stem>/progress.gif.")
  f.DEFINE_boolean("overwrite", False, "Search every input again and replace its outputs. "
                   "Without it, complete outputs of an earlier run with the same settings are "
                   "kept (not searched again), incomplete ones are redone, and outputs of other "
                   "settings are an error.")
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
                  "--checkpoint_every steps (one sub-folder per batch); the same command run "
                  "again after an interruption resumes each unfinished batch from it.")
  f.DEFINE_integer("checkpoint_every", 0, "Steps between search checkpoints (0: never).",
                   lower_bound=0)
  f.DEFINE_boolean("compile_cache", True, "Keep compiled programs in jax's persistent "
                   "compilation cache ($PULSE_JAX_COMPILE_CACHE, default ~/.cache/pulse_jax/xla)"
                   ", so a repeated run compiles nothing. --nocompile_cache or "
                   "PULSE_JAX_NO_COMPILE_CACHE=1 turn it off.")


def options_from_flags(FLAGS) -> RunOptions:
  names = [fld.name for fld in dataclasses.fields(RunOptions)]
  return RunOptions(**{n: getattr(FLAGS, n) for n in names})


HELP_ARGS = {"-h": True, "-?": True, "-help": True, "--help": True, "-helpshort": True,
             "--helpshort": True, "-helpfull": False, "--helpfull": False}  # arg -> short help


def quiet_logging() -> None:
  """No absl / jax / orbax INFO lines (they drown the progress) unless --verbosity is given
  (e.g. --verbosity=0 shows them)."""
  import logging as py_logging
  from absl import flags, logging
  if flags.FLAGS["verbosity"].present:
    return
  logging.set_verbosity(logging.WARNING)
  for name in ("jax", "jax._src.xla_bridge", "orbax"):
    py_logging.getLogger(name).setLevel(py_logging.WARNING)


def parse_flags(argv: list[str], prog: str) -> list[str]:
  """absl flag parsing with this contract: -h, --help, --helpshort and --helpfull print the
  help on stdout and exit 0; a bad flag (unknown, malformed, out of bounds) prints absl's
  message, which names the flag, and exits 2."""
  from absl import app, flags
  options = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  for a in options:
    if a in HELP_ARGS:
      app.usage(shorthelp=HELP_ARGS[a], writeto_stdout=True)
      sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"{prog}: error: {e}\nPass --help for the options, --helpfull for every flag.",
          file=sys.stderr)
    sys.exit(2)


def run_command(main: Callable[[list[str]], int], define: Callable[[], None],
                prog: str) -> None:
  """Defines the flags and runs `main(argv) -> exit status` as a command (`parse_flags`)."""
  from absl import app
  define()
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=lambda argv: parse_flags(argv, prog))


def main(argv) -> int:
  from absl import flags
  FLAGS = flags.FLAGS
  quiet_logging()
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
  run_command(main, define_flags, "pulse_jax.run")
