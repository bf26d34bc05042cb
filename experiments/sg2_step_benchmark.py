"""One StyleGAN2 search step: pulse-jax vs NVIDIA's PyTorch networks, same random weights.

  python -m experiments.sg2_step_benchmark --nvidia_dir=/path/to/stylegan3   # NVlabs checkout

The work (both sides, one process, one after the other): R restarts of PULSE's search step on
a StyleGAN2 generator (default: config-F at 1024, as NVIDIA's released FFHQ/MetFaces pickles:
channel_base 32768, channel_max 512, 8 mapping layers, conv_clamp 256, num_fp16_res 4, which
both sides run in float32 on the CPU) with random weights. One step = the prior (W+ =
lrelu(x * std + mean)), the synthesis with 17 noise maps (5 trainable, the last zero, the rest
fixed), the reference's bicubic down-sampling, 100 * L2 + 0.05 * GEOCROSS, the backward pass
to the latent and the trainable noise, an Adam update and the projection onto the spheres.

  pulse-jax: the search program `pulse_jax.run` runs (`program.run_chunk`, chunks of
    --chunk_size steps); compile time apart.
  NVIDIA: the same step written in torch around NVIDIA's own `SynthesisNetwork`
    (training/networks_stylegan2.py of the --nvidia_dir checkout, imported at run time; its CPU
    reference ops). The noise maps are fed as its `noise_const` buffers with noise_mode='const'
    (NVIDIA's API has no noise input). A constant learning rate (the schedule costs nothing).

Reported: restart-steps/s of each side, best of --rounds timed rounds of --steps steps, and
the parity of one forward on the same weights (synthesis from the same W+ with the model's
const noise, and the mapping from the same z): max |pulse-jax - NVIDIA| / output range.
Without --nvidia_dir (or torch) only the pulse-jax side runs. Writes
experiments/results/sg2_step_<platform>_<date>.{json,md} (--out_dir, --tag).
"""
from __future__ import annotations

import datetime
import importlib
import json
import math
import os
import sys
import time
import types

import numpy as np
from absl import app, flags

