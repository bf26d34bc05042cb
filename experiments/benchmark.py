"""pulse-jax vs the PyTorch reference of PULSE, on the same work, in one run.

  python -m experiments.benchmark --reference_dir=/path/to/pulse   # checkout of adamian98/pulse

Measures restart-steps per second (one search step of one restart = forward + backward + update)
for a sweep of restarts per program at each resolution, compile time apart from the steady
state, peak memory (host RSS of a fresh process per configuration; XLA's compiled temp size;
device peak on a GPU), float32 / bfloat16, with and without rematerialisation; then parity on
the same random weights (one 1024 forward, a short search from identical starting values).
Writes experiments/results/<platform>_<date>.{json,md} and the summary block of
experiments/README.md. Without torch or a reference checkout it says so and measures pulse-jax
alone.
"""
from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from experiments import measure, report

FLAGS = flags.FLAGS
flags.DEFINE_list("resolutions", ["1024", "256"], "Generator resolutions to measure.")
flags.DEFINE_list("restarts", ["1", "2"], "Restarts per program (batch N) to sweep.")
flags.DEFINE_integer("max_restarts", 0, "If > 0: sweep 1, 2, 4, ... up to this (replaces "
                     "--restarts); a configuration that fails (e.g. out of memory) ends the sweep.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "pulse-jax compute dtypes.")
flags.DEFINE_list("remat", ["false", "true"], "pulse-jax rematerialisation settings.")
flags.DEFINE_enum("sweep", "base", ["base", "all"], "base: the first dtype with the first remat "
                  "value sweeps every restart count, other variants run at the smallest only; "
                  "all: every variant at every restart count.")
flags.DEFINE_integer("fmap_base", 8192, "StyleGAN fmap_base (8192: the FFHQ network).")
flags.DEFINE_integer("fmap_max", 512, "StyleGAN fmap_max (512: the FFHQ network).")
flags.DEFINE_integer("lr_size", 32, "Size of the low-resolution target (factor = res / lr_size).")
flags.DEFINE_integer("chunk_size", 4, "Steps per compiled chunk (lax.scan length). The weights' "
                     "run-time form is computed once per chunk (pulse_jax.run uses 25).")
flags.DEFINE_integer("micro_batches", 1, "pulse-jax: restarts of a step in this many sequential "
                     "groups (restart counts it does not divide are skipped); 0: per "
                     "configuration the fewest that fit the device's memory (GPU/TPU).")
flags.DEFINE_integer("warmup_chunks", 1, "Chunks run after compiling and before timing.")
flags.DEFINE_integer("steps", 4, "Timed steps (rounded up to whole chunks) per configuration.")
flags.DEFINE_integer("repeats", 1, "Rounds per configuration, alternating reference and pulse-jax; "
                     "the best round of each is kept (robust to other load on a shared machine).")
flags.DEFINE_integer("schedule_steps", 100, "pulse-jax LR-schedule horizon (cost-neutral).")
flags.DEFINE_string("reference_dir", os.environ.get("PULSE_REFERENCE_DIR"),
                    "Checkout of github.com/adamian98/pulse (imported at run time, never "
                    "copied). Default: $PULSE_REFERENCE_DIR.")
flags.DEFINE_enum("reference_device", "auto", ["auto", "cpu", "cuda"], "Device of the reference.")
flags.DEFINE_bool("reference_flush_denormal", True, "torch.set_flush_denormal for the reference "
                  "on the CPU, as XLA:CPU does by default (subnormals slow x86 10x+).")
flags.DEFINE_bool("reference", True, "Measure the reference (needs torch and --reference_dir).")
flags.DEFINE_bool("parity", True, "Run the parity checks (needs the reference).")
flags.DEFINE_integer("parity_steps", 5, "Search steps compared in the parity check.")
flags.DEFINE_integer("parity_resolution", 1024, "Resolution of the parity check (1024 only).")
flags.DEFINE_list("memory_restarts", ["128"], "Compile-only: XLA's buffer assignment of the "
                  "search program for these restart counts (nothing that size is allocated).")
flags.DEFINE_list("memory_micro_batches", ["1", "4", "8"], "Compile-only memory check: "
                  "micro-batch counts (pulse_jax.run --micro_batches) to compile.")
flags.DEFINE_list("memory_resolutions", ["1024"], "Resolutions of the compile-only memory check "
                  "(those also in --resolutions).")
flags.DEFINE_integer("seed", 0, "Seed of the random weights and targets.")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"),
                    "Where the JSON and markdown results go.")
