"""One GPU session's measurements of pulse-jax against the PyTorch reference, in a time budget.

  experiments/gpu_check.sh            # on the GPU machine: installs the project, then this
  python -m experiments.gpu_check     # on a CPU: the tiny configuration (also: --tiny)

At the full FFHQ 1024 architecture with random weights (the same on both sides; the reference's
random `G_synthesis` converted by `weights_convert`), it measures
  - the device: kind, memory limit, `jax_default_matmul_precision` and whether float32 matmuls
    and convolutions run as TF32 (default against highest precision, measured);
  - the reference (github adamian98/pulse, from `--reference_dir`, default
    $PULSE_REFERENCE_DIR or .reference/pulse) on CUDA, `PULSE.forward` at batch 1, 2, 4, 8, 16;
  - pulse-jax at 1 to 512 restarts, float32 and bfloat16, micro-batches chosen from the
    device's memory (`--micro_batches=0`): restart-steps/s, compile time, peak device memory;
  - parity of one forward (max abs diff over the output range);
and reports each row's % of the roofline and the issue's targets (met / not met / not
measured). Configurations run in priority order, each in a fresh process; one that does not fit
in what is left of `--budget_s` is skipped and listed, and a running one is stopped at the
budget's end. Writes experiments/results/gpu_<device>_<date>.{json,md} (after every
configuration) and the block between the gpu-table markers of README.md.
On a CPU (or with --tiny) everything is small and nothing but `--readme` is updated.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from experiments import measure, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = {"resolution": 1024, "fmap_base": 8192, "fmap_max": 512, "lr_size": 32,
        "restarts": [1, 256, 64, 16, 512, 4], "reference_batches": [1, 2, 4, 8, 16],
        "chunk_size": 4, "warmup_chunks": 1, "steps": 8, "budget_s": 420.0,
        "parity_fmap": [8192, 512],  # parity runs at 1024 (the reference has 18 style rows)
        # first-guess seconds of a configuration before one of its kind was timed
        "prior_s": {"jax": 150.0, "reference": 60.0, "parity": 60.0}}
TINY = {"resolution": 32, "fmap_base": 64, "fmap_max": 16, "lr_size": 8, "restarts": [1, 4],
        "reference_batches": [1, 2], "chunk_size": 2, "warmup_chunks": 1, "steps": 2,
        "budget_s": 150.0, "parity_fmap": [1024, 16],  # >= 1 channel at 1024
        "prior_s": {"jax": 10.0, "reference": 10.0, "parity": 20.0}}

STOPPED = "stopped at the time budget"
FLAGS = flags.FLAGS
flags.DEFINE_bool("tiny", None, "Small network, few restarts and steps (default: when the first "
                  "jax device is a CPU).")
flags.DEFINE_float("budget_s", None, "Time budget of the whole run in seconds (default 420; "
                   "tiny 150): configurations that do not fit are skipped.")
flags.DEFINE_list("restarts", None, "pulse-jax restart counts, in priority order (default "
                  "1,256,64,16,512,4; tiny 1,4).")
flags.DEFINE_list("reference_batches", None, "Reference `PULSE.forward` batches (default "
                  "1,2,4,8,16; tiny 1,2).")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "pulse-jax compute dtypes.")
flags.DEFINE_integer("steps", None, "Timed steps per configuration (default 8; tiny 2).")
flags.DEFINE_integer("micro_batches", 0, "pulse-jax micro-batches; 0: the fewest that fit the "
                     "device's memory (driver.choose_micro_batches).")
flags.DEFINE_float("memory_budget_gb", 0.0, "With --micro_batches=0: the memory budget per device "
                   "(0: 90% of the device's limit; a CPU reports none: one batch).")
flags.DEFINE_integer("parity_steps", 0, "Also compare this many search steps from identical "
                     "starts (0: the forward only; each step count is one more compile).")
flags.DEFINE_string("reference_dir", os.environ.get("PULSE_REFERENCE_DIR") or
                    os.path.join(ROOT, ".reference", "pulse"),
                    "Copy of github.com/adamian98/pulse (imported at run time, never committed; "
                    "default $PULSE_REFERENCE_DIR, else .reference/pulse, gitignored).")
flags.DEFINE_integer("seed", 0, "Seed of the random weights and targets.")
flags.DEFINE_string("out_dir", os.path.join(ROOT, "experiments", "results"),
                    "Where gpu_<device>_<date>.{json,md} go.")
flags.DEFINE_string("name", None, "Result file stem (default gpu_<device>_<UTC date>).")
flags.DEFINE_string("readme", None, "README whose gpu-table block is rewritten (default: the "
                    "repository's README.md, except in the tiny configuration; 'none': none).")
flags.DEFINE_string("from_json", None, "Measure nothing: rewrite the .md beside this results JSON "
                    "(e.g. one a GPU run wrote under $OUT, copied to experiments/results/) and the "
                    "README block (--readme) from it.")
flags.DEFINE_string("worker_spec", None, "Internal: run these measurements (JSON) and print them.")


# ------------------------------------------------------------------------------ worker side


def probe() -> dict:
  """The first device, its memory limit and whether default-precision float32 is TF32."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  dev = jax.devices()[0]
  try:
    stats = dev.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}
  rng = np.random.default_rng(0)
  rel = lambda a, b: float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()
                           / np.abs(np.asarray(b, np.float64)).max())
  a, b = (jnp.asarray(rng.standard_normal((512, 512)), jnp.float32) for _ in range(2))
  mm = lambda p: jax.jit(lambda a, b: jnp.matmul(a, b, precision=p))(a, b)
  x = jnp.asarray(rng.standard_normal((4, 64, 32, 32)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((64, 64, 3, 3)), jnp.float32)
  conv = lambda p: jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=p))(x, w)
  mm_diff, conv_diff = rel(mm(None), mm("highest")), rel(conv(None), conv("highest"))
  try:
    import jax.extend  # pylint: disable=import-outside-toplevel
    backend = jax.extend.backend.get_backend().platform_version
  except Exception:  # pylint: disable=broad-except
    backend = None
  return {"platform": dev.platform, "device_kind": dev.device_kind,
          "device_count": jax.device_count(), "bytes_limit": stats.get("bytes_limit"),
          "backend_version": backend,
          "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
          "matmul_rel_diff": mm_diff, "conv_rel_diff": conv_diff,
          # float32 differs from 'highest' by ~1e-6 at this size, TF32 by ~1e-3
          "tf32_in_use": bool(max(mm_diff, conv_diff) > 1e-4),
          "env": {k: os.environ.get(k) for k in (
              "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_FLAGS",
              "JAX_DEFAULT_MATMUL_PRECISION", "NVIDIA_TF32_OVERRIDE")}}