from experiments import measure

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The flags of this script (defined only when it runs as a script, so that importing it
  next to experiments.benchmark defines no clashing flags)."""
  flags.DEFINE_string("nvidia_dir", None, "Checkout of NVlabs/stylegan3 (or stylegan2-ada-pytorch) "
                      "whose training/networks_stylegan2.py is imported (never copied). None: "
                      "measure pulse-jax only.")
  flags.DEFINE_integer("resolution", 1024, "Generator resolution.")
  flags.DEFINE_integer("channel_base", 32768, "StyleGAN2 channel_base (32768: config-F).")
  flags.DEFINE_integer("channel_max", 512, "StyleGAN2 channel_max (512: config-F).")
  flags.DEFINE_integer("restarts", 1, "Restarts per step (the batch).")
  flags.DEFINE_integer("lr_size", 32, "LR target size (factor = resolution / lr_size).")
  flags.DEFINE_integer("steps", 2, "Steps per timed round (pulse-jax: one chunk of this many).")
  flags.DEFINE_integer("rounds", 2, "Timed rounds per side; the best is reported.")
  flags.DEFINE_integer("seed", 0, "Seed of the random weights, target and start values.")
  flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "results"),
                      "Where the .json and .md results go ('' : not written).")
  flags.DEFINE_string("tag", None, "File name stem (default sg2_step_<platform>_<date>).")
  flags.DEFINE_multi_string("note", [], "A line for the results' notes (repeatable).")


NOISE_TRAINABLE = 5  # the reference's default: the first 5 noise layers are optimised


# ----------------------------------------------------------------------------- weights

def sg2_config(resolution: int, channel_base: int, channel_max: int):
  from pulse_jax.nets.stylegan2 import Stylegan2Config
  return Stylegan2Config(img_resolution=resolution, channel_base=channel_base,
                         channel_max=channel_max, mapping_layers=8, num_fp16_res=4,
                         conv_clamp=256)


def random_params(config, seed: int) -> dict:
  """Random pulse-jax parameters (numpy, float32): NVIDIA's initialisation (unit-normal
  weights, / lr_multiplier in the mapping, affine biases 1) with non-zero noise strengths,
  biases and w_avg, so that no term is idle; plus a random Gaussian fit (the prior)."""
  import jax
  from pulse_jax.nets import stylegan2 as net
  rng = np.random.default_rng(seed)
  lr = config.mapping_lr_multiplier

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    shape = leaf.shape
    if name.endswith("['noise_strength']"):
      return rng.uniform(0.05, 0.2, shape).astype(np.float32)
    if name.endswith("['w_avg']"):
      return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if "['affine']" in name and name.endswith("['bias']"):
      return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith("['bias']"):
      return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    scale = 1.0 / lr if name.startswith("['mapping']") and name.endswith("['kernel']") else 1.0
    return (scale * rng.standard_normal(shape)).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(draw, net.param_shapes(config))
  params["gaussian_fit"] = {
      "mean": (0.5 * rng.standard_normal(config.w_dim)).astype(np.float32),
      "std": (0.5 + rng.uniform(size=config.w_dim)).astype(np.float32)}
  return params


_INVERSE = {"copy": lambda a: a, "transpose": lambda a: a.T,
            "oihw_to_hwio": lambda a: a.transpose(3, 2, 0, 1),
            "chw_to_hwc": lambda a: a.transpose(2, 0, 1)}


def torch_state(config, params: dict) -> dict:
  """pulse-jax params -> NVIDIA's state-dict names and layouts (the converter's name table
  run backwards); filter buffers are left out (the module keeps its own)."""
  from weights_convert.tables import stylegan2 as tables
  out = {}
  for e in tables.torch_table(config):
    if e.transform == tables.CHECK_FILTER:
      continue
    node = params
    for k in e.dest:
      node = node[k]
    out[e.source] = np.array(_INVERSE[e.transform](np.asarray(node)), order="C")  # keeps 0-d
  return out


def target_image(n: int, lr_size: int, seed: int) -> np.ndarray:
  return measure.target_image(n, lr_size, seed)


def start_values(config, n: int, seed: int) -> dict:
  """Start latent [n, num_ws, w_dim] and unit noise maps [n, 1, r, r] (both sides)."""
  from pulse_jax.nets import stylegan2 as net
  rng = np.random.default_rng(seed + 1)
  latent = rng.standard_normal((n, config.num_ws, config.w_dim)).astype(np.float32)
  noise = [rng.standard_normal((n,) + s).astype(np.float32) for s in net.noise_shapes(config)]
  noise[-1][:] = 0.0  # the last layer is zero (the reference's bad noise layer)
  return {"latent": latent, "noise": noise}


# ----------------------------------------------------------------------------- pulse-jax

def jax_side(config, params: dict, n: int, lr_size: int, steps: int, rounds: int,
             seed: int) -> dict:
  """Compile, warm up one chunk, then `rounds` timed chunks of `steps` steps."""
  import jax
  import jax.numpy as jnp
  from pulse_jax.search import program
  from pulse_jax.generators import Generator
  from pulse_jax.search.config import SearchConfig
  g = Generator("stylegan2", config)
  scfg = SearchConfig(steps=steps * (rounds + 1), bad_noise_layers=str(g.num_noise_layers - 1),
                      num_trainable_noise_layers=NOISE_TRAINABLE, seed=seed)
  problem = program.Problem(g, scfg, config.img_resolution // lr_size, chunk_size=steps)
  p = jax.device_put({k: params[k] for k in ("synthesis", "gaussian_fit")})
  ref = jnp.asarray(target_image(n, lr_size, seed))
  sv = start_values(config, n, seed)
  start = {"latent": jnp.asarray(sv["latent"]),
           "noise": {str(i): jnp.asarray(a) for i, a in enumerate(sv["noise"])}}
  state = program.init_state(problem, jnp.zeros((n,), jnp.int32), jnp.arange(n, dtype=jnp.int32),
                            start)
  t = time.perf_counter()
  compiled = program.run_chunk.lower(problem, p, state, ref).compile()
  compile_s = time.perf_counter() - t

  def chunk():
    nonlocal state
    t0, c0 = time.perf_counter(), measure.cpu_seconds()
    state, trace = compiled(p, state, ref)
    jax.block_until_ready((state, trace))
    return time.perf_counter() - t0, measure.cpu_seconds() - c0, trace

  warm_s, _, _ = chunk()
  walls, cpus, losses = [], [], []
  for _ in range(rounds):
    w, c, trace = chunk()
    walls.append(w)
    cpus.append(c)
    losses.append(float(np.asarray(trace["TOTAL"])[-1].mean()))
  best = min(walls)
  return {"side": "pulse-jax", "compile_s": compile_s, "warmup_s": warm_s,
          "round_wall_s": walls, "round_cpu_s": cpus, "steps_per_round": steps,
          "restart_steps_per_s": n * steps / best, "best_step_s": best / steps,
          "last_total_loss": losses[-1], "finite": bool(np.all(np.isfinite(losses))),
          "device": str(jax.devices()[0])}


def jax_forward(config, params: dict, ws: np.ndarray, z: np.ndarray) -> tuple:
  """pulse-jax's synthesis (const noise) of ws and mapping of z, numpy float32."""
  import jax
  import jax.numpy as jnp
  from pulse_jax.nets import stylegan2 as net
  synth = jax.jit(lambda p, w: net.synthesize(p, config, w, noise_mode="const"))
  mapping = jax.jit(lambda p, z: net.mapping(p, config, z))
  img = np.asarray(synth(params["synthesis"], jnp.asarray(ws)))
  w = np.asarray(mapping(params["mapping"], jnp.asarray(z)))
  return img, w


