"""What a job leaves in OUTPUT_DIR: earlier runs' outputs checked (kept, redone or a clash),
each input's files and report, and the run summary (file formats: `pulse_jax.job.result_files`)."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import numpy as np

from pulse_jax.io import input_images
from pulse_jax.job import result_files
from pulse_jax.io import run_files
from pulse_jax.io import responsible_use
from pulse_jax.job.errors import UsageError


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
  # stem -> its report: this run's (`finish_input`) or the earlier run's of a kept input
  reports: dict = dataclasses.field(default_factory=dict)
  # stem -> the frames/ files written for it (--save_intermediate), listed in its report
  frame_files: dict = dataclasses.field(default_factory=dict)

  def forward_for(self, size: int):
    """The forward model of inputs of `size` x `size` (factor generator size / size)."""
    from pulse_jax.forward import ForwardModel
    return (self.forward or ForwardModel()).with_factor(self.generator.resolution // size)


# ----------------------------------------------------------------------------- earlier runs

def check_existing(o, todo: list, identity: dict, summary_path: str, writer: bool,
                   log) -> dict[str, dict]:
  """What an earlier run left in OUTPUT_DIR, checked before anything is searched.

  Without --overwrite: an input whose outputs are complete (report.json, written last) with
  the same settings, weights and input pixels is kept (not searched again); incomplete
  outputs (a run interrupted before their report.json) are searched again; complete outputs
  of other settings, or a summary.json of another run, raise UsageError. With --overwrite
  everything is searched again and replaced. Process 0 (the writer) decides for every
  process, so that all skip the same batches. Returns {stem: earlier report} of the inputs
  kept (on process 0; empty elsewhere).
  """
  if o.overwrite:
    return {}
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
  return {todo[i].stem: r for i, r in reports.items()}


def drop_unusable_folders(output_dir: str, todo: list, writer: bool, warn) -> list:
  """`todo` without the inputs whose folder OUTPUT_DIR/<stem> the job must not use (a
  symbolic link, a file, outside OUTPUT_DIR: `result_files.input_dir`); those fail, with the
  reason. Process 0 decides for every process."""
  bad, why = np.zeros(len(todo), np.int32), {}
  if writer:
    for i, it in enumerate(todo):
      try:
        result_files.input_dir(output_dir, it.stem)
      except result_files.UnsafeOutputPath as e:
        bad[i], why[i] = 1, str(e)
  bad = from_process_0(bad)
  for i, it in enumerate(todo):
    if bad[i]:
      it.fail(f"{it.path}: not searched: {why.get(i, 'its output folder cannot be used')}")
      warn(f"error: {it.message}")
  return [it for i, it in enumerate(todo) if not bad[i]]


def earlier_outputs(o, todo: list, identity: dict, summary_path: str,
                    log) -> tuple[dict[int, dict], str | None]:
  """({index in todo: report} of the complete outputs to keep, the clash message or None)."""
  reports, clashes = {}, []
  for i, it in enumerate(todo):
    d = os.path.join(o.output_dir, it.stem)
    try:
      if not result_files.existing_outputs(o.output_dir, it.stem):
        continue
      report = result_files.complete_report(o.output_dir, it.stem)
    except ValueError as e:  # UnsafeOutputPath included
      clashes.append(str(e))
      continue
    if report is None:
      log(f"{d}: incomplete outputs of an interrupted run: searching this input again")
      continue
    diffs = result_files.resume_differences(report, identity, it.image, mask=it.mask_info)
    if diffs:
      clashes.append(f"{d} (other settings: {_first(diffs)})")
    else:
      reports[i] = report
  if os.path.exists(summary_path):
    try:
      with open(summary_path) as f:
        s = json.load(f)
      diffs = ([] if not _has_results(s) else result_files.differences(
          {"input": s.get("input", "?"),
           **result_files.result_identity(s["settings"], s["weights"])},
          {"input": o.input, **identity}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
      diffs = [f"unreadable: {type(e).__name__}"]
    if diffs:
      clashes.append(f"{summary_path} (another run: {_first(diffs)})")
  if not clashes:
    return reports, None
  more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
  return reports, (f"outputs of an earlier run exist that this command would not reproduce: "
                   f"{', '.join(clashes[:3])}{more}; pass --overwrite to replace them, or "
                   "choose another --output_dir.")


def _has_results(s: dict) -> bool:
  """Whether an earlier summary records a run that left results (an input searched, kept or
  not): a run whose inputs all failed or were skipped leaves nothing to protect, and its
  settings (e.g. the --fit its error message advises to change) must not block the next."""
  files = s["files"]
  if not isinstance(files, list):
    raise TypeError("files is not a list")
  return any(isinstance(f, dict) and f.get("status") in ("within_eps", "not_within_eps")
             for f in files)


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
  k_out = result.hr.shape[1]
  rng = result_files.range_of(result, i)
  steps = result_files.search_steps(config, result)   # with --ilo: the layers' steps too
  if not within:
    advice = result_files.advice(it.stem, config.eps, it.best_l2, o.restarts, o.steps, best_r)
    it.message = f"not within eps: closest L2 {it.best_l2:.4g} > eps {config.eps:g}"
    ctx.warn(f"warning: {advice}")
    ctx.log(f"{it.path}: {range_text(rng, k_out, steps)}")
  else:
    ctx.log(f"{it.path}: {int(result.within_eps[i].sum())}/{o.restarts} restarts within eps "
            f"{config.eps:g}; best L2 {it.best_l2:.3e} (restart {best_r}, step "
            f"{int(result.best_step[i, best_r])}); {range_text(rng, k_out, steps)}")
  ilo = result_files.ilo_block(result, i, config=config)
  if ilo is not None:
    ctx.log(f"{it.path}: {result_files.ilo_text(ilo)}")
  spread = rng["spread"] if ctx.write else None
  spread_files = [result_files.SPREAD_PNG, result_files.SPREAD_NPY] if spread is not None else []
  if ctx.write:
    files = {"hr": [f"hr_{k}.png" for k in range(k_out)],
             "lr": [f"lr_{k}.png" for k in range(k_out)], "latents": run_files.LATENTS,
             "spread": result_files.SPREAD_PNG if spread is not None else None}
    # Every file of this input's folder that this run writes (`result_files.clear_outputs` removes
    # these, and only these, when the input is searched again).
    written = ([run_files.INPUT_PNG] + [n for k in range(k_out)
                                      for n in (files["hr"][k], files["lr"][k])]
               + [run_files.LATENTS, run_files.TRACE] + spread_files
               + ([run_files.NOT_WITHIN_EPS] if advice is not None else [])
               + ([run_files.GIF] if frames else [])
               + sorted(ctx.frame_files.get(it.stem, ()))
               + [run_files.REPORT])
  else:
    files = {"hr": [None] * k_out, "lr": [None] * k_out, "latents": None, "spread": None}
  report = result_files.input_report(
      it.image, result, i, config=config, restarts=o.restarts, duplicates=o.duplicates,
      files=files, settings=ctx.settings, weights=ctx.winfo, env=ctx.env, timings=timings,
      advice_text=advice)
  report.update(ctx.record)
  forward = ctx.forward_for(it.image.size)
  report.update(forward=forward.describe(), eps_note=forward.eps_note(o.eps), mask=it.mask_info)
  note = input_images.stem_note(it.path, it.stem) if it.label is None else None
  if note:
    report["stem_note"] = note
  if ctx.write:
    report["files"] = written
    _write_files(ctx, it, result, i, frames, files, advice, report, spread)
  ctx.reports[it.stem] = report
  return report


def range_text(rng: dict, kept: int, steps: int) -> str:
  """'kept 3 candidates (diverse), diversity 0.0812, 500/500 steps run' from
  `result_files.range_of`: the log line's account of an input's range of faces."""
  filled = f"; {rng['filled']} not within eps" if rng["filled"] else ""
  div = (f"diversity {rng['diversity']:.3g}" if rng["diversity"] is not None
         else "diversity n/a (1 kept)" if kept < 2 else "diversity n/a")
  early = " (ended early)" if rng["ended_early"] else ""
  return (f"kept {kept} candidate{'s' if kept != 1 else ''} ({rng['selection']}{filled}), "
          f"{div}, {rng['steps_run']}/{steps} steps run{early}")


def _write_files(ctx: Context, it, result, i: int, frames: list, files: dict, advice, report,
                 spread=None):
  d = result_files.input_dir(ctx.o.output_dir, it.stem)
  os.makedirs(d, exist_ok=True)
  result_files.input_dir(ctx.o.output_dir, it.stem)  # made here: still a plain folder inside
  result_files.save_png(it.image.pixels, os.path.join(d, run_files.INPUT_PNG))
  for k in range(result.hr.shape[1]):
    for kind in ("hr", "lr"):
      result_files.save_png(getattr(result, kind)[i, k], os.path.join(d, files[kind][k]))
  result_files.write_compact_json(os.path.join(d, run_files.TRACE),
                                  result_files.trace_doc(result, i))
  result_files.save_npz(os.path.join(d, run_files.LATENTS), latents_of(result, i))
  if spread is not None:  # [H, W]: 2 or more restarts within eps
    result_files.save_spread(spread, d)
  if advice is not None:
    result_files.write_text(os.path.join(d, run_files.NOT_WITHIN_EPS), advice + "\n")
  if frames:
    result_files.write_gif(frames, os.path.join(d, run_files.GIF))
  # last: the outputs are complete
  result_files.write_json(os.path.join(d, run_files.REPORT), report)


def latents_of(result, i: int) -> dict:
  """Input i's latents.npz arrays: every restart's best iterate, 'kept' and 'rank'."""
  return result_files.latent_arrays({k: v[i] for k, v in result.all_start_values.items()},
                               result.ranking[i], result.selected[i])


def save_frames(ctx: Context, batch: list, frames: dict, info) -> None:
  """--save_intermediate: each input's best-so-far HR/LR after a chunk, and a GIF frame."""
  if not ctx.write:
    return
  G = ctx.generator.resolution
  for i, it in enumerate(batch):
    if it.kept:
      continue
    d = result_files.input_dir(ctx.o.output_dir, it.stem, sub=run_files.FRAMES)
    os.makedirs(d, exist_ok=True)
    result_files.input_dir(ctx.o.output_dir, it.stem, sub=run_files.FRAMES)
    hr, lr = result_files.to_pil(info.frames["hr"][i]), result_files.to_pil(info.frames["lr"][i])
    names = [f"hr_step{info.step:04d}.png", f"lr_step{info.step:04d}.png"]
    result_files.save_image(hr, os.path.join(d, names[0]))
    result_files.save_image(lr, os.path.join(d, names[1]))
    ctx.frame_files.setdefault(it.stem, set()).update(f"{run_files.FRAMES}/{n}" for n in names)
    frames[i].append(result_files.frame_strip([result_files.to_pil(it.image.pixels), lr, hr],
                                         result_files.gif_cell(G)))


