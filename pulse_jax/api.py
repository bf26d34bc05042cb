"""The Python API: the job of `python -m pulse_jax.run` as two functions.

    import pulse_jax
    g = pulse_jax.load_generator()                       # the built-in DCGAN
    r = pulse_jax.upsample("face.png", g, restarts=16, keep=3)
    r.images[0].save("hr.png")                           # PIL images, best first

`upsample` runs the same code as the command (`pulse_jax.job.pipeline.run`), so the same settings give
the same images, bit for bit. Every option of the command is a keyword (`pulse_jax.job.options`;
--duplicates is `keep`); options not given take the model's preset, else the global default,
as on the command line. Errors are exceptions with the command's messages, spoken in keywords
(`keywords`: 'steps: must be ...', 'pass fit="resize"' where the command says '--steps: ...',
'--fit=resize'): `UsageError` (options, weights, set-up) and `InputError` (an input), both
ValueErrors. The warnings, notes and each result's report text (its advice) are translated the
same way, and say "returned" where the command says "saved" when nothing is written.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import tempfile
from typing import Callable

import numpy as np

from pulse_jax.job import options as options_lib
from pulse_jax.job.errors import UsageError
from pulse_jax.job.model import Model


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
  The range of faces: spread: [H, W] float32, the per-pixel standard deviation (mean over RGB,
  in [0, 1] pixel units) of the HR images of every restart within eps, None when fewer than 2
  were (bright where the input did not determine the face: the spread of this search with
  this generator, not a confidence about the person; docs/responsible-use.md); spread_png: its
  heat map's file (None: not written, or no map); diversity: the mean pairwise distance of the
  kept images (RMS pixel difference, None for one); steps_run: the steps this input's restarts
  ran (fewer than steps= when the search ended early).
  ilo: with ilo=True, the report's "ilo" block (the cut points searched past the generator's
  range, the kept layer, how far each kept image's activation moved: docs/search.md); None
  without ILO.
  """
  input: str
  images: list
  lr_images: list
  l2: list
  within_eps: bool
  report: dict
  latents: dict | None = None
  output_dir: str | None = None
  spread: np.ndarray | None = None
  spread_png: str | None = None
  diversity: float | None = None
  steps_run: int | None = None
  ilo: dict | None = None

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
  model is converted once into ~/.cache/pulse_jax. Raises UsageError ('weights="...": ...').
  """
  from pulse_jax.job import model as job_model
  try:
    return job_model.load_model(weights, log=log or (lambda s: None))
  except UsageError as e:
    raise UsageError(keywords(str(e), LOAD_GENERATOR_NAMES)) from None


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
  searched (before anything is searched), and a failed search's own exception. Their
  messages, the warnings and notes, and each result's report text name keywords, not flags
  (`keywords`).
  """
  from pulse_jax.io.input_images import InputError as _InputError
  written = output_dir is not None
  say = log or (lambda s: print(s, flush=True))
  tell = warn or (lambda s: print(s, file=sys.stderr, flush=True))
  try:
    return _upsample(inputs, generator, output_dir,
                     lambda s: say(keywords(s, UPSAMPLE_NAMES, written)),
                     lambda s: tell(keywords(s, UPSAMPLE_NAMES, written)), options)
  except (UsageError, _InputError) as e:
    raise type(e)(keywords(str(e), UPSAMPLE_NAMES, written)) from None


def _upsample(inputs, generator, output_dir, log, warn, options):
  """`upsample` with its callables in place (the messages are the command's)."""
  from pulse_jax.job import pipeline
  from pulse_jax.job import inputs as job_inputs
  given = _options(options)
  many = isinstance(inputs, (list, tuple)) or given.get("align", False) or (
      isinstance(inputs, (str, os.PathLike)) and os.path.isdir(inputs))
  sources = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
  if not sources:
    raise UsageError("--input: no inputs given")
  if given.get("save_intermediate") and output_dir is None:
    raise UsageError("--save_intermediate: needs output_dir= (the frames are files)")
  if isinstance(generator, Model):
    model = generator
  else:
    from pulse_jax.job import model as job_model
    model = job_model.load_model(generator, log=log)
  found: dict[str, Result] = {}

  def on_result(item, result, i, report):
    found[item.stem] = _result(item, result, i, report, output_dir)

  with tempfile.TemporaryDirectory(prefix="pulse_jax-inputs-") as tmp:
    items = job_inputs.picture_items(sources, tmp)
    labels = [it.label or it.path for it in items]
    o = _run_options(given, output_dir, labels[0] if len(labels) == 1 else ", ".join(labels),
                     model)
    summary = pipeline.run(o, model=model, items=items, on_result=on_result, strict=True, log=log,
                      warn=warn)
  results = [found[f["stem"]] if f["stem"] in found else _kept(f, output_dir)
             for f in summary["files"] if f["status"] in ("within_eps", "not_within_eps")]
  return results if many else results[0]


