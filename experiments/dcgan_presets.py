"""Choosing the search preset of the built-in 64x64 DCGAN by measurement on real face crops.

    python -m experiments.dcgan_presets --photos_dir=PHOTOS [--presets=a,b,...] [--sizes=8,16]
    python -m experiments.dcgan_presets --nomeasure --demo --presets=s400x12_lr1.6 \\
        --demo_inputs=pulse_jax/samples/astronaut_8x8.png,pulse_jax/samples/hopper_4x4.png
    python -m experiments.dcgan_presets --report_only                   # rewrite the .md

What is measured. For each preset (search options) and input size, every measurement face (a
real photo, NOT one of the shipped samples) is cropped exactly as
`pulse_jax/samples/make_samples.py` crops the astronaut (a square box from dlib's 68 landmarks:
eye centres at 40% of the height, mouth-corner midpoint at 75%, horizontally centred on the
eyes' and mouth's midpoint; Pillow LANCZOS to 64x64; the project's bicubic `downsample` to the
input size; uint8 PNG). The faces of one size are then searched by
`python -m pulse_jax.run --input=<folder> --batch_size=<faces> <preset flags>` (one command
per --group_size faces). A restart's start depends only on the seed, the input's pixels and
the restart index, but its trajectory also depends on float rounding, which differs between
batch shapes (and the search amplifies it): a face's restarts here are statistically, not
bitwise, those of a run of that face alone. The demo (`--demo`) runs the inputs exactly as the
README command does. Per face the report.json gives every restart's L2; the table lists per
face the restarts within eps (L2 <= eps, eps never raised) and the best L2, and per run the
command's wall time and restart-steps/s.

`--demo` also times the README command with the preset's flags on `--demo_inputs` (default:
the shipped samples; any list of PNG files, copied into one folder) `--demo_repeats` times,
each in a fresh compilation cache (so compile time counts, as on a first run).

Photos (see docs/presets.md for provenance and licences; nothing here is downloaded by the
script itself):
  PHOTOS/dlib/        dlib's example photos, examples/faces/*.jpg of github.com/davisking/dlib
                      (`git clone --depth 1 https://github.com/davisking/dlib` and copy
                      dlib/examples/faces/*.jpg there)
  PHOTOS/face_recognition/  tests/test_images/*.jpg of the PyPI sdist face_recognition==1.3.0
                      (`pip download --no-deps --no-binary :all: face_recognition==1.3.0`,
                      untar, copy face_recognition-1.3.0/tests/test_images/*.jpg there)
Landmarks need dlib and its 68-point model (`pip install 'pulse-jax[align]'`).

Results: experiments/results/dcgan_presets_<date>.json (every measurement, merged over runs of
the same day: a (preset, size, faces) row is replaced by a new measurement of it) and .md.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
HR_SIZE = 64
EPS = 2e-3  # the reference's eps: never raised here

# The measurement faces: (id, photo folder, file, approximate face centre (x, y) in the photo:
# the detection nearest to it is used). None of them is a shipped sample.
FACES = (
    ("voc_2008_001009_a", "dlib", "2008_001009.jpg", (170, 247)),
    ("voc_2008_001322_a", "dlib", "2008_001322.jpg", (261, 240)),
    ("voc_2008_001322_b", "dlib", "2008_001322.jpg", (140, 192)),
    ("voc_2008_001322_c", "dlib", "2008_001322.jpg", (396, 196)),
    ("voc_2009_004587_a", "dlib", "2009_004587.jpg", (191, 80)),
    ("bald_guys_i", "dlib", "bald_guys.jpg", (650, 504)),
    ("fr_biden", "face_recognition", "biden.jpg", (583, 375)),
    ("fr_obama", "face_recognition", "obama.jpg", (495, 245)),
)

# Candidate presets: pulse_jax.run flags. loss_str 100*L2 is what the run searches with for
# the DCGAN anyway (GEOCROSS needs W+ latents and is dropped, with a note).
BASE = {"loss_str": "100*L2", "opt_name": "adam", "learning_rate": 0.4,
        "lr_schedule": "linear1cycledrop", "steps": 100, "restarts": 16}
PRESETS = {
    "ref100x16": {},                                   # today's default (the reference's)
    "s300x16": {"steps": 300},
    "s500x16": {"steps": 500},
    "s250x32": {"steps": 250, "restarts": 32},
    "s1000x8": {"steps": 1000, "restarts": 8},
    "s300x8": {"steps": 300, "restarts": 8},
    "s300x8_lr0.1": {"steps": 300, "restarts": 8, "learning_rate": 0.1},
    "s300x8_lr0.2": {"steps": 300, "restarts": 8, "learning_rate": 0.2},
    "s300x8_lr0.8": {"steps": 300, "restarts": 8, "learning_rate": 0.8},
    "s300x8_fixed0.1": {"steps": 300, "restarts": 8, "learning_rate": 0.1,
                        "lr_schedule": "fixed"},
    "s300x8_1cycle": {"steps": 300, "restarts": 8, "lr_schedule": "linear1cycle"},
    "s300x8_adamax": {"steps": 300, "restarts": 8, "opt_name": "adamax"},
    "s300x8_sgdm": {"steps": 300, "restarts": 8, "opt_name": "sgdm", "learning_rate": 4.0},
    "s300x8_lr1.6": {"steps": 300, "restarts": 8, "learning_rate": 1.6},
    "s300x8_lr3.2": {"steps": 300, "restarts": 8, "learning_rate": 3.2},
    "s400x8_lr1.6": {"steps": 400, "restarts": 8, "learning_rate": 1.6},
    "s600x8_lr0.8": {"steps": 600, "restarts": 8, "learning_rate": 0.8},
    "s300x16_lr1.6": {"steps": 300, "restarts": 16, "learning_rate": 1.6},
    "s400x16_lr1.6": {"steps": 400, "restarts": 16, "learning_rate": 1.6},
    "s400x12_lr1.6": {"steps": 400, "restarts": 12, "learning_rate": 1.6},  # the chosen preset
}
CHOSEN = "s400x12_lr1.6"  # docs/presets.md

FLAGS = flags.FLAGS
flags.DEFINE_string("photos_dir", os.path.expanduser("~/.cache/pulse_jax/face_photos"),
                    "Folder with dlib/ and face_recognition/ sub-folders of photos (see the "
                    "module docstring).")
flags.DEFINE_list("presets", ["ref100x16", CHOSEN],
                  f"Presets to measure, of {sorted(PRESETS)}, or 'name:key=value;key=value' "
                  "with pulse_jax.run option names (e.g. 'mine:steps=400;learning_rate=0.2').")
flags.DEFINE_list("sizes", ["8"], "Input sizes (dividing 64).")
flags.DEFINE_list("faces", [], "Face ids to measure (default: all FACES).")
flags.DEFINE_integer("group_size", 4, "Faces per pulse_jax.run command (0: all in one); "
                     "changes float rounding only (results statistically the same).")
flags.DEFINE_boolean("demo", False, "Also time the demo command with each preset.")
flags.DEFINE_list("demo_inputs", [], "PNG files of the demo (default: the shipped samples).")
flags.DEFINE_integer("demo_repeats", 2, "Demo runs per preset (each in a fresh compile cache).")
flags.DEFINE_boolean("measure", True, "Measure the faces (--nomeasure: only --demo).")
flags.DEFINE_integer("seed", 0, "pulse_jax.run --seed.")
flags.DEFINE_string("work_dir", None, "Where crops and run outputs go (default: a temp dir).")
flags.DEFINE_string("date", None, "Result file date (default: today).")
flags.DEFINE_boolean("report_only", False, "Only rewrite the .md from the day's .json.")


# ----------------------------------------------------------------------------- crops

def face_box(landmarks: np.ndarray) -> tuple[float, float, float]:
  """(centre x, top, side) of make_samples' box: eyes at 40% of the height, mouth at 75%."""
  eyes = (landmarks[36:42].mean(0) + landmarks[42:48].mean(0)) / 2
  mouth = (landmarks[48] + landmarks[54]) / 2
  side = (mouth[1] - eyes[1]) / 0.35
  return float((eyes[0] + mouth[0]) / 2), float(eyes[1] - 0.4 * side), float(side)


