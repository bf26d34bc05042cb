"""Runs the PyTorch reference of PULSE (github adamian98/pulse) on random weights, in memory.

The reference is a checkout given at run time (`--reference_dir`); nothing of it is copied into
this project. Its own `PULSE.forward` loop is what runs and is timed. `PULSE.__init__` downloads
weights, so the object is made with `object.__new__` and given a `G_synthesis` with random
(seeded) weights of the requested architecture.

Patches applied in memory while the reference runs (nothing else is changed):
  - `device='cuda'` in `torch.randn` / `torch.zeros` -> the chosen device (CPU runs), and every
    tensor `torch.randn` returns is recorded, so that pulse-jax can start from the same values;
  - `nn.Module.cuda` -> `.to(device)`;
  - `LossBuilder`'s `BicubicDownSample(factor=1024 // lr_size)` -> the factor of the generator's
    actual resolution, with `cuda=False` on the CPU (its 'torch.cuda.FloatTensor' type string).
Below 1024 the reference still makes 18 latent rows and 18 noise maps (it hard-codes 18); the
synthesis uses the first 2 log2(res) - 2 of them, GEOCROSS sees all 18 rows. That extra work is
negligible (a [B, 18, 18] distance matrix and a few unused noise draws).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import resource
import subprocess
import sys
import time
import types

REFERENCE_FILES = ("PULSE.py", "stylegan.py", "loss.py", "bicubic.py", "SphericalOptimizer.py")
WEIGHT_STD = 0.5          # every synthesis parameter ~ N(0, 0.5^2), seeded
REFERENCE_LAYERS = 18     # the reference hard-codes 18 style rows / noise maps


class ReferenceUnavailable(RuntimeError):
  """torch or the reference checkout is missing; the message says what to do."""


def import_torch():
  try:
    import torch
  except ImportError as e:
    raise ReferenceUnavailable(
        f"torch is not installed ({e}); install the benchmark extra: pip install -e '.[bench]' "
        "(on a CPU-only machine: pip install torch==2.13.0 takes a CPU wheel).") from None
  return torch


def check_reference_dir(reference_dir: str | None) -> str:
  if not reference_dir:
    raise ReferenceUnavailable(
        "no --reference_dir: pass a checkout of github.com/adamian98/pulse (e.g. "
        "git clone https://github.com/adamian98/pulse /tmp/pulse_ref), or set "
        "PULSE_REFERENCE_DIR. It is imported at run time, never copied into this project.")
  d = os.path.abspath(os.path.expanduser(reference_dir))
  missing = [f for f in REFERENCE_FILES if not os.path.isfile(os.path.join(d, f))]
  if missing:
    raise ReferenceUnavailable(f"{d} is not a checkout of adamian98/pulse: missing {missing}.")
  return d


def describe_reference(reference_dir: str) -> dict:
  """Commit (when the checkout is a git work tree) and a hash of the files that run."""
  h = hashlib.sha256()
  for f in REFERENCE_FILES:
    with open(os.path.join(reference_dir, f), "rb") as fh:
      h.update(f.encode() + b"\0" + fh.read())
  commit = None
  try:
    top, commit = (subprocess.run(["git", "-C", reference_dir, "rev-parse", "--show-toplevel",
                                   "HEAD"], capture_output=True, text=True,
                                  timeout=10).stdout.split() + [None, None])[:2]
    if not top or os.path.realpath(top) != os.path.realpath(reference_dir):
      commit = None  # not a checkout itself (e.g. a copy inside this repository's work tree)
  except (OSError, subprocess.SubprocessError):
    pass
  commit_file = os.path.join(reference_dir, "COMMIT")  # written beside a copy, see gpu_check
  if commit is None and os.path.isfile(commit_file):
    with open(commit_file) as fh:
      commit = fh.read().strip() or None
  return {"dir": reference_dir, "git_commit": commit, "files_sha256": h.hexdigest()}


def load_reference(reference_dir: str | None) -> types.SimpleNamespace:
  """Imports the reference's modules from `reference_dir` (sys.path), with torch."""
  torch = import_torch()
  d = check_reference_dir(reference_dir)
  if d not in sys.path:
    sys.path.insert(0, d)
  try:
    importlib.import_module("drive")
  except ImportError:
    # PULSE.py imports drive.open_url (requests) only to download weights, never used here.
    stub = types.ModuleType("drive")
    stub.open_url = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no downloads here"))
    sys.modules["drive"] = stub
  mods = {name: importlib.import_module(name) for name in
          ("stylegan", "loss", "bicubic", "SphericalOptimizer", "PULSE")}
  for name, m in mods.items():
    if not os.path.abspath(getattr(m, "__file__", "")).startswith(d):
      raise ReferenceUnavailable(f"module {name!r} was imported from {m.__file__}, not from {d}; "
                                 "another module of that name shadows the reference.")
  return types.SimpleNamespace(torch=torch, dir=d, **mods)