def run_one(spec: dict) -> dict:
  kind = spec["kind"]
  if kind == "probe":
    return probe()
  if kind == "jax":
    return measure.measure_jax(spec)
  if kind == "reference":
    out = measure.measure_reference(spec)
    import torch
    out["torch_tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                         "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                         "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if out["device"] == "cuda":
      out["cuda_device"] = torch.cuda.get_device_name()
      torch.cuda.empty_cache()
    return out
  if kind == "parity":
    from experiments import parity
    return parity.run_parity(spec)
  raise ValueError(f"unknown kind {kind!r}")


def worker_main(specs: list[dict]) -> None:
  """Prints one result line per spec as soon as it is measured (a stopped worker keeps them)."""
  for spec in specs:
    t = time.perf_counter()
    try:
      out = run_one(spec)
    except Exception as e:  # pylint: disable=broad-except
      out = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    out["item_wall_s"] = time.perf_counter() - t
    print(measure.RESULT_PREFIX + json.dumps(out, default=str), flush=True)


# ------------------------------------------------------------------------------ main side


def _text(x) -> str:
  return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")


def run_worker(specs: list[dict], timeout_s: float, env: dict | None = None) -> list[dict]:
  """Runs `specs` in one fresh process, stopped after `timeout_s`; one dict per spec (an
  'error' for those it did not finish)."""
  cmd = [sys.executable, "-m", "experiments.gpu_check", "--worker_spec=" + json.dumps(specs)]
  t = time.perf_counter()
  timed_out = False
  try:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout_s, 1),
                       env={**os.environ, **(env or {})})
    stdout, stderr, rc = p.stdout, p.stderr, p.returncode
  except subprocess.TimeoutExpired as e:
    stdout, stderr, rc, timed_out = _text(e.stdout), _text(e.stderr), None, True
  wall = time.perf_counter() - t
  outs = [json.loads(l[len(measure.RESULT_PREFIX):]) for l in stdout.splitlines()
          if l.startswith(measure.RESULT_PREFIX)]
  last = (stderr.strip().splitlines() or [""])[-1][:300]
  why = (f"{STOPPED} after {wall:.0f} s" if timed_out else
         "killed (out of memory?)" if rc in (-9, 137) else f"exit code {rc}: {last}")
  outs += [{"error": why, "stderr_tail": stderr[-2000:]} for _ in specs[len(outs):]]
  for o in outs:
    o["process_wall_s"] = wall
  return outs


