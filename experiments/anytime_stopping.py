"""Choosing the built-in DCGAN preset's anytime stop (--stop_within=K, --stop_extra_steps=M) by
measurement on real faces that are not the shipped samples, both settings in one run.

    python -m experiments.anytime_stopping --photos_dir=PHOTOS [--stops=0:0,4:0,3:0,4:25]
    python -m experiments.anytime_stopping --nomeasure --demo   # the README's main job only
    python -m experiments.anytime_stopping --report_only        # rewrite the .md from the .json

Faces: the eight measurement faces of experiments/dcgan_presets.py (cropped exactly as there,
from the photos described in its docstring), at --sizes (8x8: the preset's measurement size).
Each face is searched alone (one input per compiled program, as the main job does) with the
preset (400 steps x 12 restarts, lr 1.6, keep 4 diverse candidates) once per stop setting
`K:M` (0:0 = off, today's behaviour), in this one process through `runtime.loop.search_images`
(the program is compiled once per setting; its compile time is not in the per-image time).
Per setting it prints and records: faces within eps (success rate), restarts within eps, the
steps each face ran, restart-steps per face (R x steps run; median and total), search wall time
per face (median), within-eps candidates kept (of 4), and their diversity (mean pairwise RMS
difference of the kept HR images).

The search of a restart is the same with and without the stop up to the step where its image
ends (the stop only freezes it), so a face's success is the same whenever the K-th restart
reaches eps; what the stop changes is the compute and how many restarts are within eps to keep
and map. `--simulate` also derives, from the stop-off run's per-step L2 trace, the steps each
(K, M) of a grid would run (exact for this batch shape), as a screening table.

`--demo` runs the README's main job (`python -m pulse_jax.run --output_dir=...`) twice in one
go, before (`--stop_within=0 --duplicates=1 --candidates=l2`: the preset before issue 21) and
after (the built-in preset: keep 4 diverse, stop once 4 restarts are within eps), each in a
fresh compile cache, and prints restart-steps, wall time and, per sample, restarts within eps,
the steps run, the kept candidates within eps that differ, and their diversity.

Results: experiments/results/anytime_stopping_<date>.json and .md.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from experiments import dcgan_presets  # its flags: --photos_dir, --sizes, --work_dir, --date

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
PRESET = {"steps": 400, "restarts": 12, "learning_rate": 1.6, "lr_schedule": "linear1cycledrop",
          "opt_name": "adam", "loss_str": "100*L2"}
KEEP = 4

# The photos, sizes, work and date flags are experiments/dcgan_presets.py's (imported above):
# --photos_dir, --sizes, --work_dir, --date; --measure (the faces) and --demo too.
FLAGS = flags.FLAGS
flags.DEFINE_list("stops", ["0:0", "4:0", "3:0", "4:25"], "Stop settings K:M to measure (0:0 = off).")
flags.DEFINE_boolean("simulate", True, "Screening table of a (K, M) grid from the off run's trace.")


def _stop(spec: str) -> tuple[int, int]:
  k, m = spec.split(":")
  return int(k), int(m)


def measure_faces(work: pathlib.Path) -> list[dict]:
  from pulse_jax import load_generator
  from pulse_jax.runtime import loop
  from pulse_jax.search.config import SearchConfig
  sizes = [int(s) for s in FLAGS.sizes]
  faces = dcgan_presets.prepare_faces([], sizes, work)
  model = load_generator()
  g, params = model.generator(), model.params
  rows = []
  for size in sizes:
    refs = {f["id"]: np.asarray(Image.open(work / f"crops{size}" / f"{f['id']}.png").convert(
        "RGB"), np.float32).transpose(2, 0, 1)[None] / 255.0 for f in faces}
    for spec in FLAGS.stops:
      k, m = _stop(spec)
      config = SearchConfig(**{o: PRESET[o] for o in PRESET if o != "restarts"},
                            stop_within=k, stop_extra_steps=m)
      per_face = {}
      for fid, ref in refs.items():
        r = loop.search_images(g, params, ref, config=config, restarts=PRESET["restarts"],
                               keep=KEEP, log=lambda s: None)
        sel = r.selected[0]
        per_face[fid] = {
            "within": int(r.within_eps[0].sum()), "best_l2": float(r.l2[0].min()),
            "steps_run": int(r.steps_run[0]), "restart_steps": int(r.timings["restart_steps"]),
            "row_steps": int(r.timings["row_steps"]), "search_s": float(r.timings["search_s"]),
            "kept_within": int(r.within_eps[0, sel].sum()),
            "diversity": float(r.diversity[0]),
            "first_within_step": [int(v) for v in r.first_within_step[0]],
            "l2_trace": None if k else np.asarray(r.trace["L2_raw"][:, 0]).tolist()}
        print(f"  K={k} M={m} {size}x{size} {fid:>18}: {per_face[fid]['within']:>2}/12 within, "
              f"best {per_face[fid]['best_l2']:.3e}, ran {per_face[fid]['steps_run']} steps, "
              f"{per_face[fid]['search_s']:.1f} s, kept within {per_face[fid]['kept_within']}/4,"
              f" diversity {per_face[fid]['diversity']:.4f}", flush=True)
      rows.append(_summary_row(size, k, m, per_face))
  return rows


def _summary_row(size: int, k: int, m: int, per_face: dict) -> dict:
  v = list(per_face.values())
  row = {"kind": "faces", "size": size, "stop_within": k, "stop_extra_steps": m,
         "per_face": per_face,
         "faces_within_eps": sum(f["within"] > 0 for f in v), "faces": len(v),
         "restarts_within": sum(f["within"] for f in v),
         "median_restart_steps": float(np.median([f["restart_steps"] for f in v])),
         "total_restart_steps": int(sum(f["restart_steps"] for f in v)),
         "total_row_steps": int(sum(f["row_steps"] for f in v)),
         "median_search_s": float(np.median([f["search_s"] for f in v])),
         "total_search_s": float(sum(f["search_s"] for f in v)),
         "kept_within": sum(f["kept_within"] for f in v),
         "median_diversity": float(np.nanmedian([f["diversity"] for f in v])),
         "load_avg": os.getloadavg()}
  print(f"K={k} M={m} {size}x{size}: {row['faces_within_eps']}/{row['faces']} faces within eps, "
        f"{row['restarts_within']} restarts within, median restart-steps "
        f"{row['median_restart_steps']:.0f} (total {row['total_restart_steps']}), median search "
        f"{row['median_search_s']:.1f} s, kept within {row['kept_within']}/{4 * len(v)}, median "
        f"diversity {row['median_diversity']:.4f}", flush=True)
  return row


def simulate(rows: list[dict]) -> list[dict]:
  """Steps each (K, M) would run, from the stop-off runs' traces (exact: the stop only freezes
  the rows of an ended image, and chunk ends round the batch, not the image, up)."""
  out = []
  eps = 2e-3
  for base in [r for r in rows if r["stop_within"] == 0]:
    for k in (1, 2, 3, 4, 6, 8):
      for m in (0, 25, 50, 100):
        steps, within_at_end = [], []
        for f in base["per_face"].values():
          l2 = np.asarray(f["l2_trace"], np.float64)           # [steps, R]
          first = np.where((l2 <= eps).any(0), (l2 <= eps).argmax(0) + 1, 0)
          hits = np.sort(first[first > 0])
          end = min(int(hits[k - 1]) + m, len(l2)) if len(hits) >= k else len(l2)
          steps.append(end)
          within_at_end.append(int(np.sum((first > 0) & (first <= end))))
        out.append({"kind": "simulated", "size": base["size"], "stop_within": k,
                    "stop_extra_steps": m, "median_steps": float(np.median(steps)),
                    "total_restart_steps": int(sum(steps) * 12),
                    "faces_within_eps": base["faces_within_eps"],
                    "min_within_at_end": min(within_at_end),
                    "median_within_at_end": float(np.median(within_at_end))})
  return out


def demo_per_input(out: pathlib.Path) -> dict:
  """{stem: status, restarts within eps, the report's candidates/stopping/spread blocks and
  `kept_distinct_within`: kept candidates within eps whose HR images differ pairwise} of a
  finished run in `out`."""
  summary = json.loads((out / "summary.json").read_text())
  per = {}
  for item in summary["files"]:
    rep = json.loads((out / item["stem"] / "report.json").read_text())
    hrs = [np.asarray(Image.open(out / item["stem"] / o["hr"])).tobytes()
           for o, k in zip(rep["outputs"], (rep.get("candidates") or {}).get("kept", []))
           if k.get("within_eps")]
    per[item["stem"]] = {"status": item.get("status"),
                         "within": sum(r["l2"] <= rep["eps"] for r in rep["restarts"]),
                         "kept_distinct_within": len(set(hrs)),
                         "candidates": rep.get("candidates"), "stopping": rep.get("stopping"),
                         "spread": rep.get("spread")}
  return per


def restart_steps_of(row: dict) -> int:
  """A demo row's restart-steps: the sum over its inputs' reports (`stopping.restart_steps`)."""
  return sum(v["stopping"]["restart_steps"] for v in row["per_input"].values())


def demo(work: pathlib.Path) -> list[dict]:
  rows = []
  settings = {"before": ["--stop_within=0", "--duplicates=1", "--candidates=l2"], "after": []}
  for name, extra in settings.items():
    out = work / f"demo_{name}"
    env = {**os.environ, "PULSE_JAX_COMPILE_CACHE": tempfile.mkdtemp(prefix="xla-", dir=work)}
    cmd = [sys.executable, "-m", "pulse_jax.run", f"--output_dir={out}", "--overwrite", *extra]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
      raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    per = demo_per_input(out)
    rows.append({"kind": "demo", "setting": name, "flags": extra, "wall_s": wall,
                 "restart_steps": sum(v["stopping"]["restart_steps"] for v in per.values()),
                 "search_s": summary["search_s"],
                 "compile_s": summary["compile_s"], "per_input": per,
                 "load_avg": os.getloadavg()})
    print(f"demo {name}: {wall:.0f} s wall, search {summary['search_s']:.0f} s, restart-steps "
          f"{rows[-1]['restart_steps']}: " + "; ".join(
              f"{k}: {v['within']}/12 within, {v['status']}" for k, v in per.items()), flush=True)
  return rows


def write_md(doc: dict, path: pathlib.Path) -> None:
  lines = [f"# Anytime stopping of the DCGAN preset, measured ({doc['date']})", "",
           "`python -m experiments.anytime_stopping` (see its docstring). Preset: 400 steps x 12 "
           "restarts, adam lr 1.6 linear1cycledrop, 100*L2, eps 2e-3, keep 4. Machine: "
           f"{doc.get('machine', {}).get('cpu_model')} (load average per row).", ""]
  faces = [r for r in doc["rows"] if r["kind"] == "faces"]
  if faces:
    lines += ["## Measurement faces, each searched alone", "",
              "| K:M | size | faces within eps | restarts within eps | median restart-steps "
              "per face | total restart-steps | median search s per face | total search s | "
              "within-eps kept (of 4 per face) | median diversity | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in faces:
      lines.append(
          f"| {r['stop_within']}:{r['stop_extra_steps']} | {r['size']} | "
          f"{r['faces_within_eps']}/{r['faces']} | {r['restarts_within']} | "
          f"{r['median_restart_steps']:.0f} | {r['total_restart_steps']} | "
          f"{r['median_search_s']:.1f} | {r['total_search_s']:.0f} | {r['kept_within']} | "
          f"{r['median_diversity']:.4f} | {r['load_avg'][0]:.1f} |")
    lines += ["", "Per face (K:M: restarts within eps, steps run):", ""]
    ids = list(faces[0]["per_face"])
    lines += ["| K:M | " + " | ".join(ids) + " |", "|---|" + "---|" * len(ids)]
    for r in faces:
      lines.append(f"| {r['stop_within']}:{r['stop_extra_steps']} | " + " | ".join(
          f"{r['per_face'][i]['within']}/12, {r['per_face'][i]['steps_run']}" for i in ids) + " |")
    lines.append("")
  sim = [r for r in doc["rows"] if r["kind"] == "simulated"]
  if sim:
    lines += ["## Screening grid derived from the stop-off traces", "",
              "| K:M | median steps per face | total restart-steps | fewest within eps at the end "
              "| median within eps at the end |", "|---|---|---|---|---|"]
    for r in sim:
      lines.append(f"| {r['stop_within']}:{r['stop_extra_steps']} | {r['median_steps']:.0f} | "
                   f"{r['total_restart_steps']} | {r['min_within_at_end']} | "
                   f"{r['median_within_at_end']:.0f} |")
    lines.append("")
  demos = [r for r in doc["rows"] if r["kind"] == "demo"]
  if demos:
    lines += ["## The README's main job", "", "`python -m pulse_jax.run --output_dir=... "
              "--overwrite <flags>` on the shipped samples, each in a fresh compile cache. Per "
              "input: restarts within eps, steps run, kept candidates within eps and distinct, "
              "their diversity.", "",
              "| setting | flags | wall s | search s | restart-steps | per input | load |",
              "|---|---|---|---|---|---|---|"]
    for r in demos:
      per = "; ".join(
          f"{k}: {v['within']}/12 within, {v['stopping']['steps_run']} steps, "
          f"{v.get('kept_distinct_within', '?')} distinct kept within eps, diversity "
          + (f"{v['candidates']['diversity']:.3f}"
             if (v.get("candidates") or {}).get("diversity") is not None else "-")
          for k, v in r["per_input"].items())
      steps = r["restart_steps"] if r["restart_steps"] is not None else restart_steps_of(r)
      lines.append(f"| {r['setting']} | {' '.join(r['flags']) or '(preset)'} | {r['wall_s']:.0f} "
                   f"| {r['search_s']:.0f} | {steps} | {per} | {r['load_avg'][0]:.1f} |")
    lines.append("")
  path.write_text("\n".join(lines))


def main(argv):
  del argv
  from experiments.measure import machine_info
  date = FLAGS.date or datetime.date.today().isoformat()
  RESULTS.mkdir(parents=True, exist_ok=True)
  jpath, mpath = RESULTS / f"anytime_stopping_{date}.json", RESULTS / f"anytime_stopping_{date}.md"
  doc = json.loads(jpath.read_text()) if jpath.exists() else {"rows": []}
  doc.update(date=date, machine=machine_info())
  if FLAGS.report_only:  # experiments/dcgan_presets.py's flag: rewrite the .md from the .json
    write_md(doc, mpath)
    print(mpath.read_text())
    return 0
  work = pathlib.Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="anytime-"))
  rows = []
  if FLAGS.measure:
    rows += measure_faces(work)
    if FLAGS.simulate:
      rows += simulate(rows)
  if FLAGS.demo:
    rows += demo(work)
  kinds = {r["kind"] for r in rows}
  doc["rows"] = [r for r in doc["rows"] if r["kind"] not in kinds] + rows
  jpath.write_text(json.dumps(doc, indent=1))
  write_md(doc, mpath)
  print(mpath.read_text())
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