def evaluate(hr, factor: int, generator: Model | str | os.PathLike | None = None, *,
             output_dir: str | os.PathLike, configs=None,
             log: Callable[[str], None] | None = None,
             warn: Callable[[str], None] | None = None, **options) -> dict:
  """The quality harness (`python -m pulse_jax.evaluate`; docs/quality.md, "The harness"):
  the ground-truth images `hr` (a folder, a file, or a list of them; square) degraded by
  `factor` with the forward model, searched with each configuration, measured beside nearest
  and bicubic up-sampling. Writes output_dir/evaluation.json, evaluation.md, index.html (and
  the LR inputs and runs); returns the evaluation (evaluation.json's content).

  configs: {name: {option: value}} or the command's 'name:flag=value;flag=value,...' (None:
  one configuration, 'pulse'); options: the common options, as for `upsample`. Raises
  UsageError and InputError (a ground-truth file that is unreadable or not square) as
  `upsample` does.
  """
  from pulse_jax.io.input_images import InputError as _InputError
  from pulse_jax.job import evaluation
  from pulse_jax.job.settings import RunOptions
  try:
    given = _options(options)
  except TypeError as e:
    raise TypeError(str(e).replace("upsample()", "evaluate()")) from None
  if isinstance(configs, dict):
    names = options_lib.api_names()
    configs = {n: {names.get(k, k): v for k, v in (c or {}).items()} for n, c in configs.items()}
  say = log or (lambda s: print(s, flush=True))
  tell = warn or (lambda s: print(s, file=sys.stderr, flush=True))
  try:
    model = generator if isinstance(generator, Model) else load_generator(generator, log=log)
    o = RunOptions(**given, **({"weights": model.name} if model.given else {}),
                   output_dir=os.fspath(output_dir))
    return evaluation.evaluate(hr, factor, o, configs, model=model,
                               log=lambda s: say(keywords(s, UPSAMPLE_NAMES)),
                               warn=lambda s: tell(keywords(s, UPSAMPLE_NAMES)))
  except (UsageError, _InputError) as e:
    raise type(e)(keywords(str(e), UPSAMPLE_NAMES)) from None


# ----------------------------------------------------------------------------- keywords

# Flags whose API keyword is not the option's keyword (`Option.keyword`, e.g. keep for
# --duplicates): the arguments of upsample() and of load_generator().
UPSAMPLE_NAMES = {"input": "inputs", "weights": "generator", "output_dir": "output_dir"}
LOAD_GENERATOR_NAMES = {"weights": "weights"}
# A flag in a message: --name, --noname (a false boolean), --name=value; the value ends before
# white space, ',', ';', ')', ']' or a '.' / ':' that ends a clause.
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)(?:=([^\s,;)\]]+?))?"
                   r"(?=[\s,;)\]]|[.:](?:\s|$)|$)")
_NAMED = re.compile(r"[^.;:]*\b(?:do|does) not apply")  # a list of flags that do not apply
_SAVED = ("The best attempt is saved anyway, marked NOT_WITHIN_EPS.",
          "The best attempt is returned anyway (its Result's within_eps is False).")


def _literal(value: str, kind) -> str:
  """A flag's value as a Python literal for an option of type `kind`: True / False for a
  boolean, a number as written, a double-quoted string otherwise; kept as written when already
  quoted (or a boolean's value is neither true nor false)."""
  if value[:1] in "'\"" or kind in (int, float):
    return value
  if kind is bool:
    low = value.lower()
    return "True" if low in ("true", "1", "yes") else "False" if low in ("false", "0", "no") \
        else value
  return json.dumps(value, ensure_ascii=False)