# ----------------------------------------------------------------------------- the summary

def summary(ctx: Context, job, items: list, skipped, num_batches: int, summary_path: str | None,
            t_start: float) -> dict:
  """The run summary (written to OUTPUT_DIR/summary.json with ctx.write).

  Each searched input's `files` entry carries its own `timings` (from its report: for an
  input kept from an earlier run, that run's) and `kept`; an input whose file name could not
  be its folder name has a `stem_note`. When summary.json cannot be written (a full disk),
  the per-input results stay, the problem is reported (`error`, naming the file) and
  `exit_code` is 2.
  """
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
      "exit_code": (128 + job.stopped_by if getattr(job, "stopped_by", None)  # SIGTERM/INT
                    else 1 if failed else 0), "summary_path": summary_path, "input": o.input,
      "interrupted": sum(it.status == "interrupted" for it in items),
      "files": [_file_entry(ctx, it, o.output_dir) for it in items]
      + [{"input": str(f), "stem": None, "status": "skipped",
          "message": input_images.skip_reason(f)} for f in skipped],
      "settings": ctx.settings, **ctx.record, "weights": ctx.winfo,
      "versions": ctx.env["versions"], "device": ctx.env["device"],
      "responsible_use": responsible_use.NOTICE}
  if ctx.write:
    try:
      os.makedirs(o.output_dir, exist_ok=True)
      result_files.write_json(summary_path, s)
    except OSError as e:
      done = [os.path.join(o.output_dir, it.stem) for it in ran]
      s["error"] = (f"{summary_path}: not written ({type(e).__name__}: "
                    f"{e.strerror or e}); the results of the inputs searched are complete in "
                    + (", ".join(done[:3]) + (f" and {len(done) - 3} more" if len(done) > 3
                                              else "") if done else "their folders")
                    + "; free some space (or fix the folder) and run the same command again "
                    "to write the summary (complete results are kept)")
      s["exit_code"] = 2
      ctx.warn(f"error: {s['error']}")
  return s