def crop_box(cx: float, top: float, side: float) -> tuple[int, int, int, int]:
  s = int(round(side))
  left, upper = int(round(cx - side / 2)), int(round(top))
  return left, upper, left + s, upper + s


def make_crops(photo: Image.Image, box, sizes) -> dict:
  """{'hr': 64x64 LANCZOS crop, size: uint8 LR image} exactly as make_samples.py does."""
  from pulse_jax.forward.bicubic import downsample
  from pulse_jax.io.images import to_uint8
  hr = photo.crop(box).resize((HR_SIZE, HR_SIZE), Image.LANCZOS)
  out = {"hr": hr}
  x = np.asarray(hr, np.float32).transpose(2, 0, 1)[None] / 255.0
  for size in sizes:
    lr = np.asarray(downsample(x, HR_SIZE // size))[0].transpose(1, 2, 0)
    out[size] = Image.fromarray(to_uint8(lr, dtype=np.float64), "RGB")
  return out


def prepare_faces(face_ids, sizes, work: pathlib.Path) -> list[dict]:
  """Detects each face, writes its crops to work/crops<size>/<id>.png; returns their records."""
  from pulse_jax.io.face_landmarks import FaceLandmarker
  landmarker = FaceLandmarker(None)
  photos = pathlib.Path(FLAGS.photos_dir)
  records, cache = [], {}
  for size in sizes:  # only the faces asked for: the folder is one run's --input
    d = work / f"crops{size}"
    if d.exists():
      shutil.rmtree(d)
    d.mkdir(parents=True)
  for fid, folder, name, near in FACES:
    if face_ids and fid not in face_ids:
      continue
    path = photos / folder / name
    if not path.is_file():
      raise SystemExit(f"missing photo {path}: see `python -m experiments.dcgan_presets --help`"
                       " (module docstring) for where the measurement photos come from")
    if path not in cache:
      photo = Image.open(path).convert("RGB")
      cache[path] = (photo, landmarker.detect(photo, try_rotations=False))
    photo, dets = cache[path]
    boxes = [face_box(d.landmarks) for d in dets]
    k = int(np.argmin([np.hypot(cx - near[0], top + side / 2 - near[1])
                       for cx, top, side in boxes]))
    box = crop_box(*boxes[k])
    crops = make_crops(photo, box, sizes)
    for size in sizes:
      crops[size].save(work / f"crops{size}" / f"{fid}.png")
    (work / "hr").mkdir(parents=True, exist_ok=True)
    crops["hr"].save(work / "hr" / f"{fid}.png")
    records.append({"id": fid, "photo": f"{folder}/{name}", "box": list(box),
                    "sha256": _sha256(path)})
  return records


def _sha256(path) -> str:
  import hashlib
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- runs

def parse_preset(spec: str) -> tuple[str, dict]:
  if ":" not in spec:
    if spec not in PRESETS:
      raise SystemExit(f"unknown preset {spec!r}; known: {sorted(PRESETS)}")
    return spec, {**BASE, **PRESETS[spec]}
  name, body = spec.split(":", 1)
  values = dict(BASE)
  for kv in filter(None, body.split(";")):
    k, v = kv.split("=", 1)
    values[k] = type(BASE[k])(v) if k in BASE else v
  return name, values


def preset_flags(values: dict) -> list[str]:
  return [f"--{k}={v}" for k, v in values.items()]


LAST_CPU_S = [0.0]  # CPU seconds (user + system) of the last run_pulse command


def _children_cpu_s() -> float:
  import resource
  r = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime


def run_pulse(input_dir: pathlib.Path, out_dir: pathlib.Path, values: dict, extra=(),
              env=None) -> tuple[dict, float]:
  """`python -m pulse_jax.run` on a folder; (summary.json, wall seconds of the command)."""
  cmd = [sys.executable, "-m", "pulse_jax.run", f"--input={input_dir}",
         f"--output_dir={out_dir}", "--overwrite", "--quiet", f"--seed={FLAGS.seed}",
         *preset_flags(values), *extra]
  t, cpu = time.perf_counter(), _children_cpu_s()
  p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t
  LAST_CPU_S[0] = _children_cpu_s() - cpu
  if p.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
  with open(out_dir / "summary.json") as f:
    return json.load(f), wall


def face_results(out_dir: pathlib.Path, summary: dict, restarts: int) -> dict:
  """Per input stem: restarts within eps, best L2, and the same for the first R/2 restarts."""
  out = {}
  for item in summary["files"]:
    with open(out_dir / item["stem"] / "report.json") as f:
      report = json.load(f)
    l2 = np.array([r["l2"] for r in sorted(report["restarts"], key=lambda r: r["restart"])])
    eps = report["eps"]
    half = max(restarts // 2, 1)
    out[item["stem"]] = {
        "within": int(np.sum(l2 <= eps)), "restarts": int(l2.size),
        "best_l2": float(np.min(l2)), "median_l2": float(np.median(l2)),
        "within_first_half": int(np.sum(l2[:half] <= eps)),
        "best_l2_first_half": float(np.min(l2[:half])), "l2": [float(v) for v in l2]}
  return out


def measure(name: str, values: dict, size: int, faces: list[dict], work: pathlib.Path) -> dict:
  """All faces of one size under one preset: one pulse_jax.run per group of --group_size."""
  n = FLAGS.group_size or len(faces)
  res, wall, compile_s, search_s, steps_done = {}, 0.0, 0.0, 0.0, 0
  for g in range(0, len(faces), n):
    group = faces[g:g + n]
    src = work / f"crops{size}"
    if len(group) < len(faces):
      src = work / f"group{size}"
      if src.exists():
        shutil.rmtree(src)
      src.mkdir(parents=True)
      for f in group:
        shutil.copy(work / f"crops{size}" / f"{f['id']}.png", src / f"{f['id']}.png")
    out_dir = work / "runs" / f"{name}_{size}_{g}"
    summary, w = run_pulse(src, out_dir, values, extra=[f"--batch_size={len(group)}"])
    res.update(face_results(out_dir, summary, values["restarts"]))
    wall += w
    compile_s += summary["compile_s"]
    search_s += summary["search_s"]
    steps_done += len(group) * values["restarts"] * values["steps"]
  row = {"kind": "faces", "preset": name, "values": values, "size": size,
         "faces": [f["id"] for f in faces], "per_face": res,
         "faces_within_eps": sum(r["within"] > 0 for r in res.values()),
         "faces_within_eps_first_half": sum(r["within_first_half"] > 0 for r in res.values()),
         "restarts_within": sum(r["within"] for r in res.values()),
         "restarts_total": sum(r["restarts"] for r in res.values()),
         "worst_best_l2": max(r["best_l2"] for r in res.values()),
         "wall_s": wall, "compile_s": compile_s, "search_s": search_s,
         "restart_steps_per_s": steps_done / search_s if search_s > 0 else 0.0,
         "seconds_per_face": search_s / len(faces),
         "load_avg": os.getloadavg()}
  print(f"{name:>18} {size:>2}x{size:<2} faces within eps {row['faces_within_eps']}/{len(faces)}"
        f"  restarts {row['restarts_within']}/{row['restarts_total']}  worst best L2 "
        f"{row['worst_best_l2']:.3e}  {wall:.0f} s ({row['restart_steps_per_s']:.0f} "
        "restart-steps/s)", flush=True)
  for fid, r in res.items():
    print(f"{'':>24}{fid:>20}: {r['within']:>2}/{r['restarts']} within, best L2 "
          f"{r['best_l2']:.3e}", flush=True)
  return row


def demo(name: str, values: dict, inputs: list[pathlib.Path], work: pathlib.Path) -> list[dict]:
  """The demo command on `inputs` (one folder), each repeat in a fresh compile cache."""
  folder = work / "demo_inputs"
  if folder.exists():
    shutil.rmtree(folder)
  folder.mkdir(parents=True)
  for p in inputs:
    shutil.copy(p, folder / p.name)
  rows = []
  for rep in range(FLAGS.demo_repeats):
    cache = tempfile.mkdtemp(prefix="xla-", dir=work)
    env = {**os.environ, "PULSE_JAX_COMPILE_CACHE": cache}
    out_dir = work / "runs" / f"demo_{name}_{rep}"
    summary, wall = run_pulse(folder, out_dir, values, env=env)
    res = face_results(out_dir, summary, values["restarts"])
    row = {"kind": "demo", "preset": name, "values": values, "repeat": rep,
           "inputs": [p.name for p in inputs], "per_input": res,
           "all_within_eps": summary["within_eps"] == summary["searched"] == len(inputs),
           "within_eps": summary["within_eps"], "wall_s": wall, "cpu_s": LAST_CPU_S[0],
           "run_wall_s": summary["wall_s"], "compile_s": summary["compile_s"],
           "search_s": summary["search_s"], "load_avg": os.getloadavg()}
    print(f"demo {name} #{rep}: {summary['within_eps']}/{len(inputs)} within eps, command "
          f"{wall:.0f} s, {LAST_CPU_S[0]:.0f} CPU-s (compile {summary['compile_s']:.1f} s, search "
          f"{summary['search_s']:.0f} s): " + ", ".join(
              f"{k} {r['within']}/{r['restarts']} best {r['best_l2']:.3e}"
              for k, r in res.items()), flush=True)
    rows.append(row)
  return rows


# ----------------------------------------------------------------------------- results

def machine() -> dict:
  from experiments.measure import machine_info, versions
  return {"machine": machine_info(), "versions": versions()}


def load_results(path: pathlib.Path) -> dict:
  if path.exists():
    with open(path) as f:
      return json.load(f)
  return {"rows": []}


def merge(doc: dict, rows: list[dict]) -> None:
  def key(r):
    return (r["kind"], r["preset"], r.get("size"), tuple(r.get("faces", r.get("inputs", []))),
            r.get("repeat"))
  new = {key(r) for r in rows}
  doc["rows"] = [r for r in doc["rows"] if key(r) not in new] + rows


def fmt_values(v: dict) -> str:
  return (f"{v['steps']} steps x {v['restarts']} restarts, {v['opt_name']} lr "
          f"{v['learning_rate']:g} {v['lr_schedule']}, {v['loss_str']}")


def write_md(doc: dict, path: pathlib.Path) -> None:
  rows = doc["rows"]
  lines = [f"# DCGAN search presets, measured ({doc.get('date')})", "",
           "`python -m experiments.dcgan_presets` (see its docstring and docs/presets.md). "
           f"eps = {EPS:g} (never raised), seed {FLAGS.seed}. Machine: "
           f"{doc.get('machine', {}).get('cpu_model')}, "
           f"{doc.get('machine', {}).get('cpu_affinity')} cores (shared: "
           "load average per row).", ""]
  faces = [r for r in rows if r["kind"] == "faces"]
  for size in sorted({r["size"] for r in faces}):
    sub = [r for r in faces if r["size"] == size]
    ids = sorted({f for r in sub for f in r["faces"]})
    lines += [f"## {size}x{size} measurement faces (none is a shipped sample)", "",
              "Per face: restarts within eps / restarts (best L2). Faces within eps: any "
              "restart within eps; '(first half)' counts only restarts 0..R/2-1: they start "
              "where an R/2-restart run starts, but their trajectories are not bitwise those "
              "of such a run (another batch shape rounds differently, and the search "
              "amplifies it), so it estimates R/2 restarts statistically.", "",
              "| preset | options | faces within eps | (first half) | worst face's best L2 "
              "| restarts within eps | s per face (search) | wall s (all faces) "
              "| restart-steps/s | load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sub:
      lines.append(
          f"| {r['preset']} | {fmt_values(r['values'])} | {r['faces_within_eps']}/"
          f"{len(r['faces'])} | {r['faces_within_eps_first_half']}/{len(r['faces'])} | "
          f"{r['worst_best_l2']:.2e} | {r['restarts_within']}/{r['restarts_total']} | "
          f"{r['seconds_per_face']:.0f} | {r['wall_s']:.0f} | "
          f"{r['restart_steps_per_s']:.0f} | {r['load_avg'][0]:.1f} |")
    lines += ["", "| preset | " + " | ".join(ids) + " |", "|---|" + "---|" * len(ids)]
    for r in sub:
      cells = []
      for fid in ids:
        pf = r["per_face"].get(fid)
        cells.append("-" if pf is None else f"{pf['within']}/{pf['restarts']} "
                     f"({pf['best_l2']:.2e})")
      lines.append(f"| {r['preset']} | " + " | ".join(cells) + " |")
    lines.append("")
  demos = [r for r in rows if r["kind"] == "demo"]
  if demos:
    lines += ["## The demo command (inputs one after the other, fresh compile cache)", "",
              "| preset | options | inputs | all within eps | per input: within / restarts "
              "(best L2) | command wall s | CPU-s | compile s | search s | load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in demos:
      per = "; ".join(f"{k}: {v['within']}/{v['restarts']} ({v['best_l2']:.2e})"
                      for k, v in r["per_input"].items())
      cpu = f"{r['cpu_s']:.0f}" if "cpu_s" in r else "-"
      lines.append(f"| {r['preset']} | {fmt_values(r['values'])} | {', '.join(r['inputs'])} | "
                   f"{'yes' if r['all_within_eps'] else 'NO'} | {per} | {r['wall_s']:.0f} | "
                   f"{cpu} | {r['compile_s']:.1f} | {r['search_s']:.0f} | "
                   f"{r['load_avg'][0]:.1f} |")
    lines.append("")
  if doc.get("faces"):
    lines += ["## Measurement faces", "", "| id | photo | crop box (l, u, r, b) |",
              "|---|---|---|"]
    for f in doc["faces"]:
      lines.append(f"| {f['id']} | {f['photo']} | {tuple(f['box'])} |")
    lines.append("")
  path.write_text("\n".join(lines))


def main(argv):
  del argv
  import logging
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  date = FLAGS.date or datetime.date.today().isoformat()
  RESULTS.mkdir(parents=True, exist_ok=True)
  jpath, mpath = RESULTS / f"dcgan_presets_{date}.json", RESULTS / f"dcgan_presets_{date}.md"
  doc = load_results(jpath)
  doc["date"] = date
  if FLAGS.report_only:
    write_md(doc, mpath)
    print(mpath.read_text())
    return 0
  work = pathlib.Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="dcgan_presets-"))
  sizes = [int(s) for s in FLAGS.sizes]
  presets = [parse_preset(s) for s in FLAGS.presets]
  rows = []
  if FLAGS.measure:
    faces = prepare_faces(FLAGS.faces, sizes, work)
    known = {f["id"]: f for f in doc.get("faces", [])}
    known.update({f["id"]: f for f in faces})
    doc["faces"] = sorted(known.values(), key=lambda f: f["id"])
    for name, values in presets:
      for size in sizes:
        row = measure(name, values, size, faces, work)
        rows.append(row)
        merge(doc, [row])
        doc.update(machine())
        jpath.write_text(json.dumps(doc, indent=1))
        write_md(doc, mpath)
  if FLAGS.demo:
    inputs = [pathlib.Path(p) for p in FLAGS.demo_inputs] or [
        ROOT / "pulse_jax" / "samples" / n for n in ("astronaut_8x8.png", "astronaut_16x16.png")]
    for name, values in presets:
      drows = demo(name, values, inputs, work)
      merge(doc, drows)
      doc.update(machine())
      jpath.write_text(json.dumps(doc, indent=1))
      write_md(doc, mpath)
  print(f"results: {jpath}, {mpath}\n")
  print(mpath.read_text())
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
