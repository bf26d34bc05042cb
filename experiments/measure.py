"""One measurement each: the pulse-jax search, the reference search, and the machine.

Each `measure_*` function runs one configuration in the calling process and returns a plain
dict (JSON-ready). `benchmark.py` calls them in a fresh subprocess per configuration so that
peak memory (`ru_maxrss`) does not mix between configurations.

The measured work (both sides): N = restarts searches of one LR target (lr_size x lr_size,
factor = resolution / lr_size), the reference's default options (adam, lr 0.4,
linear1cycledrop over `schedule_steps`, loss 100*L2+0.05*GEOCROSS, 5 trainable noise layers, the
last layer's noise zero). One step = forward + backward to the latent and noise + update.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time

import numpy as np

RESULT_PREFIX = "BENCH_RESULT "


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def peak_rss_wrapper(module: str) -> str:
  """Python source for `python -c SOURCE ARGS`: runs `python -m <module> ARGS` and, at exit,
  writes that process's own peak RSS (VmHWM, kB) to the file $HWM_FILE. (A child's ru_maxrss
  would include its parent's RSS, which Linux carries across exec.)"""
  return f"""
import atexit, os, runpy, sys
def _hwm():
  with open("/proc/self/status") as f, open(os.environ["HWM_FILE"], "w") as out:
    out.write([l for l in f if l.startswith("VmHWM:")][0].split()[1])
atexit.register(_hwm)
sys.argv = [{module!r}] + sys.argv[1:]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


def current_rss_bytes() -> int:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def machine_info() -> dict:
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
          "load_avg": os.getloadavg()}
  try:
    with open("/proc/cpuinfo") as f:
      lines = f.read().splitlines()
    models = [l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")]
    mhz = [float(l.split(":", 1)[1]) for l in lines if l.startswith("cpu MHz")]
    flags = next((l for l in lines if l.startswith("flags")), "")
    info.update(cpu_model=models[0] if models else None, cpu_mhz=mhz[0] if mhz else None,
                avx2="avx2" in flags.split(), avx512f="avx512f" in flags.split())
  except OSError:
    pass
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
  except OSError:
    pass
  return info


def cpu_peak_gflops(info: dict) -> float | None:
  """Rough fp32 peak: cores x MHz x 32 flop/cycle (two 256-bit FMA pipes, AVX2); an estimate."""
  if not info.get("cpu_mhz") or not info.get("avx2"):
    return None
  per_cycle = 64 if info.get("avx512f") else 32
  return info["cpu_affinity"] * info["cpu_mhz"] * 1e-3 * per_cycle


def versions() -> dict:
  from importlib import metadata
  out = {"python": platform.python_version()}
  for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch", "pulse-jax"):
    try:
      out[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      out[pkg] = None
  return out


def _stats(wall: list[float], cpu: list[float], n: int) -> dict:
  wall_total = float(sum(wall))
  return {"step_wall_s": [round(t, 4) for t in wall], "step_cpu_s": [round(t, 4) for t in cpu],
          "median_step_s": float(np.median(wall)), "min_step_s": float(min(wall)),
          "restart_steps_per_s": n * len(wall) / wall_total,
          "cpu_s_per_restart_step": float(sum(cpu)) / (n * len(wall))}


# --------------------------------------------------------------------------------- pulse-jax


def jax_params(spec: dict):
  """Generator params: converted from the reference's random state dict (when `weights` is
  given, exercising weights_convert) or drawn here with the same N(0, 0.5^2) rule."""
  import jax
  import jax.numpy as jnp
  from pulse_jax.nets.stylegan1 import StyleGANConfig, synthesis_param_shapes
  cfg = StyleGANConfig(resolution=spec["resolution"], fmap_base=spec["fmap_base"],
                       fmap_max=spec["fmap_max"])
  if spec.get("weights"):
    from weights_convert.convert import convert_sources
    w = convert_sources(list(spec["weights"]), log=lambda s: None)
    chans = lambda c: [c.layer_channels(i) for i in range(c.num_layers)]
    if w.config.resolution != cfg.resolution or chans(w.config) != chans(cfg):
      raise ValueError(f"converted config {w.config} has other channels than requested {cfg}")
    return cfg, {"synthesis": w.params["synthesis"], "gaussian_fit": w.params["gaussian_fit"]}
  leaves, tree = jax.tree.flatten(synthesis_param_shapes(cfg))
  rng = np.random.default_rng(spec.get("seed", 0))  # numpy: no per-shape compile (seconds)
  normal = lambda shape: jnp.asarray(0.5 * rng.standard_normal(shape, np.float32))
  synth = jax.tree.unflatten(tree, [normal(l.shape) for l in leaves])
  fit = {"mean": normal((cfg.dlatent_size,)),
         "std": jnp.asarray(0.5 + rng.uniform(size=cfg.dlatent_size).astype(np.float32))}
  return cfg, {"synthesis": synth, "gaussian_fit": fit}


def make_problem(cfg, dtype: str, remat: bool, lr_size: int, schedule_steps: int,
                 chunk_size: int, seed: int = 0, micro_batches: int = 1):
  from pulse_jax.generators import Generator
  from pulse_jax.search.program import Problem
  from pulse_jax.search.config import SearchConfig
  scfg = SearchConfig(steps=schedule_steps, bad_noise_layers=str(cfg.num_layers - 1), seed=seed)
  return Problem(Generator("stylegan", cfg, dtype, remat), scfg, cfg.resolution // lr_size,
                 chunk_size, micro_batches)


def target_image(n: int, lr_size: int, seed: int = 0) -> np.ndarray:
  """One random LR target in [0, 1], [n, 3, lr, lr] (the same image for every restart)."""
  img = np.random.default_rng(seed).uniform(0.2, 0.8, (1, 3, lr_size, lr_size))
  return np.repeat(img.astype(np.float32), n, axis=0)


def measure_jax(spec: dict) -> dict:
  """Compile time, steady-state step time and memory of `program.run_chunk`.

  spec: resolution, fmap_base, fmap_max, restarts, dtype, remat, lr_size, schedule_steps,
  chunk_size, warmup_chunks, timed_chunks, weights (optional paths), seed, micro_batches
  (optional, default 1; must divide restarts; 0: the fewest that fit the device's memory, or
  `memory_budget_bytes` when given), memory_budget_bytes (optional). With 0 and a budget, the
  program `compile.choose_micro_batches` compiled (the one pulse_jax.run runs) is the one timed:
  no second compile; its compile time includes lowering.
  """
  import jax
  import jax.numpy as jnp
  from pulse_jax.search import program
  t_setup = time.perf_counter()
  cfg, params = jax_params(spec)
  n = spec["restarts"]
  groups = spec.get("micro_batches", 1)
  problem = make_problem(cfg, spec["dtype"], spec["remat"], spec["lr_size"],
                         spec["schedule_steps"], spec["chunk_size"], spec.get("seed", 0),
                         groups or 1)
  chosen, choose_s = None, None  # (compiled, compile s) of the automatically chosen program
  if groups == 0:  # the fewest that fit the device's memory, as pulse_jax.run --micro_batches=0
    from pulse_jax.runtime import compile as programs
    from pulse_jax.runtime import sharding
    mesh = sharding.restart_mesh(jax.devices()[:1])
    budget = spec.get("memory_budget_bytes") or programs.device_memory_budget(mesh)
    t = time.perf_counter()
    groups = programs.choose_micro_batches(
        problem.generator, params, problem.config, rows=n, lr_size=spec["lr_size"],
        chunk_size=spec["chunk_size"], mesh=mesh, with_mask=False, budget_bytes=budget,
        log=lambda s: None)
    choose_s = time.perf_counter() - t
    problem = dataclasses.replace(problem, micro_batches=groups)
    if budget is not None:
      # The choice compiled (and cached) the chunk program pulse_jax.run runs: time that one
      # instead of compiling the same search a second time (GPU compiles are slow).
      compiled = programs.compiled_chunk(
          problem.generator, params, problem.config, rows=n, lr_size=spec["lr_size"],
          chunk_size=spec["chunk_size"], micro_batches=groups, mesh=mesh)
      cache = programs._COMPILED  # pylint: disable=protected-access
      chosen = (compiled, next(v[1] for v in cache.values()
                               if isinstance(v, tuple) and v[0] is compiled))
  params = jax.device_put(params)
  ref = jnp.asarray(target_image(n, spec["lr_size"], spec.get("seed", 0)))
  state = program.init_state(problem, jnp.zeros((n,), jnp.int32), jnp.arange(n, dtype=jnp.int32))
  jax.block_until_ready(state)
  setup_s = time.perf_counter() - t_setup
  rss_before_compile = current_rss_bytes()

  if chosen is not None:  # its compile time includes lowering; inputs laid out as it expects
    (compiled, compile_s), lower_s = chosen, 0.0
    # the driver's chunk program runs on weights prepared once per search, plus the forward
    # model's (here empty) arrays
    weights = programs.prepare_program(problem.generator, mesh)(params)
    weights, state, ref, fwd = jax.device_put((weights, state, ref, {}),
                                              compiled.input_shardings[0])
    chunk = lambda state: compiled(weights, state, ref, fwd)
  else:
    t = time.perf_counter()
    lowered = program.run_chunk.lower(problem, params, state, ref)
    lower_s = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    chunk = lambda state: compiled(params, state, ref)
  mem = {}
  try:
    ma = compiled.memory_analysis()
    if ma is not None:
      mem = {k: int(getattr(ma, k)) for k in ("temp_size_in_bytes", "argument_size_in_bytes",
                                               "output_size_in_bytes", "alias_size_in_bytes",
                                               "generated_code_size_in_bytes") if hasattr(ma, k)}
  except Exception as e:  # not every backend implements it
    mem = {"error": str(e)}
  flops = None
  try:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    flops = float(ca.get("flops")) if ca and ca.get("flops") else None
  except Exception:
    pass
  rss_after_compile = peak_rss_bytes()

  def run():
    nonlocal state
    state, trace = chunk(state)
    jax.block_until_ready((state, trace))
    return trace

  t = time.perf_counter()
  for _ in range(spec["warmup_chunks"]):
    run()
  first_s = time.perf_counter() - t
  wall, cpu = [], []
  for _ in range(spec["timed_chunks"]):
    t, c = time.perf_counter(), cpu_seconds()
    trace = run()
    wall.append(time.perf_counter() - t)
    cpu.append(cpu_seconds() - c)
  steps_per_chunk = spec["chunk_size"]
  out = _stats([w / steps_per_chunk for w in wall for _ in range(steps_per_chunk)],
               [c / steps_per_chunk for c in cpu for _ in range(steps_per_chunk)], n)
  total = np.asarray(trace["TOTAL"])
  dev = jax.devices()[0]
  device_mem = None
  try:
    stats = dev.memory_stats()
    if stats:
      device_mem = {k: int(v) for k, v in stats.items() if "bytes" in k}
  except Exception:
    pass
  out.update(side="pulse-jax", micro_batches=groups, micro_batches_choice_s=choose_s,
             program="driver chunk" if chosen is not None else "program.run_chunk",
             setup_s=setup_s, lower_s=lower_s,
             compile_s=compile_s, warmup_s=first_s, compiled_memory=mem, hlo_flops_per_chunk=flops,
             # XLA's cost analysis counts a while loop's body once, not per trip: the chunk's
             # count is one step (plus the once-per-chunk weight preparation).
             hlo_flops_per_restart_step=(flops / n if flops else None),
             rss_before_compile_bytes=rss_before_compile, peak_rss_after_compile_bytes=
             rss_after_compile, peak_rss_bytes=peak_rss_bytes(), device_memory=device_mem,
             device=f"{dev.platform}:{dev.device_kind}", last_total_loss=float(total[-1].mean()),
             finite=bool(np.all(np.isfinite(total))))
  return out


# --------------------------------------------------------------------------------- reference


def measure_reference(spec: dict) -> dict:
  """The reference's `PULSE.forward` for warmup + timed steps on the same random weights.

  spec: as `measure_jax` plus reference_dir, reference_device, weights (the reference's
  state dict and Gaussian fit; made here when absent). One call of `PULSE.forward` with
  warmup + timed steps; its first `warmup` steps are not timed.
  """
  import tempfile
  from experiments import reference_adapter as ra
  t_setup = time.perf_counter()
  ref = ra.load_reference(spec["reference_dir"])
  torch = ref.torch
  device = ra.pick_device(torch, spec.get("reference_device", "auto"))
  flush = bool(spec.get("reference_flush_denormal", True))
  torch.set_flush_denormal(flush)  # XLA:CPU flushes subnormals too; they cost 10x+ on x86
  weights = spec.get("weights")
  if not weights:
    weights = ra.make_random_weights(ref, spec["resolution"], spec["fmap_base"], spec["fmap_max"],
                                     spec.get("seed", 0), tempfile.mkdtemp(prefix="pulse_bench_"))
  pulse = ra.build_pulse(ref, weights[0], weights[1], spec["resolution"], spec["fmap_base"],
                         spec["fmap_max"], device)
  n = spec["restarts"]
  ref_im = torch.from_numpy(target_image(n, spec["lr_size"], spec.get("seed", 0)))
  factor = spec["resolution"] // spec["lr_size"]
  warm = spec["warmup_chunks"] * spec["chunk_size"]
  timed = spec["timed_chunks"] * spec["chunk_size"]
  setup_s = time.perf_counter() - t_setup
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
  # `steps` is also the reference's LR-schedule horizon; the LR scales the update, not the cost.
  opts = ra.default_options(warm + timed)
  res = ra.run_search(ref, pulse, ref_im, opts, device, factor)
  out = _stats(res["step_wall_s"][warm:], res["step_cpu_s"][warm:], n)
  total = np.asarray(res["trace"]["TOTAL"])
  out.update(side="reference", setup_s=setup_s, compile_s=0.0,
             warmup_s=float(sum(res["step_wall_s"][:warm])), peak_rss_bytes=peak_rss_bytes(),
             device=device, torch_threads=torch.get_num_threads(), flush_denormal=flush,
             device_memory=({"peak_bytes_in_use": int(torch.cuda.max_memory_allocated())}
                            if device == "cuda" else None),
             last_total_loss=float(total[-1]) / n, finite=bool(np.all(np.isfinite(total))),
             reference=ra.describe_reference(ref.dir))
  return out


def measure_memory(spec: dict) -> dict:
  """Compile-only: XLA's buffer assignment of `run_chunk` for large restart counts.

  spec: resolution, fmap_base, fmap_max, lr_size, schedule_steps, chunk_size, seed, weights,
  variants [[dtype, remat], ...], restarts [N, ...], micro_batches_list [G, ...] (optional,
  default [1]). Nothing of size N is allocated.
  Returns {'rows': [{dtype, remat, restarts, micro_batches, temp/argument/output bytes,
  compile_s}]}.
  """
  import jax
  import jax.numpy as jnp
  from pulse_jax.search import program
  cfg, params = jax_params(spec)
  rows = []
  combos = [(d, r, n, g) for g in spec.get("micro_batches_list", [1])
            for d, r in spec["variants"] for n in spec["restarts"] if n % g == 0]
  for dtype, remat, n, groups in combos:
    problem = make_problem(cfg, dtype, remat, spec["lr_size"], spec["schedule_steps"],
                           spec["chunk_size"], spec.get("seed", 0), groups)
    state = jax.eval_shape(lambda: program.init_state(
        problem, jnp.zeros((n,), jnp.int32), jnp.arange(n, dtype=jnp.int32)))
    ref = jax.ShapeDtypeStruct((n, 3, spec["lr_size"], spec["lr_size"]), jnp.float32)
    t = time.perf_counter()
    ma = program.run_chunk.lower(problem, params, state, ref).compile().memory_analysis()
    rows.append({"dtype": dtype, "remat": remat, "restarts": n, "micro_batches": groups,
                 "compile_s": time.perf_counter() - t,
                 **{k: int(getattr(ma, k)) for k in ("temp_size_in_bytes",
                    "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes")}})
  dev = jax.devices()[0]
  return {"rows": rows, "device": f"{dev.platform}:{dev.device_kind}",
          "resolution": cfg.resolution}
