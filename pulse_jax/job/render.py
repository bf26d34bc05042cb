"""Rendering latents with a generator: the logic of `python -m pulse_jax.render`.

`render_file(weights, latents_path, out)` loads the weights (`pulse_jax.job.builtin_models`),
reads the rows asked for of a latents npz (`load_latents`, `select_rows`), maps them to the
style input ws [B, L, D] (`styles`), adds the noise maps (`noise_maps`), runs the synthesis
network (`render_arrays`: raw output [B, C, H, W] float32; from an ILO activation, when the
npz holds one, the rest of the network after its cut point) and writes PNGs or an npz
(`write_images`).

Latents npz keys (exactly one of dlatents, latent, z):
  dlatents   [B, L, D] W+ vectors fed to the synthesis network as they are, or
  latent     [B, l, D] the search's standard-normal variable (l = L, or 1 when tiled), mapped
             through the prior first (the Gaussian fit for StyleGAN; the DCGAN's z as is), or
  z          [B, z_dim] mapped through the model's mapping network (NVIDIA's G.mapping), with
             truncation_psi / truncation_cutoff (rows below the cutoff; default all) and, for a
             conditional model, class_index (which also picks the class's prior for 'latent');
  noise_<i>  [B, 1, r, r] the unit noise map of noise layer i (models with noise inputs). When
             the npz has noise maps (a run's latents.npz), layers without one are zero, as the
             search zeroed them; when it has none, noise_mode decides: 'const' (default) the
             model's own constant maps (NVIDIA's noise_mode='const'; zeros for a model without
             them, e.g. StyleGAN v1), 'none' zeros (NVIDIA's noise_mode='none');
  kept, rank a run's latents.npz: the restarts of its hr_<k>.png, best first, and each row's
             rank. rows='kept' (the default) renders the kept rows in that order (so PATH_<k>.png
             is hr_<k>.png), 'all' every row, '3,0' the rows given;
  ilo.<layer>  a run's latents.npz with --ilo (docs/search.md): [B, ...] the kept iterate's
             activation at the cut point <layer> (`Generator.ilo_layers`), as
             `Generator.activation_shapes(layer, batch=B)` gives it; a StyleGAN2 activation is
             one array per part, 'ilo.<layer>.x' and 'ilo.<layer>.img'. The images are then the
             rest of the network from it (`Generator.render_from`) with the ws and noise maps
             above: the run's hr_<k>.png, outside the generator's exact range. At most one layer.
"""
from __future__ import annotations

import os

import numpy as np

from pulse_jax.io.images import to_uint8

META = ("kept", "rank")  # a run's latents.npz arrays that are not latents
LATENT_KEYS = ("dlatents", "latent", "z")
NOISE_MODES = ("const", "none")
MAX_RENDER_BYTES = 1 << 30   # latents and noise maps read for one render (1 GiB)
MAX_RENDER_ROWS = 4096       # rows read for one render (one image file each)


def ilo_layer(generator, names) -> tuple[str | None, dict]:
  """The cut point named by the 'ilo.' arrays among `names` (a run's latents.npz keys, see the
  module docstring) and {array name: its part (None for a one-array activation; 'x', 'img' for
  StyleGAN2)}; (None, {}) without 'ilo.' arrays. ValueError naming the generator's cut points
  for an unknown layer, or when the arrays name more than one."""
  from pulse_jax.search.program import ILO_PREFIX
  keys = [k for k in names if k.startswith(ILO_PREFIX)]
  if not keys:
    return None, {}
  cuts = tuple(generator.ilo_layers) if generator is not None else ()
  found: dict = {}
  for k in keys:
    rest = k[len(ILO_PREFIX):]
    layer = next((c for c in cuts if rest == c or rest.startswith(c + ".")), None)
    if layer is None:
      where = (f"its cut points are {', '.join(cuts)}" if cuts
               else "it has no cut points (ILO does not apply)")
      kind = getattr(generator, "kind", "this")
      raise ValueError(f"'{k}': not the activation of a cut point of this {kind} generator; "
                       f"{where}.")
    found.setdefault(layer, {})[k] = rest[len(layer) + 1:] or None
  if len(found) > 1:
    raise ValueError(f"ILO activations of more than one cut point ({', '.join(found)}); a run's "
                     "latents.npz holds the last layer entered only.")
  layer, parts = next(iter(found.items()))
  return layer, parts