def pick_device(torch, requested: str = "auto") -> str:
  if requested == "auto":
    return "cuda" if torch.cuda.is_available() else "cpu"
  if requested == "cuda" and not torch.cuda.is_available():
    raise ReferenceUnavailable("--reference_device=cuda but torch sees no CUDA device.")
  return requested


def make_random_weights(ref, resolution: int, fmap_base: int, fmap_max: int, seed: int,
                        out_dir: str) -> tuple[str, str]:
  """Writes a seeded random `G_synthesis` state dict and Gaussian fit; returns their paths.

  Every parameter (convs, styles, noise weights, biases, the constant) ~ N(0, WEIGHT_STD^2), so
  no term of the computation can hide; the blur kernel buffer is left as is.
  Gaussian fit: mean ~ N(0, 0.5^2), std ~ U(0.5, 1.5) per dim.
  """
  torch = ref.torch
  os.makedirs(out_dir, exist_ok=True)
  gen = torch.Generator().manual_seed(seed)
  g = ref.stylegan.G_synthesis(resolution=resolution, fmap_base=fmap_base, fmap_max=fmap_max)
  with torch.no_grad():
    for _, p in sorted(g.named_parameters()):
      p.copy_(torch.randn(p.shape, generator=gen) * WEIGHT_STD)
  tag = f"r{resolution}_b{fmap_base}_m{fmap_max}_s{seed}"
  syn = os.path.join(out_dir, f"synthesis_{tag}.pt")
  fit = os.path.join(out_dir, f"gaussian_fit_{tag}.pt")
  torch.save(g.state_dict(), syn)
  torch.save({"mean": torch.randn(512, generator=gen) * 0.5,
              "std": torch.rand(512, generator=gen) + 0.5}, fit)
  return syn, fit


def build_pulse(ref, synthesis_path: str, gaussian_fit_path: str, resolution: int,
                fmap_base: int, fmap_max: int, device: str):
  """A reference `PULSE` object without its download step: random weights, frozen."""
  torch = ref.torch
  obj = object.__new__(ref.PULSE.PULSE)
  torch.nn.Module.__init__(obj)
  syn = ref.stylegan.G_synthesis(resolution=resolution, fmap_base=fmap_base, fmap_max=fmap_max)
  syn.load_state_dict(torch.load(synthesis_path, map_location="cpu"))
  obj.synthesis = syn.to(device)
  for p in obj.synthesis.parameters():
    p.requires_grad = False
  obj.verbose = False
  obj.lrelu = torch.nn.LeakyReLU(negative_slope=0.2)
  fit = torch.load(gaussian_fit_path, map_location="cpu")
  obj.gaussian_fit = {k: v.to(device) for k, v in fit.items()}
  return obj


