"""Subprocess for the scale-out tests: one tiny StyleGAN search on fake CPU devices.

  python tests/support/scale_worker.py --out=OUT.npz --devices=8 --meshes=1,2,8 [--images=2]
      [--restarts=3] [--steps=6] [--chunk=2] [--seed=0]
      [--coordinator=127.0.0.1:PORT --num_processes=2 --process_id=I]
      [--checkpoint_dir=DIR --checkpoint_every=K] [--die_at_step=S] [--hlo] [--micro_batches=G]
      [--eps=E --stop_within=K --stop_extra_steps=M] [--selection=l2|diverse]
      [--ilo --ilo_steps=N --ilo_layers=b4,b8]

Runs `loop.search_images` once per mesh size (the first k devices) and, in process 0,
writes the results as OUT.npz with keys '<k>/<field>'. --die_at_step SIGKILLs the process
(no clean-up) after the progress report of the first chunk that ends at or past S (after its
checkpoint). --ilo (with --ilo_steps, --ilo_layers: config fields; '' = the family's defaults)
adds ILO after the --steps latent steps; the worker then also saves 'ilo_moved_<layer>' [B, R]
and the kept activation's start values 'ilo.<layer>' [B, R, ...]. --hlo also writes the compiled chunk's HLO text of the largest mesh to OUT.hlo.txt.
XLA's CPU backend optimisation is turned off (several times faster compiles of these tiny
programs). The tests start it through `launch`, which bounds and always cleans up the processes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import time
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))  # tests/support/ -> the checkout


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(*arg_lists: list[str], timeout: float = 300) -> list[tuple[int, str]]:
  """Runs one worker per argument list at once; [(return code, stderr tail)] in order.

  Every process is killed if they are not all done within `timeout` seconds (then the test
  fails with their output), and always reaped.
  """
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)
  procs = [subprocess.Popen([sys.executable, WORKER, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for args in arg_lists]
  outs = []
  try:
    for p in procs:
      try:
        out, _ = p.communicate(timeout=timeout)
      except subprocess.TimeoutExpired:
        for q in procs:
          q.kill()
        raise AssertionError(f"worker timed out after {timeout}s: "
                             + "\n".join(q.communicate()[0][-3000:] for q in procs))
      outs.append((p.returncode, out[-3000:]))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return outs


def run_ok(*arg_lists: list[str], timeout: float = 300) -> None:
  for rc, out in launch(*arg_lists, timeout=timeout):
    assert rc == 0, f"worker failed (exit {rc}):\n{out}"


def results(path, mesh_size: int) -> dict:
  """The fields a worker saved for one mesh size."""
  with np.load(path) as d:
    return {k.split("/", 1)[1]: d[k] for k in d.files if k.startswith(f"{mesh_size}/")}


# Tolerance between runs on different device or process counts: the same restarts in
# differently sized per-device batches give float32 sums in another order (measured: 4e-5 on
# losses ~15 after 6 steps, 3.5e-5 on pixels). Same layout: bit-identical.
RTOL, ATOL = 1e-4, 2e-4


def assert_same(a: dict, b: dict, exact: bool = False, restarts: slice = slice(None)) -> None:
  """Same search results (per-restart losses, steps, images, latents, trace; with ILO its
  moved fractions and kept activations)."""
  tol = dict(rtol=0, atol=0) if exact else dict(rtol=RTOL, atol=ATOL)
  for k in ("total", "l2", "min_l2", "best_step", "term_L2", "term_GEOCROSS"):
    np.testing.assert_allclose(a[k][:, restarts], b[k][:, restarts], **tol, err_msg=k)
  for k in (k for k in a if k.startswith("trace_")):
    np.testing.assert_allclose(a[k][:, :, restarts], b[k][:, :, restarts], **tol, err_msg=k)
  assert sorted(k for k in a if k.startswith("ilo")) == sorted(k for k in b if k.startswith("ilo"))
  for k in (k for k in a if k.startswith("ilo_moved_")):   # ILO: [B, R] per layer
    np.testing.assert_allclose(a[k][:, restarts], b[k][:, restarts], **tol, err_msg=k)
  if restarts == slice(None):  # the best images, in ranking order
    np.testing.assert_array_equal(a["ranking"], b["ranking"])
    for k in ("hr", "lr", "latent", *(k for k in a if k.startswith("ilo."))):
      np.testing.assert_allclose(a[k], b[k], **tol, err_msg=k)


def tiny_problem(images: int, steps: int, seed: int):
  """(generator, params, ref [B, 3, 4, 4], config): a 16 px StyleGAN with noise layers."""
  import jax
  from pulse_jax.generators import Generator
  from pulse_jax.search.config import SearchConfig
  from pulse_jax.nets.stylegan1 import StyleGANConfig, synthesis_param_shapes

  cfg = StyleGANConfig(resolution=16, fmap_base=64, fmap_max=16)
  rng = np.random.RandomState(1)  # numpy draws: no eager jax ops to compile
  synth = jax.tree.map(lambda s: (0.5 * rng.randn(*s.shape)).astype(np.float32),
                       synthesis_param_shapes(cfg))
  params = {"synthesis": synth,
            "gaussian_fit": {"mean": np.zeros(cfg.dlatent_size, np.float32),
                             "std": np.ones(cfg.dlatent_size, np.float32)}}
  ref = np.random.RandomState(0).rand(images, 3, 4, 4).astype(np.float32)
  config = SearchConfig(steps=steps, seed=seed, bad_noise_layers="5",
                        num_trainable_noise_layers=2)  # layers: 2 trainable, 3 fixed, 1 zero
  return Generator("stylegan", cfg), params, ref, config


def main(argv=None):
  """The worker (run as a script)."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", required=True)
  ap.add_argument("--devices", type=int, default=1)
  ap.add_argument("--meshes", default="")
  ap.add_argument("--images", type=int, default=2)
  ap.add_argument("--restarts", type=int, default=3)
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--chunk", type=int, default=2)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--coordinator")
  ap.add_argument("--num_processes", type=int)
  ap.add_argument("--process_id", type=int)
  ap.add_argument("--checkpoint_dir")
  ap.add_argument("--checkpoint_every", type=int, default=0)
  ap.add_argument("--die_at_step", type=int, default=0)
  ap.add_argument("--hlo", action="store_true")
  ap.add_argument("--micro_batches", type=int, default=1)
  ap.add_argument("--selection", default="l2")  # hr / latent in ranking order
  ap.add_argument("--eps", type=float, default=None)
  ap.add_argument("--stop_within", type=int, default=0)
  ap.add_argument("--stop_extra_steps", type=int, default=0)
  ap.add_argument("--ilo", action="store_true")
  ap.add_argument("--ilo_steps", type=int, default=100)
  ap.add_argument("--ilo_layers", default="")
  a = ap.parse_args(argv)

  import jax
  jax.config.update("jax_num_cpu_devices", a.devices)
  from pulse_jax.runtime import distributed
  distributed.initialize(a.coordinator, a.num_processes, a.process_id)
  from pulse_jax.runtime import compile, loop
  from pulse_jax.runtime import sharding

  generator, params, ref, config = tiny_problem(a.images, a.steps, a.seed)
  config = dataclasses.replace(config, stop_within=a.stop_within,
                               stop_extra_steps=a.stop_extra_steps, ilo=a.ilo,
                               ilo_steps=a.ilo_steps, ilo_layers=a.ilo_layers,
                               **({"eps": a.eps} if a.eps is not None else {}))

  def progress(info):
    if a.die_at_step and info.step >= a.die_at_step:
      # Checkpoints are written in the background: die once the one at this step is on disk
      # (orbax renames its temporary folder into place when the write is complete).
      final = os.path.join(a.checkpoint_dir or "", str(info.step))
      for _ in range(600):
        if not a.checkpoint_dir or os.path.isdir(final):
          break
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)

  out = {}
  meshes = [int(k) for k in a.meshes.split(",")] if a.meshes else [len(jax.devices())]
  for k in meshes:
    mesh = sharding.restart_mesh(jax.devices()[:k])
    r = loop.search_images(generator, params, ref, config=config, restarts=a.restarts,
                             chunk_size=a.chunk, micro_batches=a.micro_batches, mesh=mesh,
                             keep=a.restarts, progress=progress, selection=a.selection,
                             checkpoint_dir=a.checkpoint_dir, checkpoint_every=a.checkpoint_every)
    fields = {"total": r.total, "l2": r.l2, "min_l2": r.min_l2, "best_step": r.best_step,
              "ranking": r.ranking, "hr": r.hr, "lr": r.lr, "latent": r.start_values["latent"],
              "padded_rows": r.padded_rows, "num_devices": r.num_devices,
              "num_processes": r.num_processes, "resumed_from_step": r.resumed_from_step,
              "steps_run": r.steps_run, "ended_early": r.ended_early,
              "first_within_step": r.first_within_step, "selected": r.selected,
              "within_eps": r.within_eps, "spread_count": r.spread_count,
              "restart_steps": r.timings["restart_steps"], "batch_steps": r.timings["steps"]}
    fields.update({f"trace_{n}": v for n, v in r.trace.items()})
    fields.update({f"term_{n}": v for n, v in r.terms.items()})
    fields.update({f"ilo_moved_{n}": v for n, v in r.ilo_moved.items()})
    fields.update({n: v for n, v in r.start_values.items() if n.startswith("ilo.")})
    out.update({f"{k}/{n}": np.asarray(v) for n, v in fields.items()})
  if a.hlo:  # the chunk as search_images compiled it (cached), and a control that communicates
    mesh = sharding.restart_mesh(jax.devices()[:meshes[-1]])
    compiled = compile.compiled_chunk(generator, params, config, rows=a.images * a.restarts,
                                     lr_size=ref.shape[-1], chunk_size=a.chunk,
                                     micro_batches=a.micro_batches, mesh=mesh)
    rows = jax.ShapeDtypeStruct((len(mesh.devices.flat) * 2,), np.float32,
                                sharding=sharding.rows_sharding(mesh))
    control = jax.jit(lambda x: x.sum()).lower(rows).compile()
    if distributed.is_writer():
      with open(a.out + ".hlo.txt", "w") as f:
        f.write(compiled.as_text())
      with open(a.out + ".control.hlo.txt", "w") as f:
        f.write(control.as_text())
  if distributed.is_writer():
    np.savez(a.out, **out)


if __name__ == "__main__":
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()
  main()