# ----------------------------------------------------------------------------- NVIDIA

def import_nvidia(nvidia_dir: str):
  """NVIDIA's `training.networks_stylegan2` from a checkout (sys.path, nothing copied).

  Sets OMP_WAIT_POLICY=PASSIVE (unless set) before torch starts its OpenMP threads: on a CPU
  shared with other processes, torch's spinning OpenMP barriers made a 32 px step 100x
  slower (1.2 s instead of 0.01 s, measured here); XLA's thread pool does not spin so."""
  if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  import torch  # noqa: F401  (ImportError: reported by the caller)
  path = os.path.abspath(nvidia_dir)
  if not os.path.isfile(os.path.join(path, "training", "networks_stylegan2.py")):
    raise FileNotFoundError(f"--nvidia_dir={nvidia_dir}: no training/networks_stylegan2.py "
                            "(expected a checkout of NVlabs/stylegan3 or stylegan2-ada-pytorch).")
  try:  # its torch_utils imports pkg_resources.parse_version, gone from recent setuptools
    importlib.import_module("pkg_resources")
  except ImportError:
    from packaging.version import parse
    sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
  if path not in sys.path:
    sys.path.insert(0, path)
  return importlib.import_module("training.networks_stylegan2")


def nvidia_generator(networks, config, params: dict):
  import torch
  g = networks.Generator(z_dim=config.z_dim, c_dim=config.c_dim, w_dim=config.w_dim,
                         img_resolution=config.img_resolution, img_channels=config.img_channels,
                         mapping_kwargs={"num_layers": config.mapping_layers},
                         channel_base=config.channel_base, channel_max=config.channel_max,
                         num_fp16_res=config.num_fp16_res, conv_clamp=config.conv_clamp)
  sd = g.state_dict()
  mine = torch_state(config, params)
  missing = sorted(set(sd) - set(mine) - {k for k in sd if k.endswith("resample_filter")})
  if missing or set(mine) - set(sd):
    raise ValueError(f"state dict names differ: missing {missing[:5]}, "
                     f"extra {sorted(set(mine) - set(sd))[:5]}")
  sd.update({k: torch.from_numpy(v.copy()).reshape(sd[k].shape) for k, v in mine.items()})
  g.load_state_dict(sd)
  return g.eval().requires_grad_(False)


