"""Plain PULSE against ILO on real faces with the built-in DCGAN: one harness run per factor.

    python -m experiments.ilo_faces --photos_dir=PHOTOS [--factors=4,8] [--work_dir=DIR]
    python -m experiments.ilo_faces ... --extra=--steps=20,--restarts=2   # a quick try
    python -m experiments.ilo_faces ... --factors=4 --tag=radius \
        --configs='plain:noilo,ilo:ilo,ilo_r05:ilo;ilo_radius=0.05'       # the l1 radius

Ground truth: the eight measurement faces of experiments/dcgan_presets.py (64x64 crops made
exactly as there, from the photos its docstring names; none is a shipped sample) and the two
shipped 64x64 sources (`pulse_jax/samples/astronaut_64x64_source.png`, `hopper_64x64_source.png`,
as `astronaut.png`, `hopper.png`). Per factor F (16x16 inputs at F=4, 8x8 at F=8) it runs

    python -m pulse_jax.evaluate --hr=WORK/hr --factor=F --output_dir=WORK/fF \\
        --configs='plain:noilo,ilo:ilo' [--extra flags]

(the built-in preset otherwise: 400 latent steps x 12 restarts, keep 4, stop at 4 within eps;
ILO: the DCGAN's default cut points b4,b8, 100 steps each, radius 0.1), copies its
evaluation.json and .md to experiments/results/ilo_faces_f<F>_<date>.json/.md and prints the
table and, per face, within eps, PSNR and SSIM of both configurations. The evaluation resumes
(a folder with complete outputs of the same settings is kept), so a second call with the same
--work_dir only rewrites the results. The picture sheet: `python docs/make_ilo_sheet.py
--eval_dir=WORK/f4`.
"""
from __future__ import annotations

import datetime
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

from experiments import dcgan_presets  # its flags: --photos_dir, --work_dir, --date

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
SAMPLES = ROOT / "pulse_jax" / "samples"
SHIPPED = {"astronaut": SAMPLES / "astronaut_64x64_source.png",
           "hopper": SAMPLES / "hopper_64x64_source.png"}
CONFIGS = "plain:noilo,ilo:ilo"

flags.DEFINE_list("factors", ["4", "8"], "Down-sampling factors (64 / input size).")
flags.DEFINE_list("extra", [], "More pulse_jax.evaluate flags, e.g. --steps=20.")
flags.DEFINE_string("configs", CONFIGS, "pulse_jax.evaluate --configs (more configurations "
                    "join the same output folders; finished ones are kept, not searched again).")
flags.DEFINE_string("tag", "", "Results as ilo_faces_<tag>_f<F>_<date> (default: no tag).")
FLAGS = flags.FLAGS


def prepare_hr(work: pathlib.Path) -> pathlib.Path:
  """work/hr/: the eight measurement faces' 64x64 crops and the two shipped sources."""
  dcgan_presets.prepare_faces([], [], work)
  for stem, src in SHIPPED.items():
    shutil.copy(src, work / "hr" / f"{stem}.png")
  return work / "hr"


def per_face(evaluation: dict) -> list[str]:
  """One line per face: each configuration's within eps, PSNR, SSIM and restart-steps."""
  lines = []
  for e in evaluation["images"]:
    cells = []
    for name in evaluation["methods"]:
      if name in ("nearest", "bicubic"):
        continue
      m = e["methods"].get(name) or {}
      psnr, ssim = m.get("psnr"), m.get("ssim")
      cells.append(f"{name} {'within' if m.get('within_eps') else 'NOT within'} eps, PSNR "
                   f"{psnr if psnr is None else round(psnr, 2)}, SSIM "
                   f"{ssim if ssim is None else round(ssim, 3)}, restart-steps "
                   f"{m.get('restart_steps')}")
    lines.append(f"{e['stem']:>20}: " + "; ".join(cells))
  return lines


def main(argv) -> int:
  del argv
  date = FLAGS.date or datetime.date.today().isoformat()
  work = pathlib.Path(FLAGS.work_dir or tempfile.mkdtemp(prefix="ilo_faces-"))
  hr = prepare_hr(work)
  RESULTS.mkdir(parents=True, exist_ok=True)
  for factor in (int(f) for f in FLAGS.factors):
    out = work / f"f{factor}"
    cmd = [sys.executable, "-m", "pulse_jax.evaluate", f"--hr={hr}", f"--factor={factor}",
           f"--output_dir={out}", f"--configs={FLAGS.configs}", *FLAGS.extra]
    print(" ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=ROOT)
    if p.returncode != 0:
      print(f"pulse_jax.evaluate exited {p.returncode}", file=sys.stderr)
      return p.returncode
    stem = RESULTS / f"ilo_faces_{FLAGS.tag + '_' if FLAGS.tag else ''}f{factor}_{date}"
    shutil.copy(out / "evaluation.json", stem.with_suffix(".json"))
    shutil.copy(out / "evaluation.md", stem.with_suffix(".md"))
    evaluation = json.loads((out / "evaluation.json").read_text())
    print((out / "evaluation.md").read_text())
    print("\n".join(per_face(evaluation)))
    print(f"results: {stem}.json, {stem}.md; outputs and page: {out}/index.html\n", flush=True)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
