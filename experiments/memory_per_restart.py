"""Memory per restart of a StyleGAN 1024 search, as the main job runs it (issue 14 §4).

For each `--remat` setting and restart count, runs `python -m pulse_jax.run` in a fresh process
on random full-size FFHQ weights (fmap_base 8192, fmap_max 512, float32) and one 32x32 input,
and records the process's own peak RSS (VmHWM, written at exit). Reports both readings:
  - the issue's: (peak RSS - 2.5 GiB) / restarts, at `--restarts` = the largest count;
  - the slope: (peak at N - peak at 1) / (N - 1), which needs no assumed fixed part;
and XLA's buffer assignment of the same compiled chunk (temp bytes; nothing allocated).

  python -m experiments.memory_per_restart --name=cpu_memory_<date>

Writes experiments/results/<name>.{json,md} when --name is given.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The script's flags (defined only when run as a script: importing this module defines none,
  so it coexists with the other experiments' flags, e.g. in the tests)."""
  flags.DEFINE_integer("resolution", 1024, "Generator resolution (the full FFHQ channel rule).")
  flags.DEFINE_list("restarts", ["1", "8"], "Restart counts (one process each).")
  flags.DEFINE_list("remat", ["false", "true"], "--remat settings.")
  flags.DEFINE_integer("steps", 2, "Search steps per run (the peak is reached in the first).")
  flags.DEFINE_integer("lr_size", 32, "Input size.")
  flags.DEFINE_float("fixed_gib", 2.5, "The fixed part the issue subtracts (weights, compiler).")
  flags.DEFINE_string("name", None, "Results name (experiments/results/NAME.{json,md}).")


HERE = os.path.dirname(os.path.abspath(__file__))
GIB = 2.0 ** 30


def write_random_weights(directory: str, resolution: int, seed: int = 0) -> str:
  """Random StyleGAN weights (N(0, 0.5^2), as the benchmark's) saved as a weights directory."""
  from experiments import measure
  from pulse_jax.io.weights_dir import GeneratorWeights, save_weights
  cfg, params = measure.jax_params({"resolution": resolution, "fmap_base": 8192,
                                    "fmap_max": 512, "seed": seed})
  meta = {"sources": [{"file": "random", "kind": "random N(0, 0.5^2)", "seed": seed}]}
  return save_weights(directory, GeneratorWeights("stylegan", cfg, params, meta))