def _settings(tiny: bool) -> dict:
  s = dict(TINY if tiny else FULL)
  if FLAGS.restarts:
    s["restarts"] = [int(r) for r in FLAGS.restarts]
  if FLAGS.reference_batches:
    s["reference_batches"] = [int(b) for b in FLAGS.reference_batches]
  if FLAGS.steps:
    s["steps"] = FLAGS.steps
  if FLAGS.budget_s:
    s["budget_s"] = FLAGS.budget_s
  s["timed_chunks"] = max(1, -(-s["steps"] // s["chunk_size"]))
  s["timed_steps"] = s["timed_chunks"] * s["chunk_size"]
  s["dtypes"] = list(FLAGS.dtypes)
  return s


def _nvidia_smi() -> str | None:
  if not shutil.which("nvidia-smi"):
    return None
  try:
    return subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,"
         "power.draw,power.limit,temperature.gpu", "--format=csv"], capture_output=True,
        text=True, timeout=20).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def _plan(s: dict) -> list[tuple[str, str | None, int | None]]:
  """(kind, dtype, restarts) in priority order: the first pulse-jax run, the reference sweep,
  every dtype at the second count (256 by default), parity, then the rest."""
  jax_jobs = [("jax", d, n) for n in s["restarts"] for d in s["dtypes"]]
  head = jax_jobs[:1] + [("reference", None, None)]
  second = [j for j in jax_jobs[1:] if len(s["restarts"]) > 1 and j[2] == s["restarts"][1]]
  rest = [j for j in jax_jobs[1:] if j not in second]
  return head + second + [("parity", None, None)] + rest


def _roofline(r: dict, device: dict, machine: dict, flops_f32: dict) -> None:
  dtype = r.get("dtype", "float32")
  flops = r.get("hlo_flops_per_restart_step") if (r.get("micro_batches") or 1) == 1 else None
  got = report.roofline(device.get("device_kind"), dtype, r["resolution"],
                        flops or flops_f32.get(r["resolution"]), machine)
  if got:
    r["roofline_restart_steps_per_s"], r["roofline_basis"] = got
    r["pct_of_roofline"] = r["restart_steps_per_s"] / got[0]


def _reference_setup(s: dict, results: dict) -> tuple[str | None, dict, str | None]:
  """(reference dir or None, weight paths {'run', 'parity'}, their tmp dir); records the
  reference's status (and why it is not measured) in `results`."""
  from experiments import reference_adapter as ra
  try:
    ra.import_torch()
    ref = ra.load_reference(ra.check_reference_dir(FLAGS.reference_dir))
    tmp = tempfile.mkdtemp(prefix="pulse_gpu_check_")
    weights = {"run": list(ra.make_random_weights(ref, s["resolution"], s["fmap_base"],
                                                  s["fmap_max"], FLAGS.seed, tmp))}
    same = [s["resolution"], s["fmap_base"], s["fmap_max"]] == [1024, *s["parity_fmap"]]
    weights["parity"] = weights["run"] if same else list(ra.make_random_weights(
        ref, 1024, *s["parity_fmap"], FLAGS.seed, tmp))
  except Exception as e:  # pylint: disable=broad-except  (ReferenceUnavailable or its import)
    results["reference_status"] = (f"reference not measured: {e}" if isinstance(
        e, ra.ReferenceUnavailable) else f"reference not measured: {type(e).__name__}: {e}")
    return None, {}, None
  results["reference"] = ra.describe_reference(ref.dir)
  results["reference_status"] = f"measured, from {ref.dir}"
  return ref.dir, weights, tmp