def _ilo_shapes(generator, layer: str, parts: dict, batch: int) -> dict:
  """{array name: (shape [batch, ...], dtype)} that the 'ilo.' arrays `parts` (`ilo_layer`)
  of `layer` must have (`Generator.activation_shapes`); ValueError naming what is missing or
  extra."""
  import jax
  from pulse_jax.search.program import ILO_PREFIX
  shapes = generator.activation_shapes(layer, batch=batch)
  if isinstance(shapes, dict):
    want = {f"{ILO_PREFIX}{layer}.{p}": s for p, s in shapes.items()}
  elif isinstance(shapes, jax.ShapeDtypeStruct):
    want = {f"{ILO_PREFIX}{layer}": shapes}
  else:
    raise ValueError(f"cut point {layer}: an activation of structure {jax.tree.structure(shapes)} "
                     "cannot be read from an npz.")
  if set(want) != set(parts):
    raise ValueError(f"the activation at cut point {layer} is {', '.join(sorted(want))}; found "
                     f"{', '.join(sorted(parts))}.")
  return {k: (tuple(s.shape), s.dtype) for k, s in want.items()}


def _row_shapes(generator) -> dict:
  """{array: the allowed shapes of one row} for `generator` (None: any, bounded)."""
  out = {"dlatents": {(generator.num_layers, generator.latent_dim)},
         "latent": {(generator.latent_layers(t), generator.latent_dim) for t in (False, True)}}
  z_dim = getattr(getattr(generator, "config", None), "z_dim", None)
  out["z"] = {(int(z_dim),)} if isinstance(z_dim, int) else None
  out.update({f"noise_{i}": {tuple(s)} for i, s in enumerate(generator.noise_shapes)})
  return out