flags.DEFINE_string("name", None, "Result file stem (default <platform>_<UTC date>).")
flags.DEFINE_bool("update_readme", True, "Rewrite the summary block of experiments/README.md.")
flags.DEFINE_integer("worker_timeout_s", 1800, "Time limit of one configuration's process.")
flags.DEFINE_string("jax_patch", None, "Experimental: a Python file run in each pulse-jax process "
                    "before measuring (to try a library change without editing it); recorded.")
flags.DEFINE_bool("in_process", False, "Run every measurement in this process (tests, debugging): "
                  "peak RSS then mixes between configurations.")
flags.DEFINE_string("worker_spec", None, "Internal: run one measurement (JSON) and print it.")


def _run_worker(spec: dict, env: dict | None = None) -> dict:
  """Runs one measurement in a fresh Python process; returns its dict or {'error': ...}."""
  if FLAGS.in_process:
    try:
      return {**run_spec(spec), "spec": spec}
    except Exception as e:  # reported like a failed worker
      return {"error": f"{type(e).__name__}: {e}", "spec": spec}
  cmd = [sys.executable, "-m", "experiments.benchmark", f"--worker_spec={json.dumps(spec)}"]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  t = time.perf_counter()
  try:
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                       timeout=FLAGS.worker_timeout_s, env={**os.environ, **(env or {})})
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {FLAGS.worker_timeout_s} s", "spec": spec}
  for line in p.stdout.splitlines()[::-1]:
    if line.startswith(measure.RESULT_PREFIX):
      out = json.loads(line[len(measure.RESULT_PREFIX):])
      out["process_wall_s"] = time.perf_counter() - t
      out["spec"] = spec
      return out
  tail = (p.stderr or "")[-2000:]
  why = "killed (out of memory?)" if p.returncode in (-9, 137) else f"exit code {p.returncode}"
  return {"error": f"{why}: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
          "stderr_tail": tail, "spec": spec}


def run_spec(spec: dict) -> dict:
  """Runs one measurement in this process (what a worker process does)."""
  spec = dict(spec)
  kind = spec.pop("kind")
  if spec.get("jax_patch") and kind in ("jax", "memory", "parity"):
    import runpy
    runpy.run_path(spec["jax_patch"])
  if kind == "jax":
    out = measure.measure_jax(spec)
  elif kind == "reference":
    out = measure.measure_reference(spec)
  elif kind == "memory":
    out = measure.measure_memory(spec)
  elif kind == "parity":
    from experiments import parity
    out = parity.run_parity(spec)
  else:
    raise ValueError(f"unknown worker kind {kind!r}")
  out["load_avg_end"] = os.getloadavg()
  return out


def worker_main(spec: dict) -> None:
  print(measure.RESULT_PREFIX + json.dumps(run_spec(spec)), flush=True)


def _bool(s: str) -> bool:
  if s.lower() in ("true", "1", "yes"):
    return True
  if s.lower() in ("false", "0", "no"):
    return False
  raise app.UsageError(f"--remat values must be true/false, got {s!r}")


def reference_status() -> tuple[bool, str]:
  """(usable, message). Checks torch and the checkout without importing the reference."""
  from experiments import reference_adapter as ra
  if not FLAGS.reference:
    return False, "reference not measured (--noreference)"
  try:
    ra.import_torch()
    d = ra.check_reference_dir(FLAGS.reference_dir)
  except ra.ReferenceUnavailable as e:
    return False, f"reference not measured: {e}"
  return True, f"reference: {d}"


def restart_counts() -> list[int]:
  if FLAGS.max_restarts > 0:
    out, r = [], 1
    while r <= FLAGS.max_restarts:
      out.append(r)
      r *= 2
    return out
  return sorted({int(r) for r in FLAGS.restarts})


