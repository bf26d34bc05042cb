"""Makes the pictures of docs/forward.md: the job through each forward model, on DCGAN samples.

    python docs/make_forward_images.py [--restarts=16] [--steps=100] [--out=docs/images]

For each case a sample of the built-in 64x64 DCGAN (its latent scaled to the search sphere's
radius sqrt(100)) is degraded by the case's forward model D (`pulse_jax.forward`), written as a
PNG and searched by `pulse_jax.run` (in process, `run_job(RunOptions(...))`) with the matching
flags. Each strip docs/images/forward_<case>.png shows, 128 px each: the input (enlarged,
nearest neighbour; unknown pixels of a mask shown grey), the best HR image (hr_0.png), D of it
(lr_0.png: what the search compared with the input) and the sample itself (the truth, never
seen by the search). The captions give the L2 of D(best HR) against the input and the eps.
"""
from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

flags.DEFINE_integer("restarts", 16, "Restarts per case.")
flags.DEFINE_integer("steps", 100, "Steps per restart.")
flags.DEFINE_string("out", str(ROOT / "docs" / "images"), "Where forward_<case>.png go.")
flags.DEFINE_string("cases", "inpainting,deblurring,colourisation,noise", "Cases to make.")
FLAGS = flags.FLAGS

CELL = 128
CAPTION = 16

# case -> (sample seed, input size, flags, what the case shows)
CASES = {
    "inpainting": (2, 64, {"mask": "mask"}, "inpainting: 64x64, lower 40% unknown (--mask)"),
    "deblurring": (3, 64, {"blur_sigma": 1.5}, "deblurring: 64x64 blurred (--blur_sigma=1.5)"),
    "colourisation": (4, 64, {"grayscale": True}, "colourisation: 64x64 gray (--grayscale)"),
    "noise": (2, 16, {"noise_sigma": 0.1},
              "noisy 16x16 input, std 0.1 (--noise_sigma=0.1: eps = max(eps, 0.1^2))"),
}


def dcgan_sample(model, seed: int) -> np.ndarray:
  """[3, 64, 64] float32 in [0, 1]: the DCGAN's image of a latent on the search sphere."""
  import jax
  import jax.numpy as jnp
  g = model.generator()
  x = jax.random.normal(jax.random.key(seed), (1, 1, g.latent_dim))
  x = x / jnp.linalg.norm(x) * jnp.sqrt(g.latent_dim)
  hr = (g.render(model.params, g.latent_to_w(model.params, x), []) + 1.0) / 2.0
  return np.clip(np.asarray(hr[0], np.float32), 0.0, 1.0)


def degrade(hr: np.ndarray, size: int, opts: dict, seed: int) -> np.ndarray:
  """D(hr) for the case's options (the mask is not part of D), noise added with noise_sigma."""
  import jax.numpy as jnp
  from pulse_jax.forward import ForwardModel
  fw = ForwardModel.from_options(64 // size, **{k: v for k, v in opts.items() if k != "mask"})
  lr = np.asarray(fw.apply(jnp.asarray(hr[None]), fw.arrays()))[0]
  if opts.get("noise_sigma"):
    lr = lr + np.random.default_rng(seed).normal(0.0, opts["noise_sigma"], lr.shape)
  return np.clip(lr, 0.0, 1.0)


def to_image(a: np.ndarray) -> Image.Image:
  u8 = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
  return Image.fromarray(u8[0] if u8.shape[0] == 1 else u8.transpose(1, 2, 0))


def strip(parts: list[tuple[Image.Image, str]]) -> Image.Image:
  gap = 2
  out = Image.new("RGB", (len(parts) * CELL + (len(parts) - 1) * gap, CELL + CAPTION), "white")
  draw = ImageDraw.Draw(out)
  for i, (im, label) in enumerate(parts):
    x = i * (CELL + gap)
    out.paste(im.convert("RGB").resize((CELL, CELL), Image.Resampling.NEAREST), (x, CAPTION))
    draw.text((x + 2, 2), label, fill="black")
  return out


def make_case(name: str, model, work: pathlib.Path, out_dir: pathlib.Path) -> dict:
  from pulse_jax.job.pipeline import run_job
  from pulse_jax.job.settings import RunOptions
  seed, size, opts, what = CASES[name]
  hr = dcgan_sample(model, seed)
  lr = degrade(hr, size, opts, seed)
  opts = dict(opts)
  shown = lr.copy()
  if "mask" in opts:
    known = np.ones((size, size), bool)
    known[int(round(size * 0.6)):] = False
    mask_file = work / f"{name}_mask.png"
    Image.fromarray(known.astype(np.uint8) * 255).save(mask_file)
    opts["mask"] = str(mask_file)
    shown = np.where(known[None], lr, 0.5)  # the unknown pixels as grey (the search ignores them)
    lr = shown
  src = work / f"{name}.png"
  to_image(lr).save(src)
  run_dir = work / f"run_{name}"
  summary = run_job(RunOptions(input=str(src), output_dir=str(run_dir), restarts=FLAGS.restarts,
                               steps=FLAGS.steps, overwrite=True, quiet=True, **opts))
  d = run_dir / name
  report = json.loads((d / "report.json").read_text())
  l2, eps = report["best"]["l2"], report["eps"]
  parts = [(to_image(shown), f"input {size}x{size}"),
           (Image.open(d / "hr_0.png"), "best HR"),
           (Image.open(d / "lr_0.png"), f"D(HR) L2 {l2:.1e}"),
           (to_image(hr), "truth (sample)")]
  path = out_dir / f"forward_{name}.png"
  strip(parts).save(path, optimize=True)
  print(f"{path}: {what}; {report['restarts_within_eps']}/{FLAGS.restarts} restarts within eps "
        f"{eps:g}, best L2 {l2:.3e}; {summary['wall_s']:.0f} s")
  return report


def main(argv):
  del argv
  import pulse_jax
  from pulse_jax.io.cli import quiet_logging
  quiet_logging()
  model = pulse_jax.load_generator()
  out_dir = pathlib.Path(FLAGS.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="forward-images-") as tmp:
    for name in FLAGS.cases.split(","):
      make_case(name, model, pathlib.Path(tmp), out_dir)


if __name__ == "__main__":
  app.run(main)