def keywords(text: str, names: dict | None = None, written: bool = True) -> str:
  """A message of the command in the API's words: `--name=value` -> `keyword=value` (a string
  value double-quoted: `fit="resize"`), `--flag` -> `flag=True` and `--noflag` -> `flag=False`
  for a boolean, `--name` -> `keyword` otherwise; keywords as `upsample` spells them
  (`Option.keyword`, e.g. keep for --duplicates; `names`: flag -> argument name for the
  non-option arguments, e.g. generator for --weights). Text between backticks (another
  command, e.g. `python -m weights_convert --source=FILE`) and unknown flags are left as they
  are. `written` False: the advice says the best attempt is returned, not saved."""
  names = UPSAMPLE_NAMES if names is None else names
  known = {o.name: o for o in options_lib.OPTIONS.values()}

  def one(m: re.Match) -> str:
    name, value = m.group(1), m.group(2)
    negated = False
    if name not in known and name.startswith("no") and name[2:] in known and value is None:
      name, negated = name[2:], True
    o = known.get(name)
    if o is None:
      return m.group(0)
    if negated and o.type is not bool:
      return m.group(0)
    key = names.get(name, o.keyword) if o.api or name in names else None
    if key is None:
      return m.group(0)
    if o.type is bool and value is None:  # as a subject ('--align: ...', '... do not apply')
      subject = m.string[m.end():m.end() + 1] == ":" or _NAMED.match(m.string, m.end())
      return key if subject else f"{key}={not negated}"
    if value is None:
      return key
    return f"{key}={_literal(value, o.type)}"

  parts = text.split("`")
  for i in range(0, len(parts), 2):  # outside backticks only
    parts[i] = _FLAG.sub(one, parts[i])
  out = "`".join(parts)
  return out if written else out.replace(*_SAVED)


def _report_in_keywords(report: dict, written: bool) -> dict:
  """The report with its text (top-level strings and lists of strings: advice, notes) in the
  API's words (`keywords`); settings and other records unchanged."""
  out = dict(report)
  for k, v in report.items():
    if isinstance(v, str):
      out[k] = keywords(v, UPSAMPLE_NAMES, written)
    elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
      out[k] = [keywords(x, UPSAMPLE_NAMES, written) for x in v]
  return out


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
      raise TypeError(f"upsample(): {options_lib.get(n).keyword} and {n} are the same option; "
                      "give one")
    out[n] = v
  return out


def _run_options(given: dict, output_dir, label: str, model: Model):
  from pulse_jax.job.settings import RunOptions
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
  from pulse_jax.job import outputs as job_outputs
  from pulse_jax.job import result_files
  report = _report_in_keywords(result_files.jsonable(report), output_dir is not None)
  folder = os.path.join(output_dir, item.stem) if output_dir is not None else None
  return Result(
      input=item.path,
      images=[result_files.to_pil(x) for x in result.hr[i]],
      lr_images=[result_files.to_pil(x) for x in result.lr[i]],
      l2=[o["l2"] for o in report["outputs"]], within_eps=bool(report["within_eps"]),
      report=report, latents=job_outputs.latents_of(result, i), output_dir=folder,
      spread=result_files.range_of(result, i)["spread"], **_range_of_report(report, folder))


def _range_of_report(report: dict, folder: str | None) -> dict:
  """A Result's spread_png, diversity, steps_run and ilo from its report's "spread",
  "candidates", "stopping" and "ilo" blocks (None where absent: a report of a run before them,
  or of a run without ILO)."""
  block = lambda name: report.get(name) if isinstance(report.get(name), dict) else {}  # noqa
  name = block("spread").get("file")
  return {"spread_png": os.path.join(folder, name) if folder is not None and name else None,
          "diversity": block("candidates").get("diversity"),
          "steps_run": block("stopping").get("steps_run"),
          "ilo": report.get("ilo") if isinstance(report.get("ilo"), dict) else None}


def _kept(entry: dict, output_dir) -> Result:
  """An input (its summary entry) whose complete outputs an earlier run left in output_dir
  (kept, not searched again): read back from its files."""
  from PIL import Image
  from pulse_jax.io import run_files
  from pulse_jax.job import result_files
  d = os.path.join(output_dir, entry["stem"])
  with open(os.path.join(d, run_files.REPORT)) as f:
    report = _report_in_keywords(json.load(f), True)

  def load(name):
    with Image.open(os.path.join(d, name)) as im:
      return im.copy()
  return Result(input=entry["input"], images=[load(o["hr"]) for o in report["outputs"]],
                lr_images=[load(o["lr"]) for o in report["outputs"]],
                l2=[o["l2"] for o in report["outputs"]], within_eps=bool(report["within_eps"]),
                report=report, latents=None, output_dir=d, spread=result_files.load_spread(d),
                **_range_of_report(report, d))
