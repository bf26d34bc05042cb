"""Makes docs/images/run_samples.png and docs/images/run_progress.gif with the tool itself.

    python docs/make_run_images.py [--output_dir=/tmp/pulse_docs_run] [--steps=100] ...

Runs the main job (`pulse_jax.job.pipeline.run_job`) on the shipped samples with the built-in DCGAN and
the CLI defaults (plus --duplicates=3 --save_intermediate --chunk_size=20), then composes one row
per sample: input (nearest-neighbour enlarged) | the 3 best HR outputs | the LR image of the best
output (enlarged) | the 64x64 crop the input was made from (never seen by the search).
Extra --name=value options are passed to RunOptions (e.g. --steps=300).
"""
from __future__ import annotations

import json
import pathlib
import shutil
import sys

from PIL import Image, ImageDraw, ImageFont

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pulse_jax  # noqa: E402
from pulse_jax.job.pipeline import run_job  # noqa: E402
from pulse_jax.job.settings import RunOptions  # noqa: E402

CELL = 128
GAP = 4
LABEL_H = 16


def _parse(argv):
  kw = {"output_dir": "/tmp/pulse_docs_run"}
  for a in argv:
    name, _, value = a.lstrip("-").partition("=")
    kw[name] = value
  return kw


def _cast(kw):
  import dataclasses
  types = {f.name: f.default for f in dataclasses.fields(RunOptions)}
  out = {}
  for k, v in kw.items():
    d = types[k]
    out[k] = (v.lower() in ("1", "true") if isinstance(d, bool) else int(v) if isinstance(d, int)
              else float(v) if isinstance(d, float) else v)
  return out


def main(argv):
  kw = _cast(_parse(argv))
  kw = {"duplicates": 3, "save_intermediate": True, "chunk_size": 20, "overwrite": True, **kw}
  summary = run_job(RunOptions(**kw))
  out = pathlib.Path(kw["output_dir"])
  samples = pathlib.Path(pulse_jax.__file__).parent / "samples"
  cols = ["input", "HR 1", "HR 2", "HR 3", "LR of HR 1", "source crop"]
  font = ImageFont.load_default()
  rows = []
  for stem in ("astronaut_8x8", "astronaut_16x16"):
    d = out / stem
    rep = json.loads((d / "report.json").read_text())
    cells = [Image.open(d / "input.png")]
    cells += [Image.open(d / o["hr"]) for o in rep["outputs"][:3]]
    cells += [Image.open(d / rep["outputs"][0]["lr"]), Image.open(samples / "astronaut_64x64_source.png")]
    rows.append((stem, rep, cells))
  width = len(cols) * CELL + (len(cols) - 1) * GAP
  height = LABEL_H + len(rows) * (CELL + LABEL_H + GAP)
  strip = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(strip)
  for i, c in enumerate(cols):
    draw.text((i * (CELL + GAP) + 2, 2), c, fill=(0, 0, 0), font=font)
  y = LABEL_H
  for stem, rep, cells in rows:
    for i, im in enumerate(cells):
      im = im.convert("RGB")
      resample = Image.Resampling.NEAREST
      strip.paste(im.resize((CELL, CELL), resample), (i * (CELL + GAP), y))
    best = rep["best"]
    mark = "within eps" if rep["within_eps"] else "NOT within eps"
    draw.text((2, y + CELL + 2),
              f"{stem}: best L2 {best['l2']:.2e} ({mark} {rep['eps']:g}), "
              f"{rep['restarts_within_eps']}/{len(rep['restarts'])} restarts within eps",
              fill=(0, 0, 0), font=font)
    y += CELL + LABEL_H + GAP
  images = ROOT / "docs" / "images"
  images.mkdir(parents=True, exist_ok=True)
  strip.save(images / "run_samples.png", optimize=True)
  shutil.copy(out / "astronaut_16x16" / "progress.gif", images / "run_progress.gif")
  print(json.dumps({k: summary[k] for k in ("inputs", "within_eps", "success_rate",
                                            "seconds_per_image", "restart_steps_per_s")}))
  print(f"wrote {images / 'run_samples.png'} and {images / 'run_progress.gif'}")


if __name__ == "__main__":
  main(sys.argv[1:])
