"""The PULSE job: options resolved and checked, generator and inputs loaded, every batch
searched with progress lines, outputs and summary written. `run_job(RunOptions(...))` is
`python -m pulse_jax.run`; `pulse_jax.upsample` runs the same `run` on in-memory inputs."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import sys
import tempfile
import time
import traceback
from typing import Callable

import numpy as np

from pulse_jax.io import gallery
from pulse_jax.runtime import compile_cache
from pulse_jax.job import init_values
from pulse_jax.io import input_images
from pulse_jax.job import model as job_model
from pulse_jax.job import inputs as job_inputs
from pulse_jax.job import outputs as job_outputs
from pulse_jax.job import options
from pulse_jax.job import result_files
from pulse_jax.io import run_files
from pulse_jax.job import run_lock
from pulse_jax.job import settings as run_options
from pulse_jax.job.errors import UsageError
from pulse_jax.job.inputs import Item
from pulse_jax.job.settings import RunOptions


def is_writer() -> bool:
  import jax
  return jax.process_index() == 0


def run_job(o: RunOptions, *, log: Callable[[str], None] | None = None,
            warn: Callable[[str], None] | None = None) -> dict:
  """Runs the whole job; returns the summary dict (also written to OUTPUT_DIR/summary.json).

  Raises UsageError for problems with the options or the set-up (before anything is searched).
  Per-input problems are reported when found and in the summary (`files`, status 'failed')
  and make `summary['exit_code']` 1. Inputs whose complete outputs an earlier run with the
  same settings left in OUTPUT_DIR are kept, not searched again
  (`job_outputs.check_existing`).
  """
  return run(o, log=log, warn=warn)


def run(o: RunOptions, *, model: job_model.Model | None = None, items: list | None = None,
        on_result: Callable | None = None, strict: bool = False,
        log: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None) -> dict:
  """`run_job`, and what the API adds: `model` (already loaded weights; default: --weights),
  `items` (the inputs as `job_inputs.Item`s; default: --input), `on_result(item, result, i,
  report)` called for each input searched (input i of the batch's `loop.SearchResult`),
  `strict`: a bad input raises InputError before the search and a failed search raises.
  With o.output_dir None nothing is written. OUTPUT_DIR and --checkpoint_dir are checked,
  made and locked before anything else (`run_lock.hold`: a second run into either exits with
  a UsageError naming the first's pid and host).
  """
  t_start = time.perf_counter()
  writer = is_writer()
  say = log or (lambda s: print(s, flush=True))
  log = (lambda s: None) if (o.quiet or not writer) else say
  warn = warn or (lambda s: print(s, file=sys.stderr, flush=True))
  if not writer:
    warn = lambda s: None  # noqa: E731
  o = run_options.resolve(o, model.name if model is not None else o.weights)
  run_options.check_options(o)
  with run_lock.hold(o, writer, warn):
    return _run_locked(o, model, items, on_result, strict, writer, log, warn, t_start)


def _run_locked(o, model, items, on_result, strict, writer, log, warn, t_start) -> dict:
  """`run` once its folders are checked and locked."""
  if o.compile_cache:
    compile_cache.enable()

  model = model or job_model.load_model(o.weights, log)
  generator = model.generator(o.compute_dtype, o.remat)
  params = job_model.search_params(model, generator, o.class_index)
  loss_str, notes = job_model.loss_for_generator(o.loss_str, generator)
  config = o.search_config(loss_str)
  job_model.check_layers(config, generator)
  forward = forward_model(o, generator)
  # --noise_sigma: the eps test and the L2 clamp use max(eps, noise_sigma^2).
  config = dataclasses.replace(config, eps=forward.effective_eps(config.eps))
  eps_note = forward.eps_note(o.eps)
  for n in notes + job_model.generator_notes(o, generator) + (
      [f"note: {eps_note}"] if eps_note else []):
    log(n)

  with contextlib.ExitStack() as stack:
    aligned = (os.path.join(o.output_dir, "aligned") if o.output_dir is not None
               else stack.enter_context(tempfile.TemporaryDirectory(prefix="pulse_jax-align-")))
    items, skipped = job_inputs.collect(o, generator, files=items, log=log, warn=warn,
                                        aligned_dir=aligned)
    job_inputs.apply_forward(o, items, forward, log)
    if o.init is not None:
      init_values.attach_init(o, items, generator, config, log)
    job_inputs.relabel(items)
    if strict and any(it.status == "failed" for it in items):
      raise input_images.InputError("; ".join(it.message for it in items if it.status == "failed"))
    job_inputs.report_bad(items, log, warn)
    return _search_and_summarise(o, model, params, generator, config, forward, items, skipped,
                                 on_result, strict, writer, log, warn, t_start)


def forward_model(o: RunOptions, generator):
  """The run's `pulse_jax.forward.ForwardModel` (factor 1: each batch sets its own) from the
  forward options, checked against the generator's HR images; UsageError naming the flag (a
  bad or too large --blur_kernel, --grayscale with a generator of 2 or 4+ channels)."""
  from pulse_jax.forward import ForwardModel
  try:
    forward = ForwardModel.from_options(**options.values_of(o, "forward"))
    g = generator.resolution
    forward.check_hr_shape((generator.num_channels, g, g))
  except ValueError as e:  # KernelError included; the messages name the flag
    m = str(e)
    raise UsageError(m if m.startswith("--") else f"forward model: {m}") from None
  return forward


def forward_setting(forward) -> dict:
  """The forward model as the run's settings record it (compared when a run is started
  again): `describe()` without what depends on the input size (factor, operators)."""
  return {k: v for k, v in forward.describe().items() if k not in ("factor", "operators")}


def _search_and_summarise(o, model, params, generator, config, forward, items, skipped,
                          on_result, strict, writer, log, warn, t_start) -> dict:
  todo = [it for it in items if it.image is not None and it.status != "failed"]
  settings = run_options.settings(o, config, generator)
  settings["forward"] = forward_setting(forward)
  winfo = job_model.weights_info(model)
  ctx = job_outputs.Context(
      o=o, generator=generator, config=config, settings=settings,
      record=run_options.record(o, generator), winfo=winfo,
      env={"versions": result_files.versions(), "device": result_files.device_info()},
      write=writer and o.output_dir is not None, log=log, warn=warn, forward=forward)
  summary_path = (os.path.join(o.output_dir, run_files.SUMMARY) if o.output_dir is not None
                  else None)
  if o.output_dir is not None:
    todo = job_outputs.drop_unusable_folders(o.output_dir, todo, writer, warn)
    ctx.reports.update(job_outputs.check_existing(
        o, todo, result_files.result_identity(settings, winfo), summary_path, writer, log))
  if ctx.write:
    os.makedirs(o.output_dir, exist_ok=True)
    for it in todo:
      if not it.kept:
        result_files.clear_outputs(o.output_dir, it.stem)
        os.makedirs(result_files.input_dir(o.output_dir, it.stem), exist_ok=True)

  job = Job(ctx, params, on_result=on_result, strict=strict)
  batches = make_batches(todo, o.batch_size)
  job.search(batches)
  summary = job_outputs.summary(ctx, job, items, skipped, len(batches), summary_path, t_start)
  if ctx.write and summary.get("error"):
    warn(f"warning: gallery page not written ({run_files.SUMMARY} could not be written)")
  elif ctx.write:
    try:
      log(f"gallery: {gallery.write_gallery(o.output_dir)}")
    except Exception as e:  # pylint: disable=broad-except  # the results are saved already
      warn(f"warning: gallery page not written: {type(e).__name__}: {e}")
  return summary


def make_batches(items: list[Item], batch_size: int) -> list[list[Item]]:
  """Images of the same size (and padding or not) together, in input order, batch_size each."""
  groups: dict[tuple, list[Item]] = {}
  for it in items:
    groups.setdefault((it.image.size, it.image.mask is not None), []).append(it)
  out = []
  for group in groups.values():
    out += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
  return out


# ----------------------------------------------------------------------------- progress

class Progress:
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
    self.stops_early = False    # anytime search: the lines say how many images have ended

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
    ended = f", {info.ended}/{l2.size} ended" if self.stops_early else ""
    self.log(f"[{self.done_images}/{self.total_images} images done] {self.batch_label} "
             f"step {info.step}/{info.steps}  {l2_txt} (eps {self.eps:g}, {within}/{l2.size} "
             f"within{ended})  loss {np.nanmin(info.best_total):.4g}  {info.elapsed_s:.1f} s  "
             f"ETA {fmt_s(eta)}")


def fmt_s(s: float) -> str:
  if not np.isfinite(s):
    return "?"
  if s < 90:
    return f"{s:.0f} s"
  if s < 5400:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.1f} h"


# ----------------------------------------------------------------------------- the batches

class Job:
  """The searches of a run, batch by batch, and their totals."""

  def __init__(self, ctx: job_outputs.Context, params, on_result=None, strict: bool = False):
    self.ctx, self.o, self.params = ctx, ctx.o, params
    self.generator, self.config = ctx.generator, ctx.config
    self.log, self.warn = ctx.log, ctx.warn
    self.on_result, self.strict = on_result, strict
    self.compile_s = self.search_s = self.searched_s = 0.0
    self.restart_steps = 0
    self.stopped_by: int | None = None  # the signal that stopped the job (`pulse_jax.runtime.stopping`)
    from pulse_jax.search import ilo
    # steps of a restart's whole search: --steps, plus --ilo_steps per ILO layer
    self.steps = ilo.total_steps(self.config, len(ilo.layers(self.config, self.generator)))

  def search(self, batches: list[list[Item]]) -> None:
    """Searches every batch with an input to search (batch numbers count every batch, so
    that they are the same when a run is started again).

    A stop request (`pulse_jax.runtime.stopping`: SIGTERM, SIGINT under `python -m pulse_jax.run`)
    ends the search between chunks, or before the next batch: the inputs not done are marked
    'interrupted' (the same command resumes them, from the running batch's checkpoint with
    --checkpoint_dir) and `stopped_by` holds the signal."""
    from pulse_jax.runtime import loop
    from pulse_jax.runtime import stopping
    o = self.o
    work = [b for b in batches if not all(it.kept for it in b)]
    self.progress = Progress(sum(len(b) for b in work) * o.restarts * self.steps, self.log,
                             self.config.eps)
    self.progress.total_images = sum(len(b) for b in work)
    self.progress.stops_early = self.config.stop_within > 0
    for bi, batch in enumerate(batches):
      label = self._label(bi, len(batches), batch)
      if all(it.kept for it in batch):
        self.log(f"{label}: skipped: the outputs of {', '.join(it.path for it in batch)} are "
                 "complete (an earlier run with the same settings), kept")
        continue
      signum = stopping.requested()
      if signum is not None:
        self._interrupted(batches[bi:], signum, f"stopped by {stopping.name(signum)} before "
                          "its batch")
        return
      try:
        self._search_batch(bi, label, batch)
      except loop.Stopped as e:
        self.warn(f"{label}: {e}")
        self._interrupted(batches[bi:], e.signum, str(e), first=batch)
        return

  def _interrupted(self, batches: list[list[Item]], signum: int, why: str,
                   first: list[Item] | None = None) -> None:
    """Marks the inputs of `batches` not done (not kept, not failed) 'interrupted'."""
    self.stopped_by = signum
    for batch in batches:
      for it in batch:
        if it.kept or it.status in ("failed", "within_eps", "not_within_eps"):
          continue
        it.status = "interrupted"
        it.message = ((why if batch is first else "not searched: the run was stopped")
                      + "; run the same command again to resume")

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
    from pulse_jax.runtime import loop
    o, progress = self.o, self.progress
    t_batch = time.perf_counter()
    progress.batch_label = label
    progress.batch_work = len(batch) * o.restarts
    ref = np.stack([it.image.pixels for it in batch])
    # Loss masks: --fit=pad's padding times --mask's known pixels (`job_inputs.apply_forward`).
    mask = (np.stack([it.image.mask for it in batch]) if batch[0].image.mask is not None
            else None)
    frames: dict[int, list] = {i: [] for i in range(len(batch))}
    progress.on_frames = functools.partial(job_outputs.save_frames, self.ctx, batch, frames)
    try:
      result = loop.search_images(
          self.generator, self.params, ref, config=self.config, restarts=o.restarts,
          image_keys=[it.image.image_key for it in batch],
          start=init_values.batch_start(batch, self.generator, self.config, o.restarts),
          mask=mask, forward=self.ctx.forward_for(batch[0].image.size), keep=o.duplicates,
          chunk_size=o.chunk_size, micro_batches=o.micro_batches,
          memory_budget_bytes=int(o.memory_budget_gb * 2**30) or None, progress=progress,
          frames=o.save_intermediate, checkpoint_dir=self._checkpoint_dir(batch),
          checkpoint_every=o.checkpoint_every, log=lambda s: self.log(f"{label}: {s}"),
          warn=lambda s: self.warn(f"{label}: {s}"), selection=o.candidates)
    except loop.Stopped:
      raise
    except Exception as e:  # pylint: disable=broad-except
      if self.strict:
        raise
      self._failed(bi, batch, e)
      return
    timings = self._account(bi, batch, result, t_batch)
    for i, it in enumerate(batch):
      if it.kept:  # searched again only as part of its batch (same results): not rewritten
        continue
      try:
        report = job_outputs.finish_input(self.ctx, it, result, i, frames[i], timings)
      except Exception as e:  # pylint: disable=broad-except
        if self.strict:
          raise
        it.fail(f"{it.path}: writing outputs failed: {type(e).__name__}: {e}")
        self.warn(f"error: {it.message}")
        continue
      if self.on_result is not None:
        self.on_result(it, result, i, report)
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
    self.progress.total_work -= len(batch) * o.restarts * self.steps

  def _account(self, bi: int, batch: list[Item], result, t_batch: float) -> dict:
    """Adds a searched batch to the totals; returns the timings for its reports."""
    o, t, progress = self.o, result.timings, self.progress
    self.compile_s += t["compile_s"]
    self.search_s += t["search_s"]
    self.restart_steps += t["restart_steps"]
    progress.done_work += len(batch) * o.restarts * self.steps
    progress.search_s += t["search_s"]
    progress.done_images += len(batch)
    return {"compile_s": t["compile_s"], "search_s": t["search_s"], "init_s": t["init_s"],
            "restart_steps_per_s": t["restart_steps_per_s"], "batch_images": len(batch),
            "restart_steps": t["restart_steps"], "row_steps": t["row_steps"],
            "batch_index": bi, "num_devices": result.num_devices,
            "micro_batches": result.micro_batches,
            "resumed_from_step": result.resumed_from_step,
            "batch_wall_s": time.perf_counter() - t_batch}