def _noise_layers(g):
  """NVIDIA's synthesis layers with noise, in pulse-jax's noise order (b4.conv1, b8.conv0..)."""
  out = []
  for r in g.synthesis.block_resolutions:
    block = getattr(g.synthesis, f"b{r}")
    out += [block.conv1] if r == 4 else [block.conv0, block.conv1]
  return out


def torch_geocross(torch, w):
  if w.shape[1] == 1:
    return torch.zeros(w.shape[0])
  x, y = w[:, None, :, :], w[:, :, None, :]
  nrm = lambda a: torch.sqrt((a * a).sum(-1) + 1e-9)
  d = 2.0 * torch.atan2(nrm(x - y), nrm(x + y))
  return (d * d * 512.0).mean(dim=(-2, -1)) / 8.0


def nvidia_side(g, config, params: dict, n: int, lr_size: int, steps: int, rounds: int,
                seed: int, eps: float = 2e-3, learning_rate: float = 0.4) -> dict:
  """The same PULSE step in torch around NVIDIA's synthesis: one warm-up step, then `rounds`
  timed rounds of `steps` steps."""
  import torch
  from pulse_jax.forward.bicubic import downsample_matrix
  factor = config.img_resolution // lr_size
  m = torch.from_numpy(np.asarray(downsample_matrix(config.img_resolution, factor), np.float32))
  ref = torch.from_numpy(target_image(n, lr_size, seed))
  fit = params["gaussian_fit"]
  mean, std = torch.from_numpy(fit["mean"]), torch.from_numpy(fit["std"])
  sv = start_values(config, n, seed)
  latent = torch.from_numpy(sv["latent"]).requires_grad_(True)
  noise = [torch.from_numpy(a) for a in sv["noise"]]
  for a in noise[:NOISE_TRAINABLE]:
    a.requires_grad_(True)
  trainable = [latent] + noise[:NOISE_TRAINABLE]
  layers = _noise_layers(g)
  for layer, a in zip(layers, noise):  # NVIDIA's const noise = noise_const * noise_strength
    layer.noise_const = a
  radii = [torch.sqrt((v.detach() ** 2).sum(dim=tuple(range(2, v.ndim)), keepdim=True) + 1e-9)
           for v in trainable]
  opt = torch.optim.Adam(trainable, lr=learning_rate)

  def step():
    opt.zero_grad(set_to_none=True)
    u = latent * std + mean
    w = torch.where(u >= 0, u, u * 0.2) * math.sqrt(2.0)
    img = g.synthesis(w, noise_mode="const")
    hr = (img + 1.0) / 2.0
    lr = m @ hr @ m.T
    l2 = torch.clamp(((lr - ref) ** 2).mean(dim=(1, 2, 3)), min=eps)
    loss = (100.0 * l2 + 0.05 * torch_geocross(torch, w)).sum()
    loss.backward()
    opt.step()
    with torch.no_grad():
      for v, r in zip(trainable, radii):
        v.mul_(r / torch.sqrt((v ** 2).sum(dim=tuple(range(2, v.ndim)), keepdim=True) + 1e-9))
    return float(loss.detach()) / n

  t = time.perf_counter()
  step()
  warm_s = time.perf_counter() - t
  walls, cpus, last = [], [], None
  for _ in range(rounds):
    t0, c0 = time.perf_counter(), measure.cpu_seconds()
    for _ in range(steps):
      last = step()
    walls.append(time.perf_counter() - t0)
    cpus.append(measure.cpu_seconds() - c0)
  best = min(walls)
  return {"side": "NVIDIA (torch)", "compile_s": 0.0, "warmup_s": warm_s,
          "round_wall_s": walls, "round_cpu_s": cpus, "steps_per_round": steps,
          "restart_steps_per_s": n * steps / best, "best_step_s": best / steps,
          "last_total_loss": last, "finite": bool(np.isfinite(last)),
          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def nvidia_forward(g, ws: np.ndarray, z: np.ndarray) -> tuple:
  import torch
  for layer in _noise_layers(g):  # the model's own maps again (the step replaced them)
    layer.noise_const = layer._pulse_const  # pylint: disable=protected-access
  with torch.no_grad():
    img = g.synthesis(torch.from_numpy(ws.copy()), noise_mode="const").numpy()
    w = g.mapping(torch.from_numpy(z.copy()), None).numpy()
  return img, w


def parity(a: np.ndarray, b: np.ndarray) -> dict:
  diff = float(np.abs(a - b).max())
  rng = float(b.max() - b.min())
  return {"max_abs_diff": diff, "output_range": rng, "relative": diff / rng if rng else None}


# ----------------------------------------------------------------------------- run

def run(nvidia_dir: str | None = None, resolution: int = 1024, channel_base: int = 32768,
        channel_max: int = 512, restarts: int = 1, lr_size: int = 32, steps: int = 2,
        rounds: int = 2, seed: int = 0, log=print) -> dict:
  """Both sides (NVIDIA's when `nvidia_dir` is given and torch imports) and the parity."""
  import jax.numpy as jnp
  from pulse_jax.nets import stylegan2 as net
  config = sg2_config(resolution, channel_base, channel_max)
  params = random_params(config, seed)
  rng = np.random.default_rng(seed + 2)
  z = rng.standard_normal((1, config.z_dim)).astype(np.float32)
  x = rng.standard_normal((1, config.num_ws, config.w_dim)).astype(np.float32)
  ws = np.asarray(net.pre_to_w(jnp.asarray(x * params["gaussian_fit"]["std"]
                                           + params["gaussian_fit"]["mean"])))
  spec = {"resolution": resolution, "channel_base": channel_base, "channel_max": channel_max,
          "mapping_layers": config.mapping_layers, "num_fp16_res": config.num_fp16_res,
          "conv_clamp": config.conv_clamp, "restarts": restarts, "lr_size": lr_size,
          "steps_per_round": steps, "rounds": rounds, "seed": seed,
          "noise_layers": len(net.noise_shapes(config)), "trainable_noise_layers": NOISE_TRAINABLE,
          "parameters": int(sum(np.size(a) for k in ("mapping", "synthesis")
                                for a in _leaves(params[k])))}
  out = {"spec": spec, "machine": measure.machine_info(), "versions": measure.versions(),
         "date": datetime.date.today().isoformat()}
  log(f"pulse-jax: {resolution} px, {spec['parameters']:,} parameters, {restarts} restart(s)")
  out["pulse_jax"] = jax_side(config, params, restarts, lr_size, steps, rounds, seed)
  log(f"  {out['pulse_jax']['restart_steps_per_s']:.4f} restart-steps/s "
      f"(compile {out['pulse_jax']['compile_s']:.1f} s)")
  img_j, w_j = jax_forward(config, params, ws, z)
  out["nvidia"] = None
  if nvidia_dir:
    try:
      networks = import_nvidia(nvidia_dir)
    except ImportError as e:
      out["nvidia_skipped"] = f"NVIDIA's code or torch does not import: {e}"
      log(out["nvidia_skipped"])
      return out
    import torch
    torch.set_flush_denormal(True)  # as XLA:CPU; subnormals cost 10x+ on x86
    g = nvidia_generator(networks, config, params)
    for layer in _noise_layers(g):
      layer._pulse_const = layer.noise_const  # pylint: disable=protected-access
    out["nvidia_dir"] = os.path.abspath(nvidia_dir)
    log(f"NVIDIA: {networks.__file__}")
    out["nvidia"] = nvidia_side(g, config, params, restarts, lr_size, steps, rounds, seed)
    log(f"  {out['nvidia']['restart_steps_per_s']:.4f} restart-steps/s")
    img_t, w_t = nvidia_forward(g, ws, z)
    out["parity"] = {"synthesis_const_noise": parity(img_j, img_t),
                     "mapping": parity(w_j, w_t)}
    out["speedup"] = (out["pulse_jax"]["restart_steps_per_s"]
                      / out["nvidia"]["restart_steps_per_s"])
    log(f"  parity: synthesis {out['parity']['synthesis_const_noise']['relative']:.2e}, "
        f"mapping {out['parity']['mapping']['relative']:.2e} (max |diff| / range); pulse-jax "
        f"{out['speedup']:.2f}x NVIDIA")
  else:
    out["nvidia_skipped"] = "no --nvidia_dir"
  return out


def _leaves(tree):
  import jax
  return jax.tree.leaves(tree)


def markdown(r: dict) -> str:
  s, j, t = r["spec"], r["pulse_jax"], r.get("nvidia")
  m = r["machine"]
  lines = [f"# StyleGAN2 search step, pulse-jax vs NVIDIA ({r['date']})", "",
           f"`python -m experiments.sg2_step_benchmark` on {m.get('cpu_model')} "
           f"({m.get('cpu_affinity')} cores usable). SG2 config-F layout at {s['resolution']} px "
           f"(channel_base {s['channel_base']}, channel_max {s['channel_max']}, "
           f"{s['mapping_layers']} mapping layers, conv_clamp {s['conv_clamp']}, "
           f"{s['parameters']:,} parameters), random weights, {s['restarts']} restart(s), "
           f"LR {s['lr_size']}x{s['lr_size']}, {s['noise_layers']} noise layers "
           f"({s['trainable_noise_layers']} trainable, the last zero). Best of {s['rounds']} "
           f"rounds of {s['steps_per_round']} steps per side, both in one process.", "",
           "| side | restart-steps/s | best step (s) | rounds (s) | compile (s) | warm-up (s) |",
           "|---|---|---|---|---|---|"]
  for side in (j, t):
    if side:
      lines.append(f"| {side['side']} | {side['restart_steps_per_s']:.4f} | "
                   f"{side['best_step_s']:.2f} | "
                   f"{', '.join(f'{w:.1f}' for w in side['round_wall_s'])} | "
                   f"{side['compile_s']:.1f} | {side['warmup_s']:.1f} |")
  if t:
    p = r["parity"]
    lines += ["", f"pulse-jax / NVIDIA: **{r['speedup']:.2f}x** restart-steps/s.", "",
              "Parity of one forward on the same weights (max |pulse-jax - NVIDIA| / output "
              "range, float32 both):", "",
              f"- synthesis (same W+, the model's const noise): "
              f"{p['synthesis_const_noise']['max_abs_diff']:.3g} / "
              f"{p['synthesis_const_noise']['output_range']:.3g} = "
              f"{p['synthesis_const_noise']['relative']:.2e}",
              f"- mapping (same z): {p['mapping']['max_abs_diff']:.3g} / "
              f"{p['mapping']['output_range']:.3g} = {p['mapping']['relative']:.2e}"]
    lines += ["", f"NVIDIA's code: {r.get('nvidia_dir')} (imported at run time), torch "
              f"{t.get('torch')}, {t.get('torch_threads')} threads, flush-denormal on, "
              f"OMP_WAIT_POLICY={t.get('omp_wait_policy')}. Machine load average at the "
              f"start: {m.get('load_avg')} (a CPU shared with other jobs)."]
  else:
    lines += ["", f"NVIDIA side not run: {r.get('nvidia_skipped')}."]
  lines += [f"\n{note}" for note in r.get("notes", [])]
  lines += ["", f"Versions: {json.dumps(r['versions'])}", ""]
  return "\n".join(lines)


def write(r: dict, out_dir: str, tag: str | None) -> list[str]:
  os.makedirs(out_dir, exist_ok=True)
  stem = tag or f"sg2_step_{'cpu' if 'cpu' in r['pulse_jax']['device'].lower() else 'gpu'}_{r['date']}"
  paths = [os.path.join(out_dir, stem + ".json"), os.path.join(out_dir, stem + ".md")]
  with open(paths[0], "w") as f:
    json.dump(r, f, indent=1, default=float)
  with open(paths[1], "w") as f:
    f.write(markdown(r))
  return paths


def main(argv):
  del argv
  r = run(FLAGS.nvidia_dir, FLAGS.resolution, FLAGS.channel_base, FLAGS.channel_max,
          FLAGS.restarts, FLAGS.lr_size, FLAGS.steps, FLAGS.rounds, FLAGS.seed)
  r["notes"] = list(FLAGS.note)
  if FLAGS.out_dir:
    for p in write(r, FLAGS.out_dir, FLAGS.tag):
      print(f"wrote {p}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