def write_input(path: str, size: int, seed: int = 0) -> str:
  from PIL import Image
  rgb = np.random.default_rng(seed).integers(40, 215, (size, size, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(path)
  return path


def _last_layer(resolution: int) -> int:
  """The reference's zeroed noise layer (its last), as the benchmark's searches."""
  from pulse_jax.nets.stylegan1 import StyleGANConfig
  return StyleGANConfig(resolution=resolution).num_layers - 1


def run_job(weights: str, image: str, out_dir: str, resolution: int, restarts: int,
            remat: bool, steps: int) -> dict:
  """One `pulse_jax.run` in a fresh process: its peak RSS, wall time and summary."""
  hwm = os.path.join(out_dir, "hwm.txt")
  from experiments.measure import peak_rss_wrapper
  args = [sys.executable, "-c", peak_rss_wrapper("pulse_jax.run"), f"--weights={weights}", f"--input={image}",
          f"--output_dir={out_dir}", f"--restarts={restarts}", f"--steps={steps}",
          f"--chunk_size={steps}", f"--remat={str(remat).lower()}", "--nocompile_cache",
          "--quiet", f"--bad_noise_layers={_last_layer(resolution)}"]
  t = time.perf_counter()
  p = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HWM_FILE": hwm})
  wall = time.perf_counter() - t
  if p.returncode != 0:
    return {"error": f"exit {p.returncode}: {p.stderr[-2000:]}", "wall_s": wall}
  with open(os.path.join(out_dir, "summary.json")) as f:
    summary = json.load(f)
  with open(hwm) as f:
    peak = int(f.read()) * 1024
  return {"peak_rss_bytes": peak, "wall_s": wall,
          "compile_s": summary.get("timing", {}).get("compile_s")}


def compiled_temp(resolution: int, restarts: int, remat: bool, steps: int, lr_size: int) -> dict:
  """XLA's buffer assignment of the chunk `run` compiles (from shapes only)."""
  import jax
  import jax.numpy as jnp
  from pulse_jax.runtime import compile
  from pulse_jax.generators import Generator
  from pulse_jax.search.config import SearchConfig
  from pulse_jax.nets.stylegan1 import StyleGANConfig, synthesis_param_shapes
  cfg = StyleGANConfig(resolution=resolution)
  params = {"synthesis": synthesis_param_shapes(cfg),
            "gaussian_fit": {k: jax.ShapeDtypeStruct((512,), jnp.float32) for k in ("mean", "std")}}
  m = compile.compiled_chunk(Generator("stylegan", cfg, remat=remat), params,
                            SearchConfig(steps=steps, bad_noise_layers=str(_last_layer(resolution))),
                            rows=restarts, lr_size=lr_size, chunk_size=steps).memory_analysis()
  return {"temp_bytes": int(m.temp_size_in_bytes), "argument_bytes": int(m.argument_size_in_bytes)}


def measure_all(resolution: int, counts: list[int], remats: list[bool], steps: int,
                lr_size: int, fixed_gib: float, log=print) -> dict:
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    weights = write_random_weights(os.path.join(tmp, "weights"), resolution)
    image = write_input(os.path.join(tmp, "input.png"), lr_size)
    for remat in remats:
      for n in counts:
        out_dir = os.path.join(tmp, f"run_{remat}_{n}")
        os.makedirs(out_dir)
        row = {"remat": remat, "restarts": n, **run_job(weights, image, out_dir, resolution, n, remat,
                                                         steps),
               **compiled_temp(resolution, n, remat, steps, lr_size)}
        if "peak_rss_bytes" in row:
          row["issue_per_restart_bytes"] = (row["peak_rss_bytes"] - fixed_gib * GIB) / n
        rows.append(row)
        log(_line(row))
  for remat in remats:  # the slope between the smallest and the largest count
    mine = sorted((r for r in rows if r["remat"] == remat and "peak_rss_bytes" in r),
                  key=lambda r: r["restarts"])
    if len(mine) >= 2 and mine[-1]["restarts"] > mine[0]["restarts"]:
      a, b = mine[0], mine[-1]
      b["slope_per_restart_bytes"] = ((b["peak_rss_bytes"] - a["peak_rss_bytes"])
                                      / (b["restarts"] - a["restarts"]))
      b["temp_slope_per_restart_bytes"] = ((b["temp_bytes"] - a["temp_bytes"])
                                           / (b["restarts"] - a["restarts"]))
  return {"resolution": resolution, "steps": steps, "lr_size": lr_size, "fixed_gib": fixed_gib,
          "rows": rows}


def _line(r: dict) -> str:
  if "error" in r:
    return f"remat={r['remat']} restarts={r['restarts']}: FAILED {r['error']}"
  return (f"remat={str(r['remat']):<5} restarts={r['restarts']:<3} peak RSS "
          f"{r['peak_rss_bytes'] / GIB:.2f} GiB, (peak - fixed) / restarts "
          f"{r['issue_per_restart_bytes'] / GIB:.3f} GiB; XLA temp {r['temp_bytes'] / GIB:.2f} GiB; "
          f"{r['wall_s']:.0f} s")


def markdown(results: dict) -> str:
  lines = [f"StyleGAN {results['resolution']} float32, {results['steps']} steps, "
           f"{results['lr_size']}x{results['lr_size']} input; fixed part "
           f"{results['fixed_gib']} GiB.", "",
           "| remat | restarts | peak RSS GiB | (peak - fixed) / restarts GiB | RSS slope per "
           "restart GiB | XLA temp GiB | temp slope per restart GiB | wall s |",
           "|---|---|---|---|---|---|---|---|"]
  fmt = lambda v: "" if v is None else f"{v / GIB:.3f}"
  for r in results["rows"]:
    if "error" in r:
      lines.append(f"| {r['remat']} | {r['restarts']} | failed | | | | | |")
      continue
    lines.append(f"| {r['remat']} | {r['restarts']} | {r['peak_rss_bytes'] / GIB:.2f} | "
                 f"{fmt(r['issue_per_restart_bytes'])} | {fmt(r.get('slope_per_restart_bytes'))} | "
                 f"{r['temp_bytes'] / GIB:.2f} | {fmt(r.get('temp_slope_per_restart_bytes'))} | "
                 f"{r['wall_s']:.0f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  from experiments import measure
  truthy = {"true": True, "false": False}
  results = measure_all(FLAGS.resolution, sorted(int(n) for n in FLAGS.restarts),
                        [truthy[r.lower()] for r in FLAGS.remat], FLAGS.steps, FLAGS.lr_size,
                        FLAGS.fixed_gib)
  results["machine"] = measure.machine_info()
  results["command"] = " ".join(sys.argv)
  md = markdown(results)
  print(md)
  if FLAGS.name:
    base = os.path.join(HERE, "results", FLAGS.name)
    with open(base + ".json", "w") as f:
      json.dump(results, f, indent=1)
    with open(base + ".md", "w") as f:
      f.write(f"# {FLAGS.name}\n\n`{results['command']}`\n\n{md}")
    print(f"wrote {base}.json and .md")


if __name__ == "__main__":
  define_flags()
  app.run(main)
