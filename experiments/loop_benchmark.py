"""The search loop before and after an optimisation, both sides in one run (issue 14 §2).

Measures `runtime.loop.search_images` end to end on the main job's shapes (the DCGAN at 64 px,
and StyleGAN at 256 and 1024 px with random weights), as the main job calls it (a progress
callback after every chunk), in two source trees: this checkout ("after") and `--before_dir`
(e.g. a `git worktree` of an earlier commit). Every measurement is a fresh subprocess with
that tree first on `sys.path`; sides alternate, best of `--repeats` rounds. In each
subprocess the search runs twice and the second call is timed (its programs are compiled and
cached by then), so the number is the loop's cost: chunk dispatch, progress reads, the
weights' preparation, masked steps past `--steps`.

The runtime keeps only the overlapped loop on weights prepared once per search (issue 20
retired `search_images(overlap=False)`, the synchronous loop that prepared the weights in every
chunk, and its duplicate render path): to measure against that loop, point `--before_dir` at a
checkout that still has it (e.g. ceaeae3, the "before" of experiments/results/cpu_loop*).

  git worktree add /tmp/pulse_before ceaeae3
  python -m experiments.loop_benchmark --before_dir=/tmp/pulse_before --name=cpu_loop

Writes experiments/results/<name>.{json,md}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("before_dir", None, "Source tree of the 'before' side (a checkout).")
flags.DEFINE_integer("repeats", 2, "Alternating rounds per side (best is reported).")
flags.DEFINE_list("configs", ["dcgan64", "stylegan256", "stylegan1024"], "Which shapes.")
flags.DEFINE_string("name", None, "Results name (experiments/results/NAME.{json,md}).")

HERE = os.path.dirname(os.path.abspath(__file__))
AFTER_DIR = os.path.dirname(HERE)
RESULT = "LOOP_RESULT "

# The main job's shapes. steps is not a multiple of chunk for the StyleGAN ones, so the last
# chunk holds masked steps (as a job whose --steps is not a multiple of --chunk_size).
CONFIGS = {
    "dcgan64": dict(kind="dcgan", restarts=16, steps=100, chunk=25, lr=8),
    "stylegan256": dict(kind="stylegan", resolution=256, restarts=2, steps=10, chunk=4, lr=16),
    "stylegan1024": dict(kind="stylegan", resolution=1024, restarts=1, steps=6, chunk=4, lr=16),
}

WORKER = r"""
import json, sys, time
import numpy as np
spec = json.loads(sys.argv[1])
from pulse_jax import generators
try:  # the layered tree (issue 20) or an earlier flat one (--before_dir=ceaeae3)
  from pulse_jax.runtime import loop
  from pulse_jax.search.config import SearchConfig
  from pulse_jax.job import builtin_models
  from pulse_jax.nets.stylegan1 import StyleGANConfig, synthesis_param_shapes
except ImportError:
  from pulse_jax import driver as loop, models as builtin_models
  from pulse_jax.search_config import SearchConfig
  from pulse_jax.stylegan import StyleGANConfig, synthesis_param_shapes
if spec["kind"] == "dcgan":
  w = builtin_models.load(None, log=lambda s: None)
  g, params = generators.from_weights(w), w.params
  cfg = SearchConfig(loss_str="100*L2", steps=spec["steps"])
else:
  import jax, jax.numpy as jnp
  sc = StyleGANConfig(resolution=spec["resolution"])
  leaves, tree = jax.tree.flatten(synthesis_param_shapes(sc))
  rng = np.random.default_rng(0)
  normal = lambda s: jnp.asarray(0.5 * rng.standard_normal(s, np.float32))
  params = {"synthesis": jax.tree.unflatten(tree, [normal(l.shape) for l in leaves]),
            "gaussian_fit": {"mean": normal((512,)), "std": jnp.ones(512) * 0.7}}
  g = generators.Generator("stylegan", sc)
  cfg = SearchConfig(steps=spec["steps"], bad_noise_layers=str(sc.num_layers - 1))
ref = np.random.default_rng(1).uniform(0.2, 0.8, (1, 3, spec["lr"], spec["lr"])).astype(np.float32)
seen = []
progress = lambda info: seen.append(float(np.min(info.best_l2)))
kw = dict(config=cfg, restarts=spec["restarts"], chunk_size=spec["chunk"], progress=progress)
loop.search_images(g, params, ref, **kw)  # compiles
t = time.perf_counter()
r = loop.search_images(g, params, ref, **kw)
wall = time.perf_counter() - t
print("LOOP_RESULT " + json.dumps({"wall_s": wall, "progress_calls": len(seen) // 2,
                                   "best_l2": float(np.min(r.l2)),
                                   "restart_steps_per_s": spec["restarts"] * spec["steps"] / wall}))
"""


def run_side(tree: str, spec: dict) -> dict:
  env = {**os.environ, "PYTHONPATH": tree, "PULSE_JAX_NO_COMPILE_CACHE": "1"}
  p = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], cwd=tree, env=env,
                     capture_output=True, text=True, timeout=1800)
  for line in p.stdout.splitlines():
    if line.startswith(RESULT):
      return json.loads(line[len(RESULT):])
  raise RuntimeError(f"worker failed in {tree}:\n{p.stderr[-3000:]}")


def _git_commit(tree: str) -> str | None:
  try:
    return subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or None
  except OSError:
    return None


def main(argv):
  del argv
  if not FLAGS.before_dir:
    raise app.UsageError("--before_dir is required (a checkout of the 'before' commit).")
  sides = {"before": os.path.abspath(FLAGS.before_dir), "after": AFTER_DIR}
  rows = []
  for name in FLAGS.configs:
    spec = CONFIGS[name]
    runs = {"before": [], "after": []}
    for _ in range(FLAGS.repeats):
      for side, tree in sides.items():
        r = run_side(tree, spec)
        runs[side].append(r)
        print(f"{name} {side}: {r['restart_steps_per_s']:.3f} restart-steps/s "
              f"({r['wall_s']:.2f} s)", flush=True)
    best = {s: max(v, key=lambda r: r["restart_steps_per_s"]) for s, v in runs.items()}
    rows.append({"config": name, **spec, "runs": runs,
                 "before": best["before"]["restart_steps_per_s"],
                 "after": best["after"]["restart_steps_per_s"],
                 "speedup": best["after"]["restart_steps_per_s"]
                 / best["before"]["restart_steps_per_s"]})
  from experiments.measure import machine_info
  doc = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(),
         "before": {"dir": sides["before"], "commit": _git_commit(sides["before"])},
         "after": {"dir": sides["after"], "commit": _git_commit(sides["after"])},
         "command": " ".join(["python -m experiments.loop_benchmark"] + sys.argv[1:]),
         "rows": rows}
  name = FLAGS.name or f"cpu_loop_{doc['date']}"
  out = os.path.join(HERE, "results", name)
  with open(out + ".json", "w") as f:
    json.dump(doc, f, indent=1)
  lines = [f"# Search loop before / after ({doc['date']})", "",
           f"`{doc['command']}`: before = {doc['before']['commit']}, after = "
           f"{doc['after']['commit']}; best of {FLAGS.repeats} alternating rounds, each a fresh "
           "process, the second (compiled) `search_images` call timed, with a progress "
           "callback per chunk.", "",
           "| shape | restarts | steps | chunk | before restart-steps/s | after | after / before |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['config']} | {r['restarts']} | {r['steps']} | {r['chunk']} | "
                 f"{r['before']:.3f} | {r['after']:.3f} | **{r['speedup']:.2f}x** |")
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
