"""The Python API: the job of `python -m pulse_jax.run` as two functions.

    import pulse_jax
    g = pulse_jax.load_generator()                       # the built-in DCGAN
    r = pulse_jax.upsample("face.png", g, restarts=16, keep=3)
    r.images[0].save("hr.png")                           # PIL images, best first

`upsample` runs the same code as the command (`pulse_jax.job.run`), so the same settings give
the same images, bit for bit. Every option of the command is a keyword (`pulse_jax.options`;
--duplicates is `keep`); options not given take the model's preset, else the global default,
as on the command line. Errors are exceptions with the command's messages: `UsageError`
(options, weights, set-up) and `InputError` (an input), both ValueErrors.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
from typing import Callable

from pulse_jax import options as options_lib
from pulse_jax.errors import UsageError
from pulse_jax.inputs import InputError  # noqa: F401  (pulse_jax.InputError)
from pulse_jax.job_generator import Model


@dataclasses.dataclass
class Result:
  """The outcome of one input.

  images: the HR images (PIL), best first (`keep` of them); lr_images: each one through the
  forward model D, as the search compared it with the input (down-sampled; blurred, gray, ...
  with the forward options: docs/forward.md); l2: their L2 (mean squared error against the
  input, over the known pixels with mask=); within_eps: whether some restart reached eps
  (`report['within_eps']`); report: the input's report (the report.json the command writes:
  restarts, settings, options and their sources, forward model, timings); latents: every
  restart's best iterate, the latents.npz arrays (None for outputs kept from an earlier run);
  output_dir: where its files are (None: not written).
  """
  input: str
  images: list
  lr_images: list
  l2: list
  within_eps: bool
  report: dict
  latents: dict | None = None
  output_dir: str | None = None

  @property
  def status(self) -> str:
    return self.report["status"]

  def __repr__(self) -> str:
    l2 = ", ".join(f"{v:.3g}" for v in self.l2)
    return (f"Result({self.input!r}, {len(self.images)} image(s), l2=[{l2}], "
            f"within_eps={self.within_eps})")


def load_generator(weights: str | os.PathLike | None = None, *,
                   log: Callable[[str], None] | None = None) -> Model:
  """The generator to search with: None (the built-in default, dcgan-digiface), a built-in
  model's name, or a converted weights directory (python -m weights_convert). A built-in
  model is converted once into ~/.cache/pulse_jax. Raises UsageError ('--weights=...: ...').
  """
  from pulse_jax import job_generator
  return job_generator.load_model(weights, log=log or (lambda s: None))


def upsample(inputs, generator: Model | str | os.PathLike | None = None, *,
             output_dir: str | os.PathLike | None = None,
             log: Callable[[str], None] | None = None,
             warn: Callable[[str], None] | None = None, **options):
  """Searches `generator`'s latent space for HR images that down-scale to each input.

  inputs: a file path, a PIL image or an array ([H, W, C], [C, H, W] or [H, W]; uint8, or
  float in [0, 1]) -> one `Result`; a list of them, or a folder -> a list of `Result`s, in
  order (with align=True always a list: a photo gives one result per face found).
  generator: `load_generator()`'s model, a built-in name or a weights directory (None: the
  built-in default). output_dir: write the command's files there too (default: none are
  written). log / warn: receive the progress lines and notes / the warnings (default: stdout /
  stderr; quiet=True drops the progress lines). options: any option of `python -m
  pulse_jax.run` by its flag name (restarts=16, steps=300, eps=5e-3, seed=1, ...; keep=K is
  --duplicates; the forward model: blur_sigma=, blur_kernel=, downsample=, grayscale=,
  mask= (a file or folder), noise_sigma=); unknown keywords raise TypeError naming the valid
  ones.

  Raises UsageError for a bad option or set-up, InputError for an input that cannot be
  searched (before anything is searched), and a failed search's own exception.
  """
  from pulse_jax import job, job_inputs
  given = _options(options)
  many = isinstance(inputs, (list, tuple)) or given.get("align", False) or (
      isinstance(inputs, (str, os.PathLike)) and os.path.isdir(inputs))
  sources = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
  if not sources:
    raise UsageError("--input: no inputs given")
  if given.get("save_intermediate") and output_dir is None:
    raise UsageError("--save_intermediate: needs output_dir= (the frames are files)")
  model = generator if isinstance(generator, Model) else load_generator(generator, log=log)
  found: dict[str, Result] = {}

  def on_result(item, result, i, report):
    found[item.stem] = _result(item, result, i, report, output_dir)

  with tempfile.TemporaryDirectory(prefix="pulse_jax-inputs-") as tmp:
    items = job_inputs.picture_items(sources, tmp)
    labels = [it.label or it.path for it in items]
    o = _run_options(given, output_dir, labels[0] if len(labels) == 1 else ", ".join(labels),
                     model)
    summary = job.run(o, model=model, items=items, on_result=on_result, strict=True, log=log,
                      warn=warn)
  results = [found[f["stem"]] if f["stem"] in found else _kept(f, output_dir)
             for f in summary["files"] if f["status"] in ("within_eps", "not_within_eps")]
  return results if many else results[0]


# ----------------------------------------------------------------------------- keywords

def _options(kw: dict) -> dict:
  """Keywords -> {option name: value}; TypeError for unknown or repeated ones."""
  names = options_lib.api_names()
  unknown = sorted(k for k in kw if k not in names)
  if unknown:
    valid = sorted({o.keyword for o in options_lib.run_options() if o.api})
    raise TypeError(f"upsample() got unexpected keyword argument(s) {', '.join(unknown)}; "
                    f"valid: output_dir, log, warn, {', '.join(valid)}")
  out = {}
  for k, v in kw.items():
    n = names[k]
    if n in out:
      raise TypeError(f"upsample(): {options_lib.get(n).keyword} and {n} are the same option "
                      f"(--{n}); give one")
    out[n] = v
  return out


def _run_options(given: dict, output_dir, label: str, model: Model):
  from pulse_jax.run_options import RunOptions
  weights = {"weights": model.name} if model.given else {}
  return RunOptions(**given, **weights, input=label,
                    output_dir=os.fspath(output_dir) if output_dir is not None else None)


def _signature() -> inspect.Signature:
  """upsample's signature with every option keyword (its global default; a preset may change
  it: see docs/run.md)."""
  P = inspect.Parameter
  params = list(inspect.signature(upsample).parameters.values())[:-1]
  seen = {p.name for p in params}
  for o in options_lib.run_options():
    if o.api and o.keyword not in seen:
      params.append(P(o.keyword, P.KEYWORD_ONLY, default=o.default))
  return inspect.Signature(params)


upsample.__signature__ = _signature()


# ----------------------------------------------------------------------------- results

def _result(item, result, i: int, report: dict, output_dir) -> Result:
  from pulse_jax import job_outputs, outputs
  report = outputs.jsonable(report)
  return Result(
      input=item.path,
      images=[outputs.to_pil(x) for x in result.hr[i]],
      lr_images=[outputs.to_pil(x) for x in result.lr[i]],
      l2=[o["l2"] for o in report["outputs"]], within_eps=bool(report["within_eps"]),
      report=report, latents=job_outputs.latents_of(result, i),
      output_dir=os.path.join(output_dir, item.stem) if output_dir is not None else None)


def _kept(entry: dict, output_dir) -> Result:
  """An input (its summary entry) whose complete outputs an earlier run left in output_dir
  (kept, not searched again): read back from its files."""
  import json
  from PIL import Image
  from pulse_jax import outputs
  d = os.path.join(output_dir, entry["stem"])
  with open(os.path.join(d, outputs.REPORT)) as f:
    report = json.load(f)

  def load(name):
    with Image.open(os.path.join(d, name)) as im:
      return im.copy()
  return Result(input=entry["input"], images=[load(o["hr"]) for o in report["outputs"]],
                lr_images=[load(o["lr"]) for o in report["outputs"]],
                l2=[o["l2"] for o in report["outputs"]], within_eps=bool(report["within_eps"]),
                report=report, latents=None, output_dir=d)