def main(argv):
  if FLAGS.worker_spec:
    worker_main(json.loads(FLAGS.worker_spec))
    return
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  started = datetime.datetime.now(datetime.timezone.utc)
  resolutions = [int(r) for r in FLAGS.resolutions]
  counts = restart_counts()
  variants = [(d, _bool(r)) for d in FLAGS.dtypes for r in FLAGS.remat]
  timed_chunks = max(1, -(-FLAGS.steps // FLAGS.chunk_size))
  use_ref, msg = reference_status()
  print(msg, flush=True)
  info = measure.machine_info()
  results = {"command": " ".join(["python -m experiments.benchmark"] + [shlex.quote(a) for a in
                                                                        sys.argv[1:]]), "flags": {
      f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])
      if f.name != "worker_spec"}, "started_utc": started.isoformat(), "machine": info,
      "versions": measure.versions(), "reference_status": msg, "runs": [], "parity": None}

  weights: dict[int, list[str]] = {}
  tmp = tempfile.mkdtemp(prefix="pulse_bench_weights_")
  if use_ref:
    from experiments import reference_adapter as ra
    ref = ra.load_reference(FLAGS.reference_dir)
    results["reference"] = ra.describe_reference(ref.dir)
    need = set(resolutions) | ({FLAGS.parity_resolution} if FLAGS.parity else set())
    for res in sorted(need):
      weights[res] = list(ra.make_random_weights(ref, res, FLAGS.fmap_base, FLAGS.fmap_max,
                                                 FLAGS.seed, tmp))

  def base_spec(res, n):
    return {"resolution": res, "fmap_base": FLAGS.fmap_base, "fmap_max": FLAGS.fmap_max,
            "restarts": n, "lr_size": FLAGS.lr_size, "schedule_steps": FLAGS.schedule_steps,
            "chunk_size": FLAGS.chunk_size, "warmup_chunks": FLAGS.warmup_chunks,
            "timed_chunks": timed_chunks, "seed": FLAGS.seed, "weights": weights.get(res),
            "micro_batches": FLAGS.micro_batches,
            "jax_patch": os.path.abspath(FLAGS.jax_patch) if FLAGS.jax_patch else None}

  for res in resolutions:
    failed: set = set()
    for n in counts:
      todo = []
      if use_ref and "reference" not in failed:
        todo.append(("reference", {"kind": "reference", "reference_dir": FLAGS.reference_dir,
                                   "reference_device": FLAGS.reference_device,
                                   "reference_flush_denormal": FLAGS.reference_flush_denormal}))
      for i, (dtype, remat) in enumerate(variants):
        if (dtype, remat) in failed or (FLAGS.sweep == "base" and i > 0 and n != counts[0]) or (
            FLAGS.micro_batches and n % FLAGS.micro_batches):
          continue
        todo.append(((dtype, remat), {"kind": "jax", "dtype": dtype, "remat": remat}))
      best: dict = {}
      for rep in range(FLAGS.repeats):  # alternate the sides; keep each one's best round
        for key, extra in todo:
          out = _run_worker({**base_spec(res, n), **extra})
          out.update(resolution=res, restarts=n, variant=report.variant_name(key))
          print(report.progress_line(out) + (f"  (round {rep + 1})" if FLAGS.repeats > 1 else ""),
                flush=True)
          prev = best.get(key)
          if prev is None or ("error" in prev and "error" not in out) or (
              "error" not in out and out["restart_steps_per_s"] > prev["restart_steps_per_s"]):
            best[key] = {**out, "rounds": (prev or {}).get("rounds", [])}
          best[key]["rounds"].append(out.get("restart_steps_per_s"))
      for key, _ in todo:
        results["runs"].append(best[key])
        if "error" in best[key]:
          failed.add(key)
      _write(results, info, partial=True)

  results["memory"] = []
  mem_counts = sorted({int(r) for r in FLAGS.memory_restarts if r})
  mem_res = [int(r) for r in FLAGS.memory_resolutions if r and int(r) in resolutions]
  for res in mem_res if mem_counts else []:
    out = _run_worker({"kind": "memory", **base_spec(res, 1), "restarts": mem_counts,
                       "variants": [list(v) for v in variants],
                       "micro_batches_list": [int(g) for g in FLAGS.memory_micro_batches if g]})
    results["memory"].append(out)
    print(report.memory_lines(out), flush=True)

  if use_ref and FLAGS.parity:
    spec = {"kind": "parity", **base_spec(FLAGS.parity_resolution, 1),
            "steps": FLAGS.parity_steps, "reference_dir": FLAGS.reference_dir,
            "reference_device": FLAGS.reference_device}
    out = _run_worker(spec, env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    results["parity"] = out
    print(report.parity_lines(out), flush=True)
  results["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
  paths = _write(results, info, partial=False)
  print(report.ratio_lines(results), flush=True)
  print("wrote " + ", ".join(paths), flush=True)


def _write(results: dict, info: dict, partial: bool) -> list[str]:
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  platform = report.platform_name(results)
  stem = FLAGS.name or f"{platform}_{results['started_utc'][:10]}"
  jpath = os.path.join(FLAGS.out_dir, stem + ".json")
  mpath = os.path.join(FLAGS.out_dir, stem + ".md")
  with open(jpath, "w") as f:
    json.dump(results, f, indent=1, default=str)
  if partial:
    return [jpath]
  md = report.markdown(results)
  with open(mpath, "w") as f:
    f.write(md)
  paths = [jpath, mpath]
  if FLAGS.update_readme:
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
    report.update_readme(readme, report.summary(results, os.path.relpath(mpath, os.path.dirname(
        readme))))
    paths.append(readme)
  return paths


if __name__ == "__main__":
  app.run(main)
