"""Resolving `--weights`: a converted weights directory, or a named built-in model.

Built-in: 'dcgan-digiface', the 64x64 DCGAN face generator whose weights ship in the PyPI
wheel `gan-face-generate` (install it with `pip install --no-deps gan-face-generate`).
Its `weights.tar` is located on disk without importing the package, converted once
(allow-list unpickler, no code run) and cached under $PULSE_JAX_CACHE (default
~/.cache/pulse_jax).
"""
from __future__ import annotations

import importlib.util
import os

from pulse_jax.io.cache import cache_root
from pulse_jax.io.weights_dir import GeneratorWeights, WeightsError, load_weights, sha256_file

DEFAULT_MODEL = "dcgan-digiface"
BUILTIN = {DEFAULT_MODEL: ("gan_face_generate", "weights.tar")}
# Search settings tuned per built-in model: option name (pulse_jax.job.options) -> value. A job
# uses each option as given (flag / keyword), else the preset of the model --weights names,
# else the global default; report.json and summary.json record the preset and each value's
# source. A converted --weights directory (e.g. StyleGAN FFHQ) gets the reference's defaults.
PRESETS: dict[str, dict] = {
    # Chosen by measurement on 8 real face crops that are not the shipped samples
    # (docs/presets.md, experiments/dcgan_presets.py): 8/8 within eps 2e-3 (100 x 16: 6/8).
    # Keeps 4 diverse candidates and stops once 4 restarts are within eps (issue 21,
    # experiments/anytime_stopping.py: 7/8 faces within eps with the stop or without it, median
    # restart-steps per face 4800 -> 882; docs/presets.md "The anytime stop").
    DEFAULT_MODEL: {"steps": 400, "restarts": 12, "learning_rate": 1.6,
                    "lr_schedule": "linear1cycledrop", "opt_name": "adam", "loss_str": "100*L2",
                    "duplicates": 4, "stop_within": 4, "stop_extra_steps": 0},
}
INSTALL_HINT = "pip install --no-deps gan-face-generate==1.1.1"


def builtin_source(name: str) -> str:
  """Path of a built-in model's source weights file, found without importing its package."""
  package, filename = BUILTIN[name]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"The built-in model {name!r} needs the weights of the PyPI wheel "
        f"'{package.replace('_', '-')}', which is not installed. Install it with: {INSTALL_HINT}")
  path = os.path.join(list(spec.submodule_search_locations)[0], filename)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} is missing from the installed {package}; reinstall it with "
                            f"{INSTALL_HINT} --force-reinstall.")
  return path


def builtin_dir(name: str, log=print) -> str:
  """Converted (cached) weights directory of a built-in model."""
  from weights_convert.convert import convert_and_save
  src = builtin_source(name)
  digest = sha256_file(src)
  out = os.path.join(cache_root(), f"{name}-{digest[:16]}")
  if not os.path.isfile(os.path.join(out, "metadata.json")):
    log(f"converting the built-in model {name} from {src} (once) into {out}")
    convert_and_save([src], out, overwrite=True, log=lambda s: None)
  return out


def resolve(weights: str | None, log=print) -> str:
  """A weights directory for `--weights` (None: the built-in default); WeightsError for a name
  that is neither."""
  name = weights or DEFAULT_MODEL
  if name in BUILTIN:
    return builtin_dir(name, log)
  if not os.path.isdir(name):
    raise WeightsError(
        f"--weights={name}: neither a converted weights directory nor a built-in model "
        f"({', '.join(sorted(BUILTIN))}). Convert weights with `python -m weights_convert "
        "--source=FILE --out=DIR`.")
  return name


def load(weights: str | None, log=print) -> GeneratorWeights:
  return load_weights(resolve(weights, log))