def _specs(kind: str, dtype: str | None, n: int | None, what: str, s: dict, base: dict,
           ref_dir: str | None, weights: dict) -> tuple[list[dict], list[tuple]]:
  """One job's worker specs and a (what, side, restarts) label per spec."""
  if kind == "jax":
    return [{**base, "kind": "jax", "restarts": n, "dtype": dtype, "remat": False,
             "micro_batches": FLAGS.micro_batches,
             "memory_budget_bytes": int(FLAGS.memory_budget_gb * 2**30) or None}], [
                 (what, "pulse-jax", n)]
  if kind == "reference":
    return [{**base, "kind": "reference", "restarts": b, "reference_dir": ref_dir,
             "reference_device": "auto"} for b in s["reference_batches"]], [
                 (f"reference batch {b}", "reference", b) for b in s["reference_batches"]]
  return [{**base, "kind": "parity", "resolution": 1024, "fmap_base": s["parity_fmap"][0],
           "fmap_max": s["parity_fmap"][1], "weights": weights["parity"],
           "steps": FLAGS.parity_steps, "reference_dir": ref_dir,
           "reference_device": "auto"}], [("parity", "parity", None)]


def main(argv):
  if FLAGS.worker_spec:
    worker_main(json.loads(FLAGS.worker_spec))
    return
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if FLAGS.from_json:
    with open(FLAGS.from_json) as f:
      results = json.load(f)
    results["targets"] = report.gpu_targets(results)
    stem = os.path.splitext(os.path.basename(FLAGS.from_json))[0]
    print("wrote " + ", ".join(_write(results, stem, results.get("tiny", False), final=True,
                                      out_dir=os.path.dirname(os.path.abspath(FLAGS.from_json)))))
    return
  t0 = time.monotonic()
  started = datetime.datetime.now(datetime.timezone.utc)
  (device,) = run_worker([{"kind": "probe"}], 300)
  if "error" in device:
    raise RuntimeError(f"the device probe failed: {device['error']}\n{device.get('stderr_tail')}")
  tiny = FLAGS.tiny if FLAGS.tiny is not None else device["platform"] == "cpu"
  s = _settings(tiny)
  deadline = t0 + s["budget_s"]
  dev_slug = re.sub(r"[^a-z0-9]+", "-", device["device_kind"].lower()).strip("-") + (
      "-tiny" if tiny else "")
  stem = FLAGS.name or f"gpu_{dev_slug}_{started.date().isoformat()}"
  print(f"device {device['platform']}:{device['device_kind']} x{device['device_count']}, "
        f"TF32 in use: {device['tf32_in_use']}; {'tiny' if tiny else 'full'} configuration, "
        f"budget {s['budget_s']:.0f} s", flush=True)

  machine = measure.machine_info()
  results = {"kind": "gpu_check", "command": " ".join(
      ["python -m experiments.gpu_check"] + [shlex.quote(a) for a in sys.argv[1:]]),
      "flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.modules[__name__])
                if f.name != "worker_spec"}, "started_utc": started.isoformat(), "tiny": tiny,
      "settings": s, "device_name": dev_slug, "device": device, "nvidia_smi": _nvidia_smi(),
      "machine": machine, "versions": measure.versions(), "runs": [], "skipped": [],
      "parity": None, "budget": {"budget_s": s["budget_s"]}}
  ref_dir, weights, tmp = _reference_setup(s, results)
  print(results["reference_status"], flush=True)

  base = {"resolution": s["resolution"], "fmap_base": s["fmap_base"], "fmap_max": s["fmap_max"],
          "lr_size": s["lr_size"], "schedule_steps": 100, "chunk_size": s["chunk_size"],
          "warmup_chunks": s["warmup_chunks"], "timed_chunks": s["timed_chunks"],
          "seed": FLAGS.seed, "weights": weights.get("run")}
  spent: dict = {}  # kind (and dtype) -> longest process seconds so far
  failed_at: dict = {}  # dtype -> smallest restart count that failed
  flops_f32: dict = {}  # resolution -> XLA's flops per restart-step (CPU roofline)
  for kind, dtype, n in _plan(s):
    what = {"jax": f"{report.variant_name((dtype, False))} x{n}", "reference":
            "reference batches " + ",".join(map(str, s["reference_batches"])),
            "parity": "parity"}[kind]
    if kind in ("reference", "parity") and ref_dir is None:
      continue  # said once in reference_status
    if kind == "jax" and n >= failed_at.get(dtype, math.inf):
      results["skipped"].append({"what": what, "reason": f"x{failed_at[dtype]} failed"})
      continue
    left = deadline - time.monotonic()
    need = spent.get((kind, dtype)) or spent.get(kind) or s["prior_s"][kind]
    if need > left:
      results["skipped"].append({"what": what, "reason": f"time budget: ~{need:.0f} s needed, "
                                                         f"{max(left, 0):.0f} s left"})
      print(f"skipped {what}: time budget ({max(left, 0):.0f} s left, ~{need:.0f} s needed)",
            flush=True)
      continue
    specs, labels = _specs(kind, dtype, n, what, s, base, ref_dir, weights)
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if kind == "parity" else None
    outs = run_worker(specs, left, env)
    for out, (item, side, count) in zip(outs, labels):
      if out.get("error", "").startswith(STOPPED):  # not a failure: not measured
        results["skipped"].append({"what": item, "reason": out["error"]})
        print(f"{item}: {out['error']}", flush=True)
        continue
      if side == "parity":
        results["parity"] = out
        print(report.parity_lines(out) if "search" in out or "error" in out else
              f"parity forward: max abs diff {out['forward']['max_abs_diff']:.3g}, output range "
              f"{out['forward']['range_reference']:.3g}", flush=True)
        continue
      out.update(variant=side if side == "reference" else item.rsplit(" ", 1)[0], side=side,
                 restarts=count, resolution=s["resolution"], dtype=dtype or "float32")
      if "error" not in out:
        if side == "pulse-jax" and dtype == "float32" and out.get("micro_batches") == 1:
          flops_f32.setdefault(s["resolution"], out.get("hlo_flops_per_restart_step"))
        _roofline(out, device, machine, flops_f32)
      elif side == "pulse-jax":
        failed_at[dtype] = min(n, failed_at.get(dtype, math.inf))
      results["runs"].append(out)
      print(report.progress_line(out), flush=True)
    for key in (kind, (kind, dtype)):
      spent[key] = max(spent.get(key, 0), outs[-1]["process_wall_s"])
    results["budget"]["used_s"] = time.monotonic() - t0
    _write(results, stem, tiny)
  if tmp:
    shutil.rmtree(tmp, ignore_errors=True)
  for r in results["runs"]:  # reference rows timed before a pulse-jax flop count was known
    if "error" not in r and "pct_of_roofline" not in r:
      _roofline(r, device, machine, flops_f32)
  results["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
  results["budget"]["used_s"] = time.monotonic() - t0
  results["targets"] = report.gpu_targets(results)
  paths = _write(results, stem, tiny, final=True)
  print("\n".join(report.gpu_table(results)), flush=True)
  for t in results["targets"]:
    print(f"target: {t['target']}: {t['status']} ({t['measured']})", flush=True)
  print(f"used {results['budget']['used_s']:.0f} of {s['budget_s']:.0f} s; wrote "
        + ", ".join(paths), flush=True)


def _write(results: dict, stem: str, tiny: bool, final: bool = False,
           out_dir: str | None = None) -> list[str]:
  """Writes the JSON and markdown (and, when final, the README block); returns the paths."""
  out_dir = out_dir or FLAGS.out_dir
  os.makedirs(out_dir, exist_ok=True)
  jpath, mpath = (os.path.join(out_dir, stem + ext) for ext in (".json", ".md"))
  with open(jpath, "w") as f:
    json.dump(results, f, indent=1, default=str)
  with open(mpath, "w") as f:
    f.write(report.gpu_markdown(results))
  paths = [jpath, mpath]
  readme = FLAGS.readme if FLAGS.readme is not None else (
      None if tiny else os.path.join(ROOT, "README.md"))
  if final and readme and readme.lower() != "none":
    rel = os.path.relpath(mpath, os.path.dirname(os.path.abspath(readme)))
    report.update_readme(readme, report.gpu_summary(results, rel), report.GPU_TABLE_START,
                         report.GPU_TABLE_END, heading="## GPU measurements")
    paths.append(readme)
  return paths


if __name__ == "__main__":
  app.run(main)
