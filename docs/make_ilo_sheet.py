"""The picture sheet of docs/quality.md's "Plain PULSE vs ILO on real faces".

    python docs/make_ilo_sheet.py --eval_dir=/tmp/eval/f4 --output=docs/images/ilo_faces_16.png

Reads a `python -m pulse_jax.evaluate` output folder (EVAL_DIR/evaluation.json and the files it
names: gt/<stem>.png, lr/<stem>.png and each configuration's best candidate, its hr_0) and
writes one PNG: a row per ground-truth image (in evaluation.json's order), columns ground
truth | LR input (nearest-upscaled to the generator's size) | each of --configs' best image,
every tile enlarged --scale times with nearest neighbour, a header row of column names and the
image's stem on the left. Nothing is recomputed: the pixels are the harness's files.
Needs only Pillow (no new dependency).
"""
from __future__ import annotations

import json
import pathlib

from absl import app, flags
from PIL import Image, ImageDraw, ImageFont

flags.DEFINE_string("eval_dir", None, "The harness's OUTPUT_DIR (holds evaluation.json).")
flags.DEFINE_string("output", "docs/images/ilo_faces_16.png", "The sheet to write (PNG).")
flags.DEFINE_list("configs", ["plain", "ilo"], "Configurations (methods of evaluation.json) "
                  "whose best image is a column, in order.")
flags.DEFINE_integer("scale", 2, "Nearest-neighbour enlargement of every tile.", lower_bound=1)
FLAGS = flags.FLAGS

GAP = 4            # px between tiles
HEADER = 16        # px of the header row
LABEL_WIDTH = 124  # px of the stem column
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


def tile(path: pathlib.Path, side: int) -> Image.Image:
  """The image at `path` as RGB, resized with nearest neighbour to side x side."""
  with Image.open(path) as im:
    return im.convert("RGB").resize((side, side), Image.NEAREST)


def sheet(eval_dir: pathlib.Path, configs: list[str], scale: int) -> Image.Image:
  """The sheet of `eval_dir` (rows: images; columns: gt, LR, each config's best)."""
  evaluation = json.loads((eval_dir / "evaluation.json").read_text())
  missing = [c for c in configs if c not in evaluation["methods"]]
  if missing:
    raise SystemExit(f"{eval_dir}/evaluation.json has no method {missing}; it has "
                     f"{evaluation['methods']}")
  side = int(evaluation["generator"]["resolution"]) * scale
  lr_size = int(evaluation["lr_size"])
  titles = ["ground truth", f"{lr_size}x{lr_size} input", *(f"{c} best" for c in configs)]
  rows = evaluation["images"]
  width = LABEL_WIDTH + len(titles) * (side + GAP)
  height = HEADER + len(rows) * (side + GAP)
  out = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(out)
  font = ImageFont.load_default()
  for j, title in enumerate(titles):
    draw.text((LABEL_WIDTH + j * (side + GAP), 2), title, fill=INK, font=font)
  for i, entry in enumerate(rows):
    y = HEADER + i * (side + GAP)
    draw.text((2, y + side // 2 - 6), entry["stem"][:20], fill=INK, font=font)
    paths = [entry["gt"], entry["lr"]]
    for c in configs:
      image = entry["methods"][c].get("image")
      paths.append(image)
    for j, rel in enumerate(paths):
      x = LABEL_WIDTH + j * (side + GAP)
      if rel is None:  # a failed search: an empty tile, marked
        draw.rectangle((x, y, x + side - 1, y + side - 1), outline=INK)
        draw.text((x + 4, y + side // 2 - 6), "failed", fill=INK, font=font)
        continue
      out.paste(tile(eval_dir / rel, side), (x, y))
  return out


def main(argv) -> None:
  del argv
  if not FLAGS.eval_dir:
    raise SystemExit("--eval_dir is required")
  image = sheet(pathlib.Path(FLAGS.eval_dir), FLAGS.configs, FLAGS.scale)
  pathlib.Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
  image.save(FLAGS.output, optimize=True)
  print(f"{FLAGS.output}: {image.width}x{image.height}")


if __name__ == "__main__":
  app.run(main)