def load_latents(path: str, generator=None, rows: str = "kept") -> dict:
  """The arrays of a latents npz, checked from their headers before any value is read: real
  numbers only, the same number of rows B in each (kept and rank: at most B values), one row
  of each the shape `generator` (when given) takes. Only the rows `rows` (`parse_rows`) asks
  for are read (the rows up to the last one asked for), at most `MAX_RENDER_ROWS` rows and
  `MAX_RENDER_BYTES` in all. Returns {name: array} and '_rows': B (`select_rows` drops it).
  ValueError naming the file."""
  from pulse_jax.io import npy_files
  try:
    members = npy_files.npz_members(path)
  except npy_files.NpyError as e:
    raise ValueError(f"{e} Expected an .npz written by numpy.savez with 'dlatents', 'latent' "
                     "or 'z'.") from None
  shapes = _row_shapes(generator) if generator is not None else {}
  data = {k: m for k, m in members.items() if k not in META}
  if not data:
    raise ValueError(f"{path}: no latents; expected 'dlatents', 'latent' or 'z'.")
  counts = {m.header.shape[0] if m.header.shape else 0 for m in data.values()}
  if len(counts) != 1 or 0 in counts:
    raise ValueError(f"{path}: every array needs the same number (>= 1) of rows; found "
                     + npy_files.listing(f"{k} {m.header.shape}" for k, m in data.items()) + ".")
  b = counts.pop()
  if generator is not None:   # an ILO activation: its layer and shape, from the headers
    layer, parts = ilo_layer(generator, data)
    if layer is not None:
      shapes.update({k: {shape[1:]} for k, (shape, _) in
                     _ilo_shapes(generator, layer, parts, b).items()})
  for k, m in data.items():
    allowed = shapes.get(k)
    if allowed is not None and m.header.shape[1:] not in allowed:
      raise ValueError(f"{path}: '{k}' has shape {m.header.shape}; this generator needs "
                       + " or ".join(f"[B, {', '.join(map(str, a))}]" for a in sorted(allowed))
                       + ".")
  for k in META:
    if k in members and (len(members[k].header.shape) != 1 or members[k].header.shape[0] > b
                         or members[k].header.dtype.kind not in "iu"):
      raise ValueError(f"{path}: '{k}' must be at most {b} row indices (integers), got "
                       f"{members[k].header.shape} {members[k].header.dtype}.")
  meta = {k: members[k].read() for k in META if k in members}
  want = parse_rows(rows)
  if want == "all" or (want == "kept" and "kept" not in meta):
    need = b
  else:
    idx = np.asarray(meta["kept"] if want == "kept" else want, np.int64).reshape(-1)
    need = min(b, int(idx.max()) + 1) if idx.size else b
  if need > MAX_RENDER_ROWS:
    raise ValueError(f"{path}: {need} rows to render, more than {MAX_RENDER_ROWS} (one image "
                     "each) at once; choose rows with --rows=3,0 (or split the file).")
  per_row = sum(m.header.nbytes // b for m in data.values())
  if need * per_row > MAX_RENDER_BYTES:
    raise ValueError(f"{path}: the {need} rows to render hold {need * per_row:,} bytes of "
                     f"latents, noise maps and ILO activations, over {MAX_RENDER_BYTES:,}; "
                     "render fewer rows (--rows=3,0).")
  try:
    out = {k: m.read(rows=need) for k, m in data.items()}
  except npy_files.NpyError as e:
    raise ValueError(str(e)) from None
  out.update(meta)
  out["_rows"] = b
  return out


def parse_rows(rows: str) -> str | list[int]:
  """--rows: 'kept', 'all', or the row indices joined by ','; ValueError otherwise."""
  if rows in ("kept", "all"):
    return rows
  try:
    idx = [int(r) for r in rows.split(",")]
  except ValueError:
    idx = []
  if not idx or min(idx) < 0:
    raise ValueError(f"--rows: expected 'kept', 'all' or row indices like '3,0'; got {rows!r}.")
  return idx


def select_rows(latents: dict, rows: str = "kept") -> dict:
  """The rows to render of a latents dict, without its 'kept' / 'rank' arrays.

  rows (`parse_rows`): 'kept' (the npz's 'kept' rows in that order, or every row when it has
  no 'kept'), 'all', or indices joined by ','.
  """
  rows = parse_rows(rows)
  arrays = {k: v for k, v in latents.items() if k not in META and k != "_rows"}
  if rows == "all" or (rows == "kept" and "kept" not in latents):
    return arrays
  idx = np.asarray(latents["kept"] if rows == "kept" else rows, np.int64).reshape(-1)
  n = latents.get("_rows") or (min(v.shape[0] for v in arrays.values()) if arrays else 0)
  if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
    shown = ", ".join(map(str, idx.tolist()[:8])) + (" ..." if idx.size > 8 else "")
    raise ValueError(f"rows {shown or '(none)'} out of range: the latents have {n} rows.")
  return {k: v[idx] for k, v in arrays.items()}


def styles(generator, params: dict, latents: dict, *, truncation_psi: float = 1.0,
           truncation_cutoff: int | None = None, class_index: int | None = None):
  """The style input ws [B, L, D] of a latents dict: 'dlatents' as is, 'latent' through the
  prior, 'z' through the mapping network (see the module docstring); ValueError otherwise."""
  import jax.numpy as jnp
  found = [k for k in LATENT_KEYS if k in latents]
  if len(found) != 1:
    raise ValueError(f"latents need exactly one of 'dlatents', 'latent' or 'z'; found "
                     f"{', '.join(sorted(latents)[:8]) or 'none'}.")
  key = found[0]
  if key != "z" and (truncation_psi != 1.0 or truncation_cutoff is not None):
    raise ValueError(f"--truncation_psi and --truncation_cutoff apply to 'z' (mapped by the "
                     f"mapping network), not to '{key}'.")
  if key == "dlatents" and class_index is not None:
    raise ValueError("--class_index applies to 'z' and 'latent' (a conditional model's mapping "
                     "or per-class prior), not to 'dlatents'.")
  a = jnp.asarray(latents[key], jnp.float32)
  if key == "dlatents":
    return a
  if key == "latent":
    missing = [p for p in generator.required_parts() if p not in params]
    if missing:
      raise ValueError(f"'latent' is the search variable: mapping it needs {', '.join(missing)}, which "
                       "these weights lack; render 'dlatents' or 'z' instead.")
    if generator.num_classes or class_index is not None:  # the class's prior
      params = generator.search_params(params, class_index)
    return generator.latent_to_w(params, a)
  if a.ndim != 2:
    raise ValueError(f"'z' must be [B, z_dim], got shape {tuple(a.shape)}.")
  return generator.mapping(params, a, truncation_psi, class_index, truncation_cutoff)


def noise_maps(generator, params: dict, latents: dict, batch: int,
               noise_mode: str = "const") -> list:
  """One [B, 1, r, r] unit noise map per noise layer: the npz's noise_<i> (zeros for layers it
  lacks), or, when it has none, the model's constant maps ('const') or zeros ('none')."""
  import jax.numpy as jnp
  if noise_mode not in NOISE_MODES:
    raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
  shapes = generator.noise_shapes
  given = any(f"noise_{i}" in latents for i in range(len(shapes)))
  if not given and noise_mode == "const":
    const = generator.const_noise(params, batch)
    if const is not None:
      return [jnp.asarray(n, jnp.float32) for n in const]
  noise = []
  for i, shape in enumerate(shapes):
    a = latents.get(f"noise_{i}")
    if a is None:
      a = np.zeros((batch,) + shape, np.float32)
    if a.shape != (batch,) + shape:
      raise ValueError(f"noise_{i} has shape {a.shape}, expected {(batch,) + shape}.")
    noise.append(jnp.asarray(a, jnp.float32))
  return noise


def render_arrays(generator, params: dict, latents: dict, *, noise_mode: str = "const",
                  truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                  class_index: int | None = None) -> np.ndarray:
  """Raw generator output [B, C, H, W] float32 (unclamped) for a latents dict: the synthesis
  network from the ws, or, with an 'ilo.<layer>' activation (a run's latents.npz with --ilo),
  the rest of it after that cut point (`Generator.render_from`, the ws and noise maps as
  without)."""
  import jax
  import jax.numpy as jnp
  layer, parts = ilo_layer(generator, latents)
  w = styles(generator, params, {k: v for k, v in latents.items() if k not in parts},
             truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
             class_index=class_index)
  b = w.shape[0]
  expected = (generator.num_layers, generator.latent_dim)
  if w.ndim != 3 or tuple(w.shape[1:]) != expected:
    raise ValueError(f"latents have shape {tuple(w.shape)}; this generator needs [B, "
                     f"{expected[0]}, {expected[1]}].")
  unknown = [k for k in latents if k not in LATENT_KEYS and k not in parts
             and not (k.startswith("noise_") and k[6:].isdigit()
                      and int(k[6:]) < len(generator.noise_shapes))]
  if unknown:
    from pulse_jax.io.npy_files import listing
    raise ValueError(f"unexpected arrays in latents: {listing(unknown)}.")
  noise = noise_maps(generator, params, latents, b, noise_mode)
  if layer is None:
    fn = jax.jit(lambda p, w, n: generator.render(p, w, n))
    return np.asarray(fn(params, w, noise))
  shapes = _ilo_shapes(generator, layer, parts, b)
  for k, (shape, _) in shapes.items():
    if tuple(np.shape(latents[k])) != shape:
      raise ValueError(f"'{k}' has shape {tuple(np.shape(latents[k]))}; the activation at cut "
                       f"point {layer} for these {b} rows is {list(shape)}.")
  arrays = {k: jnp.asarray(latents[k], dtype) for k, (_, dtype) in shapes.items()}
  activation = (next(iter(arrays.values())) if None in parts.values()   # one array
                else {parts[k]: a for k, a in arrays.items()})                # StyleGAN2's parts
  fn = jax.jit(lambda p, w, n, a: generator.render_from(generator.prepare(p), w, n, layer, a))
  return np.asarray(fn(params, w, noise, activation), np.float32)


def output_paths(out: str, rows: int) -> list[str]:
  """The files `write_images` writes for `rows` rows: PATH.npz, PATH.png or PATH_<b>.png."""
  if out.endswith(".npz"):
    return [out]
  stem = out[:-4] if out.lower().endswith(".png") else out
  return [stem + ".png"] if rows == 1 else [f"{stem}_{i}.png" for i in range(rows)]


def check_outputs(paths: list[str], overwrite: bool) -> None:
  """FileExistsError naming the files of `paths` that exist (the first few), unless
  `overwrite`."""
  existing = [p for p in paths if os.path.exists(p)]
  if existing and not overwrite:
    from pulse_jax.io.npy_files import listing
    raise FileExistsError(f"{listing(existing, 4, 1000)} exist{'s' * (len(existing) == 1)}; pass "
                          "--overwrite to replace "
                          f"{'it' if len(existing) == 1 else 'them'}, or choose another --out.")


def write_images(raw: np.ndarray, out: str, overwrite: bool = False) -> list[str]:
  """Writes raw output [B, C, H, W] as PNGs or an npz; returns the paths written."""
  from PIL import Image
  paths = output_paths(out, raw.shape[0])
  check_outputs(paths, overwrite)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if out.endswith(".npz"):
    np.savez(out, image=raw.astype(np.float32))
    return paths
  imgs = to_uint8((raw + 1.0) / 2.0, channels_first=True)
  for p, im in zip(paths, imgs):
    Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im).save(p)
  return paths


def render_file(weights: str | None, latents_path: str, out: str, overwrite: bool = False,
                rows: str = "kept", **options) -> list[str]:
  """Renders `rows` (`select_rows`) of an npz with `weights` (None: the built-in default);
  options: `render_arrays`' noise_mode, truncation_psi, truncation_cutoff, class_index."""
  from pulse_jax import generators
  from pulse_jax.job import builtin_models
  w = builtin_models.load(weights, log=lambda s: None)
  g = generators.Generator(w.kind, w.config)  # rendering needs no prior unless 'latent' is given
  latents = select_rows(load_latents(latents_path, g, rows), rows)
  batch = next(iter(latents.values())).shape[0]
  check_outputs(output_paths(out, batch), overwrite)   # before the render, not after it
  return write_images(render_arrays(g, w.params, latents, **options), out, overwrite)
