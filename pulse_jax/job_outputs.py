"""What a job leaves in OUTPUT_DIR: earlier runs' outputs checked (kept, redone or a clash),
each input's files and report, and the run summary (file formats: `pulse_jax.outputs`)."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import numpy as np

from pulse_jax import outputs, responsible_use
from pulse_jax.errors import UsageError


@dataclasses.dataclass
class Context:
  """What a job's outputs depend on. write: whether files are written (process 0 of a job with
  an output folder); record: `run_options.record` (preset, options and their sources);
  forward: the run's `pulse_jax.forward.ForwardModel` (factor 1; `forward_for` a size)."""
  o: object
  generator: object
  config: object
  settings: dict
  record: dict
  winfo: dict
  env: dict
  write: bool
  log: Callable[[str], None]
  warn: Callable[[str], None]
  forward: object = None

  def forward_for(self, size: int):
    """The forward model of inputs of `size` x `size` (factor generator size / size)."""
    from pulse_jax.forward import ForwardModel
    return (self.forward or ForwardModel()).with_factor(self.generator.resolution // size)


# ----------------------------------------------------------------------------- earlier runs

def check_existing(o, todo: list, identity: dict, summary_path: str, writer: bool, log) -> None:
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
  reports, error = (earlier_outputs(o, todo, identity, summary_path, log) if writer
                    else ({}, None))
  kept = np.array([i in reports for i in range(len(todo))] + [error is not None], np.int32)
  kept = from_process_0(kept)
  if kept[-1]:
    raise UsageError(error or "process 0 found outputs of an earlier run that this command "
                     "would not reproduce (see its message)")
  for i, it in enumerate(todo):
    if kept[i]:
      it.keep(reports.get(i, {}))


def earlier_outputs(o, todo: list, identity: dict, summary_path: str,
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
    diffs = outputs.resume_differences(report, identity, it.image, mask=it.mask_info)
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


def from_process_0(x: np.ndarray) -> np.ndarray:
  """Process 0's `x` on every process (multi-process runs); `x` itself otherwise."""
  import jax
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.broadcast_one_to_all(x))


def _first(diffs: list[str], n: int = 3) -> str:
  return "; ".join(diffs[:n]) + (f"; and {len(diffs) - n} more" if len(diffs) > n else "")


# ----------------------------------------------------------------------------- one input

def finish_input(ctx: Context, it, result, i: int, frames: list, timings: dict) -> dict:
  """Input i of a batch's result: its outcome, its report (returned) and, with ctx.write, its
  files, each renamed into place, report.json last (its presence marks the outputs complete)."""
  o, config = ctx.o, ctx.config
  within = bool(result.within_eps[i].any())
  best_r = int(result.ranking[i, 0])
  it.best_l2 = float(result.l2[i, best_r])
  it.status = "within_eps" if within else "not_within_eps"
  advice = None
  if not within:
    advice = outputs.advice(it.stem, config.eps, it.best_l2, o.restarts, o.steps, best_r)
    it.message = f"not within eps: closest L2 {it.best_l2:.4g} > eps {config.eps:g}"
    ctx.warn(f"warning: {advice}")
  else:
    ctx.log(f"{it.path}: {int(result.within_eps[i].sum())}/{o.restarts} restarts within eps "
            f"{config.eps:g}; best L2 {it.best_l2:.3e} (restart {best_r}, step "
            f"{int(result.best_step[i, best_r])})")
  k_out = result.hr.shape[1]
  if ctx.write:
    files = {"hr": [f"hr_{k}.png" for k in range(k_out)],
             "lr": [f"lr_{k}.png" for k in range(k_out)], "latents": outputs.LATENTS}
  else:
    files = {"hr": [None] * k_out, "lr": [None] * k_out, "latents": None}
  report = outputs.input_report(
      it.image, result, i, config=config, restarts=o.restarts, duplicates=o.duplicates,
      files=files, settings=ctx.settings, weights=ctx.winfo, env=ctx.env, timings=timings,
      advice_text=advice)
  report.update(ctx.record)
  forward = ctx.forward_for(it.image.size)
  report.update(forward=forward.describe(), eps_note=forward.eps_note(o.eps), mask=it.mask_info)
  if ctx.write:
    _write_files(ctx, it, result, i, frames, files, advice, report)
  return report


def _write_files(ctx: Context, it, result, i: int, frames: list, files: dict, advice, report):
  d = os.path.join(ctx.o.output_dir, it.stem)
  os.makedirs(d, exist_ok=True)
  outputs.save_png(it.image.pixels, os.path.join(d, outputs.INPUT_PNG))
  for k in range(result.hr.shape[1]):
    for kind in ("hr", "lr"):
      outputs.save_png(getattr(result, kind)[i, k], os.path.join(d, files[kind][k]))
  outputs.write_compact_json(os.path.join(d, outputs.TRACE), outputs.trace_doc(result, i))
  outputs.save_npz(os.path.join(d, outputs.LATENTS), latents_of(result, i))
  if advice is not None:
    outputs.write_text(os.path.join(d, outputs.NOT_WITHIN_EPS), advice + "\n")
  if frames:
    outputs.write_gif(frames, os.path.join(d, outputs.GIF))
  outputs.write_json(os.path.join(d, outputs.REPORT), report)  # last: the outputs are complete


def latents_of(result, i: int) -> dict:
  """Input i's latents.npz arrays: every restart's best iterate, 'kept' and 'rank'."""
  return outputs.latent_arrays({k: v[i] for k, v in result.all_start_values.items()},
                               result.ranking[i], result.selected[i])


def save_frames(ctx: Context, batch: list, frames: dict, info) -> None:
  """--save_intermediate: each input's best-so-far HR/LR after a chunk, and a GIF frame."""
  if not ctx.write:
    return
  G = ctx.generator.resolution
  for i, it in enumerate(batch):
    if it.kept:
      continue
    d = os.path.join(ctx.o.output_dir, it.stem, outputs.FRAMES)
    os.makedirs(d, exist_ok=True)
    hr, lr = outputs.to_pil(info.frames["hr"][i]), outputs.to_pil(info.frames["lr"][i])
    outputs.save_image(hr, os.path.join(d, f"hr_step{info.step:04d}.png"))
    outputs.save_image(lr, os.path.join(d, f"lr_step{info.step:04d}.png"))
    frames[i].append(outputs.frame_strip([outputs.to_pil(it.image.pixels), lr, hr],
                                         outputs.gif_cell(G)))


# ----------------------------------------------------------------------------- the summary

def summary(ctx: Context, job, items: list, skipped, num_batches: int, summary_path: str | None,
            t_start: float) -> dict:
  """The run summary (written to OUTPUT_DIR/summary.json with ctx.write)."""
  o, config = ctx.o, ctx.config
  searched = [it for it in items if it.status in ("within_eps", "not_within_eps")]
  ran = [it for it in searched if not it.kept]
  ok = [it for it in searched if it.status == "within_eps"]
  failed = [it for it in items if it.status == "failed"]
  s = {
      "inputs": len(items), "searched": len(searched), "within_eps": len(ok),
      "not_within_eps": len(searched) - len(ok), "failed": len(failed), "skipped": len(skipped),
      "kept": len(searched) - len(ran),
      "success_rate": len(ok) / len(searched) if searched else 0.0, "eps": config.eps,
      "eps_note": ctx.forward.eps_note(o.eps) if ctx.forward is not None else None,
      "seconds_per_image": job.searched_s / len(ran) if ran else None,
      "restart_steps_per_s": job.restart_steps / job.search_s if job.search_s > 0 else 0.0,
      "compile_s": job.compile_s, "search_s": job.search_s,
      "wall_s": time.perf_counter() - t_start,
      "restarts": o.restarts, "steps": o.steps, "batches": num_batches,
      "exit_code": 1 if failed else 0, "summary_path": summary_path, "input": o.input,
      "files": [it.to_dict(o.output_dir) for it in items]
      + [{"input": str(f), "stem": None, "status": "skipped",
          "message": "not an image file extension"} for f in skipped],
      "settings": ctx.settings, **ctx.record, "weights": ctx.winfo,
      "versions": ctx.env["versions"], "device": ctx.env["device"],
      "responsible_use": responsible_use.NOTICE}
  if ctx.write:
    os.makedirs(o.output_dir, exist_ok=True)
    outputs.write_json(summary_path, s)
  return s