@contextlib.contextmanager
def patched(ref, device: str, factor: int, record: list | None = None):
  """The in-memory patches listed in the module docstring, undone on exit."""
  torch = ref.torch
  orig = {"randn": torch.randn, "zeros": torch.zeros, "cuda": torch.nn.Module.cuda,
          "bicubic": ref.loss.BicubicDownSample}

  def fix(kw):
    if str(kw.get("device", "")).startswith("cuda") and device == "cpu":
      kw["device"] = "cpu"
    return kw

  def randn(*a, **kw):
    t = orig["randn"](*a, **fix(kw))
    if record is not None:
      record.append(t.detach().clone())
    return t

  torch.randn = randn
  torch.zeros = lambda *a, **kw: orig["zeros"](*a, **fix(kw))
  torch.nn.Module.cuda = lambda self, *a, **k: self.to(device)
  ref.loss.BicubicDownSample = lambda factor_=None, **kw: orig["bicubic"](
      factor=factor, cuda=(device == "cuda"))
  try:
    yield
  finally:
    torch.randn, torch.zeros = orig["randn"], orig["zeros"]
    torch.nn.Module.cuda = orig["cuda"]
    ref.loss.BicubicDownSample = orig["bicubic"]


def default_options(steps: int, **overrides) -> dict:
  """`PULSE.forward` keyword arguments: the reference's run.py defaults."""
  opts = dict(seed=0, loss_str="100*L2+0.05*GEOCROSS", eps=2e-3, noise_type="trainable",
              num_trainable_noise_layers=5, tile_latent=False, bad_noise_layers="17",
              opt_name="adam", learning_rate=0.4, steps=steps, lr_schedule="linear1cycledrop",
              save_intermediate=False)
  opts.update(overrides)
  return opts


def run_search(ref, pulse, ref_im, options: dict, device: str, factor: int) -> dict:
  """Runs the reference's own `PULSE.forward` once and times each step.

  ref_im: [B, 3, h, w] torch tensor in [0, 1] (B = restarts).
  Returns {'step_wall_s', 'step_cpu_s': [steps], 'trace': {name: [steps]}, 'drawn': [tensors
  torch.randn returned, in order], 'total_wall_s'}. A step is timed from one synthesis call to
  the next (the last one to the end of the loop).
  """
  torch = ref.torch
  marks: list[tuple[float, float]] = []
  trace: dict[str, list[float]] = {}
  drawn: list = []

  def cpu_now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

  def pre_hook(module, inputs):
    if device == "cuda":
      torch.cuda.synchronize()
    marks.append((time.perf_counter(), cpu_now()))

  def loss_hook(module, inputs, output):
    if isinstance(module, ref.loss.LossBuilder):
      total, terms = output
      trace.setdefault("TOTAL", []).append(float(total.detach()))
      for k, v in terms.items():
        trace.setdefault(k, []).append(float(v.detach() if hasattr(v, "detach") else v))

  torch.manual_seed(int(options.get("seed") or 0))  # PULSE.forward ignores seed=0 (`if seed:`)
  h1 = pulse.synthesis.register_forward_pre_hook(pre_hook)
  h2 = torch.nn.modules.module.register_module_forward_hook(loss_hook)
  t0 = time.perf_counter()
  try:
    with patched(ref, device, factor, drawn), contextlib.redirect_stdout(io.StringIO()):
      for _ in pulse.forward(ref_im.to(device), **options):
        pass
    if device == "cuda":
      torch.cuda.synchronize()
    end = (time.perf_counter(), cpu_now())
  finally:
    h1.remove()
    h2.remove()
  marks.append(end)
  wall = [b[0] - a[0] for a, b in zip(marks[:-1], marks[1:])]
  cpu = [b[1] - a[1] for a, b in zip(marks[:-1], marks[1:])]
  return {"step_wall_s": wall, "step_cpu_s": cpu, "trace": trace, "drawn": drawn,
          "total_wall_s": end[0] - t0}


def render(ref, pulse, w, noise):
  """One forward of the reference synthesis (no grad). w: [B, L, 512]; noise: list of [B,1,r,r]."""
  torch = ref.torch
  with torch.no_grad():
    return pulse.synthesis(w, noise)
