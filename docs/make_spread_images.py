"""Makes docs/images/spread_map.png (docs/responsible-use.md) with the tool itself.

    python docs/make_spread_images.py [--output_dir=/tmp/pulse_docs_spread] [--steps=400] ...

Runs the main job (`pulse_jax.job.pipeline.run_job`) on the shipped samples with the built-in
DCGAN and its preset as the README's command does (keep 4 diverse candidates, stop once 4
restarts are within eps), then composes one row per sample: the input (nearest-neighbour
enlarged) | the kept candidates | the input's spread.png (the per-pixel spread of every
within-eps restart the search ran) | and, under the rows, the heat map's fixed scale. Extra
--name=value options are passed to RunOptions (e.g. --stop_within=0 to run every restart to
the end).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pulse_jax.io.images import SPREAD_VMAX, heat_map  # noqa: E402
from pulse_jax.job.pipeline import run_job  # noqa: E402
from pulse_jax.job.settings import RunOptions  # noqa: E402

CELL = 128
GAP = 4
LABEL_H = 16
TARGET = ROOT / "docs" / "images" / "spread_map.png"


def _options(argv) -> dict:
  defaults = {f.name: f.default for f in dataclasses.fields(RunOptions)}
  kw = {"output_dir": "/tmp/pulse_docs_spread", "overwrite": True}
  for a in argv:
    name, _, value = a.lstrip("-").partition("=")
    d = defaults[name]
    kw[name] = (value.lower() in ("1", "true") if isinstance(d, bool) else int(value)
                if isinstance(d, int) else float(value) if isinstance(d, float) else value)
  return kw


def main(argv) -> None:
  kw = _options(argv)
  summary = run_job(RunOptions(**kw))
  out = pathlib.Path(kw["output_dir"])
  font = ImageFont.load_default()
  stems = [f["stem"] for f in summary["files"] if f["status"] in ("within_eps", "not_within_eps")]
  reports = {stem: json.loads((out / stem / "report.json").read_text()) for stem in stems}
  kept = max(len(rep["outputs"]) for rep in reports.values())
  cols = ["input", *(f"kept {i + 1}" for i in range(kept)), "spread"]
  width = len(cols) * CELL + (len(cols) - 1) * GAP
  height = LABEL_H + len(stems) * (CELL + 2 * LABEL_H + GAP) + 2 * LABEL_H + 12
  sheet = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(sheet)
  for i, c in enumerate(cols):
    draw.text((i * (CELL + GAP) + 2, 2), c, fill=(0, 0, 0), font=font)
  y = LABEL_H
  for stem in stems:
    d = out / stem
    rep = reports[stem]
    cells = [Image.open(d / "input.png")] + [Image.open(d / o["hr"]) for o in rep["outputs"]]
    spread = rep["spread"]
    for i, im in enumerate(cells):
      sheet.paste(im.convert("RGB").resize((CELL, CELL), Image.Resampling.NEAREST),
                  (i * (CELL + GAP), y))
    if spread["file"]:  # always in the last column
      sheet.paste(Image.open(d / spread["file"]).convert("RGB").resize(
          (CELL, CELL), Image.Resampling.NEAREST), ((len(cols) - 1) * (CELL + GAP), y))
    div = rep["candidates"]["diversity"]
    stop = rep.get("stopping") or {}
    text = f"{stem}: "
    if stop.get("steps_run") is not None:
      text += f"{stop['steps_run']} of {stop['steps']} steps; "
    text += (f"{rep['restarts_within_eps']}/{len(rep['restarts'])} restarts within eps; "
             f"diversity {div:.3f}; " if div is not None else "")
    text += (f"spread over {spread['restarts']} within-eps restarts, mean {spread['mean']:.3f}"
             if spread["file"] else "no map: fewer than 2 within eps")
    draw.text((2, y + CELL + 2), text, fill=(0, 0, 0), font=font)
    y += CELL + 2 * LABEL_H + GAP
  bar = heat_map(np.tile(np.linspace(0.0, SPREAD_VMAX, width - 80), (10, 1)), SPREAD_VMAX)
  sheet.paste(Image.fromarray(bar), (40, y))
  draw.text((2, y), "0", fill=(0, 0, 0), font=font)
  draw.text((width - 36, y), f"{SPREAD_VMAX:g}+", fill=(0, 0, 0), font=font)
  draw.text((40, y + 12), "per-pixel standard deviation of the within-eps restarts' HR images "
            "([0, 1] units); bright = not fixed by the input", fill=(0, 0, 0), font=font)
  TARGET.parent.mkdir(parents=True, exist_ok=True)
  sheet.save(TARGET)
  print(TARGET)


if __name__ == "__main__":
  main(sys.argv[1:])
