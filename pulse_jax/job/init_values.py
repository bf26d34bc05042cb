"""--init: start values from a run's latents.npz (restart r continues row r), checked against
the generator and options, and the rule printed for the rows given."""
from __future__ import annotations

import os

from pulse_jax.io import npy_files
from pulse_jax.io import run_files
from pulse_jax.job.errors import UsageError
from pulse_jax.search.config import SearchConfig

INIT_META = ("kept", "rank")  # latents.npz arrays that are not start values


class StartValues(dict):
  """--init start values {'latent': [k, l, D], 'noise_<i>': [k, 1, r, r]}: the first k rows
  of the `rows` rows the file holds (k = min(rows, max_rows); rows past the restarts are never
  read)."""
  rows: int = 0


def load_init(path: str, generator, config: SearchConfig,
              max_rows: int | None = None) -> StartValues:
  """An --init npz as start values, checked against the generator and options from the
  arrays' headers before any value is read ('kept' and 'rank' of a run's latents.npz are not
  read). max_rows: read at most this many rows (the restarts; the others are not used).
  ValueError naming the file: not an npz, an unexpected array or shape, a dtype that is not
  real numbers, or stored sizes that do not match the headers."""
  try:
    members = npy_files.npz_members(path)
  except npy_files.NpyError as e:
    raise ValueError(f"{e} Expected a latents.npz written by pulse_jax.run.") from None
  arrays = {k: m for k, m in members.items() if k not in INIT_META}
  if "latent" not in arrays:
    raise ValueError(f"{path}: --init needs a 'latent' array [K, l, D] (a run's latents.npz); "
                     f"found {npy_files.listing(sorted(members)) or 'no arrays'}.")
  want = {"latent": (generator.latent_layers(config.tile_latent), generator.latent_dim)}
  want.update({f"noise_{i}": tuple(s) for i, s in enumerate(generator.noise_shapes)})
  latent = arrays["latent"].header.shape
  rows = latent[0] if latent else 0
  for k, m in arrays.items():
    shape = m.header.shape
    if k not in want:
      raise ValueError(f"{path}: unexpected array '{npy_files.listing([k])}'; expected 'latent' "
                       f"and noise maps noise_0..noise_{len(generator.noise_shapes) - 1} of "
                       "this generator.")
    if len(shape) < 1 or shape[1:] != want[k] or shape[0] != rows or rows == 0:
      raise ValueError(f"{path}: '{k}' has shape {shape}; this generator and options need "
                       f"[K, {', '.join(map(str, want[k]))}] with the K rows of 'latent'.")
    if m.header.dtype.kind not in "iuf":
      raise ValueError(f"{path}: '{k}' holds {m.header.dtype}; start values are real numbers.")
  take = rows if max_rows is None else min(rows, int(max_rows))
  try:
    out = StartValues({k: m.read(rows=take) for k, m in arrays.items()})
  except npy_files.NpyError as e:
    raise ValueError(str(e)) from None
  out.rows = rows
  return out


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
      init_file = load_init(o.init, generator, config, o.restarts)
    except ValueError as e:
      raise UsageError(f"--init: {e}") from None
  rules: dict[str, list[str]] = {}
  for it in items:
    if it.image is None or it.status == "failed":
      continue
    if init_file is not None:
      it.init, source = init_file, o.init
    else:  # a previous run's output folder: DIR/<stem>/latents.npz
      source = os.path.join(o.init, it.stem, run_files.LATENTS)
      if not os.path.isfile(source):
        it.fail(f"{it.path}: --init={o.init}: no {source} for this input.")
        continue
      try:
        it.init = load_init(source, generator, config, o.restarts)
      except ValueError as e:
        it.fail(f"{it.path}: --init: {e}")
        continue
    rows = getattr(it.init, "rows", None) or it.init["latent"].shape[0]
    rules.setdefault(init_rule(rows, o.restarts), []).append(source)
  for rule, sources in rules.items():
    where = sources[0] if len(sources) == 1 else f"{len(sources)} inputs' latents.npz"
    log(f"init ({where}): {rule}")


def batch_start(batch: list, generator, config: SearchConfig, restarts: int) -> dict | None:
  """Start values [B * R rows] for a batch with --init: restart r of an input continues its
  row r; restarts past its rows (and noise maps it lacks) get their usual random draws."""
  if all(it.init is None for it in batch):
    return None
  from pulse_jax.runtime import loop
  start = loop.initial_start_values(generator, config, restarts,
                                      [it.image.image_key for it in batch])
  for b, it in enumerate(batch):
    m = min(it.init["latent"].shape[0], restarts) if it.init is not None else 0
    for k, v in (it.init or {}).items():
      if k in start:  # a noise map that the options make zero is not a start value
        start[k][b, :m] = v[:m]
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in start.items()}
