"""--init: start values from a run's latents.npz (restart r continues row r), checked against
the generator and options, and the rule printed for the rows given."""
from __future__ import annotations

import os

import numpy as np

from pulse_jax import outputs
from pulse_jax.errors import UsageError
from pulse_jax.search_config import SearchConfig

INIT_META = ("kept", "rank")  # latents.npz arrays that are not start values


def load_init(path: str, generator, config: SearchConfig) -> dict:
  """An --init npz as start values {'latent': [k, l, D], 'noise_<i>': [k, 1, r, r]}, checked
  against the generator and options ('kept' and 'rank' of a run's latents.npz are dropped)."""
  try:
    with np.load(path, allow_pickle=False) as z:
      d = {k: np.asarray(z[k]) for k in z.files if k not in INIT_META}
  except Exception as e:  # corrupt / not an npz
    raise ValueError(f"{path}: cannot read start values ({type(e).__name__}: {e}); expected a "
                     "latents.npz written by pulse_jax.run.") from None
  if "latent" not in d:
    raise ValueError(f"{path}: --init needs a 'latent' array [K, l, D] (a run's latents.npz); "
                     f"found {sorted(d)}.")
  want = {"latent": (generator.latent_layers(config.tile_latent), generator.latent_dim)}
  want.update({f"noise_{i}": tuple(s) for i, s in enumerate(generator.noise_shapes)})
  rows = d["latent"].shape[0] if d["latent"].ndim else 0
  for k, v in d.items():
    if k not in want:
      raise ValueError(f"{path}: unexpected array {k!r}; expected 'latent' and noise maps "
                       f"noise_0..noise_{len(generator.noise_shapes) - 1} of this generator.")
    if v.ndim < 1 or tuple(v.shape[1:]) != want[k] or v.shape[0] != rows or rows == 0:
      raise ValueError(f"{path}: '{k}' has shape {v.shape}; this generator and options need "
                       f"[K, {', '.join(map(str, want[k]))}] with the K rows of 'latent'.")
  return d


def _span(word: str, a: int, b: int) -> str:
  """'restart 3' or 'restarts 3..15'."""
  return f"{word} {a}" if a == b else f"{word}s {a}..{b}"


def init_rule(rows: int, restarts: int) -> str:
  """The --init rule for `rows` saved rows and `restarts` restarts, as printed."""
  head = f"{rows} row{'s' * (rows != 1)} for {restarts} restart{'s' * (restarts != 1)}: "
  if rows == restarts:
    return head + "restart r continues row r"
  if rows > restarts:
    return (head + f"{_span('restart', 0, restarts - 1)} continue{'s' * (restarts == 1)} "
            f"{_span('row', 0, restarts - 1)}; {_span('row', restarts, rows - 1)} not used")
  return (head + f"{_span('restart', 0, rows - 1)} continue{'s' * (rows == 1)} "
          f"{_span('row', 0, rows - 1)}; {_span('restart', rows, restarts - 1)} start"
          f"{'s' * (restarts - rows == 1)} from fresh random draws (as without --init)")


def attach_init(o, items: list, generator, config: SearchConfig, log) -> None:
  """--init: each loadable input's saved rows (one npz for all, or DIR/<stem>/latents.npz),
  and one line per distinct rule (`init_rule`)."""
  init_file = None
  if os.path.isfile(o.init):
    try:
      init_file = load_init(o.init, generator, config)
    except ValueError as e:
      raise UsageError(f"--init: {e}") from None
  rules: dict[str, list[str]] = {}
  for it in items:
    if it.image is None or it.status == "failed":
      continue
    if init_file is not None:
      it.init, source = init_file, o.init
    else:  # a previous run's output folder: DIR/<stem>/latents.npz
      source = os.path.join(o.init, it.stem, outputs.LATENTS)
      if not os.path.isfile(source):
        it.fail(f"{it.path}: --init={o.init}: no {source} for this input.")
        continue
      try:
        it.init = load_init(source, generator, config)
      except ValueError as e:
        it.fail(f"{it.path}: --init: {e}")
        continue
    rules.setdefault(init_rule(it.init["latent"].shape[0], o.restarts), []).append(source)
  for rule, sources in rules.items():
    where = sources[0] if len(sources) == 1 else f"{len(sources)} inputs' latents.npz"
    log(f"init ({where}): {rule}")


def batch_start(batch: list, generator, config: SearchConfig, restarts: int) -> dict | None:
  """Start values [B * R rows] for a batch with --init: restart r of an input continues its
  row r; restarts past its rows (and noise maps it lacks) get their usual random draws."""
  if all(it.init is None for it in batch):
    return None
  from pulse_jax import driver
  start = driver.initial_start_values(generator, config, restarts,
                                      [it.image.image_key for it in batch])
  for b, it in enumerate(batch):
    m = min(it.init["latent"].shape[0], restarts) if it.init is not None else 0
    for k, v in (it.init or {}).items():
      if k in start:  # a noise map that the options make zero is not a start value
        start[k][b, :m] = v[:m]
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in start.items()}