# Report timings copied into the summary's entry of each searched input.
ENTRY_TIMINGS = ("compile_s", "search_s", "init_s", "batch_wall_s", "batch_images",
                 "restart_steps_per_s", "resumed_from_step")


def _range_entry(report: dict) -> dict:
  """An input's diversity, spread_mean and steps_run for its summary entry, from its report
  (None where the report has none: an earlier run's before these blocks)."""
  block = lambda name: report.get(name) if isinstance(report.get(name), dict) else {}  # noqa
  return {"diversity": block("candidates").get("diversity"),
          "spread_mean": block("spread").get("mean"),
          "steps_run": block("stopping").get("steps_run")}


def _ilo_entry(report: dict) -> dict:
  """With ILO (the report has an "ilo" block): the input's summary fields 'ilo_kept_layer' and
  'ilo_moved' (the best restart's {layer: relative l1 move}); {} otherwise (no fields)."""
  block = report.get("ilo")
  if not isinstance(block, dict):
    return {}
  best = block.get("best") if isinstance(block.get("best"), dict) else {}
  return {"ilo_kept_layer": block.get("kept_layer"), "ilo_moved": best.get("moved")}


def _file_entry(ctx: Context, it, output_dir: str | None) -> dict:
  """One input's entry in the summary's `files` (`Item.to_dict`, and its timings from its
  report, its stem note)."""
  d = it.to_dict(output_dir)
  report = ctx.reports.get(it.stem)
  if it.status in ("within_eps", "not_within_eps"):
    t = (report or {}).get("timings")
    d["timings"] = ({k: t.get(k) for k in ENTRY_TIMINGS if k in t} if isinstance(t, dict)
                    else None)
    d.update(_range_entry(report or {}))
    d.update(_ilo_entry(report or {}))
  note = (report or {}).get("stem_note") or (
      input_images.stem_note(it.path, it.stem) if getattr(it, "label", None) is None else None)
  if note:
    d["stem_note"] = note
  return d
