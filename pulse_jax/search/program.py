"""The PULSE search as one compiled program over many restarts.

N = B images x R restarts are searched at once, flattened image-major
(n = b * R + r). Every per-restart array has N as its leading axis, so the
whole state can be sharded over devices along that axis; restarts never
interact (the loss is summed over restarts only to take one gradient, and each
restart's variables receive exactly the gradient of its own loss).

All steps run inside `lax.scan`; the scan is cut into chunks of `chunk_size`
steps for progress and intermediate frames. Chunks past the last step are
masked, so every chunk is the same compiled program.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pulse_jax.search import ilo, losses, rank
from pulse_jax.forward import ForwardModel
from pulse_jax.generators import Generator
from pulse_jax.search.optimizers import make_optimizer
from pulse_jax.search.config import SearchConfig


class SearchState(NamedTuple):
  """The carry of the compiled search. Leading axis N on every array but `step`.

  vars: {'latent': [N, l, D], 'noise': {'<i>': [N, 1, r_i, r_i]} trainable layers}
  fixed_noise: {'<i>': [N, 1, r_i, r_i]} random layers that are not optimised
  """
  step: jax.Array              # [] int32, steps done
  vars: dict
  fixed_noise: dict
  opt_state: Any
  best_vars: dict               # the kept ("best") iterate: the rule is `rank.replaces`
  best_total: jax.Array        # [N] float32, its total loss (inf before step 1)
  best_terms: dict             # name -> [N] loss terms at the best iterate
  best_l2: jax.Array           # [N] unclamped L2 at the best iterate
  best_step: jax.Array         # [N] int32, 1-based step of the best iterate (0: none, e.g. a
                               # restart whose losses were never finite)
  min_l2: jax.Array            # [N] lowest unclamped L2 seen at any step
  ends_at: jax.Array           # [N] int32, the step after which the restart stops changing:
                               # `Problem.total_steps`, or earlier once its image has ended
                               # (anytime search, `Problem.stops_early`)
  ilo: ilo.IloState | None = None   # the intermediate-layer search's part (`config.ilo`)


@dataclasses.dataclass(frozen=True)
class Problem:
  """Static shape of one search program (a jit static argument)."""
  generator: Generator
  config: SearchConfig
  factor: int          # generator resolution / input resolution
  chunk_size: int = 25
  # Restarts of a step are computed in this many sequential groups (a `lax.map` inside the
  # step): peak activation memory is that of N / micro_batches restarts, the results are the
  # same. N must be a multiple of micro_batches x the device count.
  micro_batches: int = 1
  # The degradation HR -> what the camera saw (blur, down-sampling, grayscale; its factor is
  # `factor`). None: the reference's bicubic down-sampling by `factor`.
  forward: ForwardModel | None = None
  # The layout of the rows, needed only by the anytime search (config.stop_within > 0): rows
  # n < images * restarts are restart n % restarts of image n // restarts; the rest are padding
  # (computed, never counted). 0: every row is a restart of one image.
  images: int = 0
  restarts: int = 0

  def __post_init__(self):
    cfg, g = self.config, self.generator
    if g.num_noise_layers:
      cfg.check_layers(g.num_noise_layers)
    if self.factor < 1 or g.resolution % self.factor:
      raise ValueError(f"factor {self.factor} does not divide the generator size {g.resolution}.")
    if self.chunk_size < 1:
      raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}.")
    if self.micro_batches < 1:
      raise ValueError(f"micro_batches must be >= 1, got {self.micro_batches}.")
    if self.forward is None:
      object.__setattr__(self, "forward", ForwardModel(factor=self.factor))
    elif self.forward.factor != self.factor:
      raise ValueError(f"forward model factor {self.forward.factor} != factor {self.factor}.")
    self.forward.check_hr_shape((g.num_channels, g.resolution, g.resolution))
    ilo.layers(cfg, g)   # ValueError naming the cut points

  @property
  def ilo_layers(self) -> tuple[str, ...]:
    """The cut points the ILO search visits after the latent search; () without config.ilo."""
    return ilo.layers(self.config, self.generator)

  @property
  def ilo_starts(self) -> tuple[int, ...]:
    """The step at which each of `ilo_layers` is entered."""
    return ilo.phase_starts(self.config, len(self.ilo_layers))

  @property
  def total_steps(self) -> int:
    """Steps of the whole search: config.steps, plus config.ilo_steps per ILO layer."""
    return ilo.total_steps(self.config, len(self.ilo_layers))

  @property
  def stops_early(self) -> bool:
    """Whether an image's search ends once config.stop_within of its restarts are within eps."""
    return self.config.stop_within > 0

  @property
  def loss_terms(self) -> tuple[tuple[float, str], ...]:
    return losses.parse_loss_str(self.config.loss_str)

  @property
  def latent_shape(self) -> tuple[int, int]:
    g = self.generator
    return (g.latent_layers(self.config.tile_latent), g.latent_dim)

  def noise_kinds(self) -> tuple[str, ...]:
    g = self.generator
    return self.config.noise_layer_kinds(g.num_noise_layers) if g.num_noise_layers else ()

  @property
  def lr_size(self) -> int:
    return self.generator.resolution // self.factor

  @property
  def lr_channels(self) -> int:
    return self.forward.target_channels or self.generator.num_channels

  def optimizer(self) -> optax.GradientTransformation:
    c = self.config
    return make_optimizer(c.opt_name, c.learning_rate, c.lr_schedule, c.steps)


def restart_keys(seed: int, image_keys: jax.Array, restart_ids: jax.Array) -> jax.Array:
  """One PRNG key per restart from (seed, image key, restart index) only. Shapes [N]."""
  base = jax.random.key(seed)
  return jax.vmap(lambda i, r: jax.random.fold_in(jax.random.fold_in(base, i), r))(
      image_keys.astype(jnp.uint32), restart_ids.astype(jnp.uint32))


def _draw_initial(problem: Problem, keys: jax.Array) -> tuple[jax.Array, dict]:
  """Standard-normal latent [N, l, D] and every non-zero noise map {'<i>': [N, 1, r, r]}.

  Per restart, one draw for the latent and one for all noise maps together (cut into
  layers), so a layer's values do not depend on which layers the options zero.
  """
  shapes = problem.generator.noise_shapes
  sizes = [int(np.prod(s)) for s in shapes]
  offsets = np.cumsum([0] + sizes)

  dtype = problem.generator.float_dtype

  def one(key):
    latent = jax.random.normal(jax.random.fold_in(key, 0), problem.latent_shape, dtype)
    flat = jax.random.normal(jax.random.fold_in(key, 1), (int(offsets[-1]),), dtype)
    noise = {str(i): flat[offsets[i]:offsets[i + 1]].reshape(shapes[i])
             for i, k in enumerate(problem.noise_kinds()) if k != "zero"}
    return latent, noise
  return jax.vmap(one)(keys)


def _split_noise(problem: Problem, noise: dict) -> tuple[dict, dict]:
  kinds = problem.noise_kinds()
  trainable = {k: v for k, v in noise.items() if kinds[int(k)] == "trainable"}
  fixed = {k: v for k, v in noise.items() if kinds[int(k)] == "fixed"}
  return trainable, fixed


def _noise_list(problem: Problem, n: int, trainable: dict, fixed: dict):
  shapes = problem.generator.noise_shapes
  out = []
  for i, _ in enumerate(shapes):
    k = str(i)
    out.append(trainable[k] if k in trainable else fixed[k] if k in fixed
               else jnp.zeros((n,) + shapes[i], problem.generator.float_dtype))
  return out


def _render(problem: Problem, prepared: dict, w: jax.Array, noise: list, acts: dict | None,
            phase: jax.Array | None) -> jax.Array:
  """The generator's output [N, C, H, W] in phase `phase` ([] int32): 0 from the latent, k from
  the activation of the k-th ILO layer (`acts`), the latent and noise then held fixed."""
  g = problem.generator
  if not problem.ilo_layers or acts is None:
    return g.render_prepared(prepared, w, noise)
  fixed = lambda t: jax.tree.map(jax.lax.stop_gradient, t)
  branches = [lambda w, noise, acts: g.render_prepared(prepared, w, noise)] + [
      (lambda w, noise, acts, layer=layer: g.render_from(prepared, fixed(w), fixed(noise), layer,
                                                          acts[layer]))
      for layer in problem.ilo_layers]
  return jax.lax.switch(phase, branches, w, noise, acts)


def evaluate(problem: Problem, prepared: dict, vars: dict, fixed_noise: dict, ref: jax.Array,
             mask: jax.Array | None, fwd_arrays: dict | None = None, acts: dict | None = None,
             phase: jax.Array | None = None):
  """Per-restart losses of the current variables; prepared: `problem.generator.prepare(params)`.

  ref: [N, C', h, w] targets; mask: [N, 1, h, w] known-pixel weights or None; fwd_arrays: the
  forward model's shared arrays (`ForwardModel.arrays()`, e.g. a user blur kernel); acts,
  phase: the ILO activations {layer: [N, ...]} and the phase ([] int32, 0: the latent search)
  when `problem.ilo_layers`.
  Returns (total [N], terms {name: [N]}, l2_raw [N], hr [N, C, H, W] in ~[0, 1],
  lr [N, C', h, w] = forward(hr)).
  """
  g = problem.generator
  x = vars["latent"]
  n = x.shape[0]
  w = g.latent_to_w(prepared, x)
  noise = _noise_list(problem, n, vars.get("noise", {}), fixed_noise)
  hr = (_render(problem, prepared, w, noise, acts, phase) + 1.0) / 2.0
  lr = problem.forward.apply(hr, fwd_arrays)
  total, terms = losses.total_loss(problem.loss_terms, w if g.has_wplus else w[:, :1], lr, ref,
                                   problem.config.eps, mask=mask)
  l2_raw = losses.l2_raw(lr, ref, mask=mask)
  return total, terms, l2_raw, hr, lr


@functools.partial(jax.jit, static_argnames=("problem",))
def init_state(problem: Problem, image_keys: jax.Array, restart_ids: jax.Array,
               start: dict | None = None) -> SearchState:
  """Initial state for N restarts.

  image_keys, restart_ids: [N] int; start: optional {'latent': [N, l, D], 'noise': {'<i>': ...}}
  starting values (standard-normal variables, as a previous search writes them); layers it
  lacks are drawn from the restart's key.
  """
  keys = restart_keys(problem.config.seed, image_keys, restart_ids)
  latent, noise = _draw_initial(problem, keys)
  if start is not None:
    latent = start.get("latent", latent)
    noise = {k: start.get("noise", {}).get(k, v) for k, v in noise.items()}
  trainable, fixed = _split_noise(problem, noise)
  vars = {"latent": latent, "noise": trainable}
  n = latent.shape[0]
  names = tuple(name for _, name in problem.loss_terms)
  inf = jnp.full((n,), jnp.inf, problem.generator.float_dtype)
  ilo_state = None
  if problem.ilo_layers:
    ilo_state = ilo.init_state(problem.config, {
        layer: problem.generator.activation_shapes(layer, batch=n)
        for layer in problem.ilo_layers})
  return SearchState(
      step=jnp.zeros((), jnp.int32), vars=vars, fixed_noise=fixed,
      opt_state=problem.optimizer().init(vars), best_vars=vars, best_total=inf,
      best_terms={k: inf for k in names}, best_l2=inf,
      best_step=jnp.zeros((n,), jnp.int32), min_l2=inf,
      ends_at=jnp.full((n,), problem.total_steps, jnp.int32), ilo=ilo_state)


def _to_groups(tree, groups: int):
  """Leading axis N -> [groups, N / groups]; group g holds rows g, g + groups, g + 2 groups, ...

  Strided, so that when N is split over devices in contiguous blocks whose size is a multiple
  of `groups`, every group has rows on every device and the regrouping is local (no
  communication; tests/runtime/test_sharding.py reads the HLO).
  """
  def one(x):
    n = x.shape[0]
    if n % groups:
      raise ValueError(f"{n} rows are not a multiple of micro_batches={groups}.")
    return jnp.swapaxes(x.reshape((n // groups, groups) + x.shape[1:]), 0, 1)
  return jax.tree.map(one, tree)


def _from_groups(tree):
  """Inverse of `_to_groups`: [groups, N / groups, ...] -> [N, ...]."""
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:]), tree)


def map_restarts(problem: Problem, fn: Callable, *row_trees, exact: bool = True):
  """fn(*row_trees) computed in `problem.micro_batches` sequential groups of restarts.

  Every leaf of `row_trees` (and of fn's output) has leading axis N; fn must treat rows
  independently. With one micro-batch this is just fn(*row_trees). exact=False: for any N,
  gcd(N, micro_batches) groups (the final renders of a few selected rows).
  """
  g = problem.micro_batches
  if not exact:
    g = math.gcd(g, jax.tree.leaves(row_trees)[0].shape[0])
  if g == 1:
    return fn(*row_trees)
  out = jax.lax.map(lambda args: fn(*args), _to_groups(row_trees, g))
  return _from_groups(out)


def _where_rows(pred: jax.Array, a, b):
  """Per-restart select over pytrees with leading axis N."""
  return jax.tree.map(lambda x, y: jnp.where(pred.reshape(pred.shape + (1,) * (x.ndim - 1)), x, y),
                      a, b)


def within_per_row(problem: Problem, within: jax.Array) -> jax.Array:
  """[N] int32: for each row, how many restarts of its image are within eps (`within`: [N]
  bool per row). Padding rows get the count of the last image (they are more restarts of it)
  but are never counted. With `problem.images` 0 every row belongs to one image."""
  n = within.shape[0]
  b, r = problem.images, problem.restarts
  if not b:
    return jnp.broadcast_to(jnp.sum(within, dtype=jnp.int32), (n,))
  counts = jnp.sum(within[:b * r].reshape(b, r), axis=1, dtype=jnp.int32)        # [B]
  return jnp.concatenate([jnp.repeat(counts, r), jnp.full((n - b * r,), counts[-1])])


def ends_after(problem: Problem, state: SearchState, best_l2: jax.Array) -> jax.Array:
  """[N] int32 `ends_at` after a step: once config.stop_within restarts of an image are within
  eps (its kept iterates', `best_l2`: [N]), its rows end config.stop_extra_steps steps later
  (at most `problem.total_steps`). Decided once per image; exact to the step, whatever the chunk size."""
  c, steps = problem.config, problem.total_steps
  count = within_per_row(problem, rank.within_eps(best_l2, c.eps))
  undecided = state.ends_at == steps
  end = jnp.minimum(state.step + 1 + c.stop_extra_steps, steps).astype(jnp.int32)
  return jnp.where(undecided & (count >= c.stop_within), end, state.ends_at)


def _enter_layer(problem: Problem, prepared: dict, s: SearchState) -> SearchState:
  """At the first step of an ILO layer: the kept iterate re-expressed at that layer (its
  activation there becomes the variable, the ball's centre and the kept activation); the
  latent and noise go back to the kept iterate's. The kept image is unchanged."""
  g, layers = problem.generator, problem.ilo_layers

  def entering(k: int):
    layer = layers[k]

    def activation(best_vars, fixed_noise, best_acts):
      n = best_vars["latent"].shape[0]
      w = g.latent_to_w(prepared, best_vars["latent"])
      noise = _noise_list(problem, n, best_vars.get("noise", {}), fixed_noise)
      if k == 0:
        return g.render_until(prepared, w, noise, layer)
      return g.render_from(prepared, w, noise, layers[k - 1], best_acts[layers[k - 1]],
                           until=layer)

    def enter(s: SearchState) -> SearchState:
      a = map_restarts(problem, activation, s.best_vars, s.fixed_noise, s.ilo.best_acts)
      st = s.ilo
      return s._replace(vars=s.best_vars, ilo=st._replace(
          acts={**st.acts, layer: a}, centres={**st.centres, layer: a},
          best_acts={**st.best_acts, layer: a}))
    return enter

  k = ilo.phase_at(problem.ilo_starts, s.step) - 1
  return jax.lax.switch(jnp.clip(k, 0, len(layers) - 1), [entering(i) for i in range(len(layers))],
                        s)


def chunk_steps(problem: Problem, prepared: dict, state: SearchState, ref: jax.Array,
                mask: jax.Array | None = None,
                fwd_arrays: dict | None = None) -> tuple[SearchState, dict]:
  """`problem.chunk_size` steps on prepared weights (`problem.generator.prepare(params)`,
  computed once per search by the loop, `runtime.loop`). Steps past `problem.total_steps` are
  masked (they change nothing); the loop runs a last chunk of the exact remaining length, so
  none is computed. (A `lax.cond` per step would skip them too, but costs ~15% per step on
  XLA:CPU.)

  ref: [N, C', h, w] target LR images in [0, 1]; mask: optional [N, 1, h, w] loss weights (0 on
  padding and unknown pixels); fwd_arrays: the forward model's shared arrays (replicated).
  Returns the new state and the trace {'TOTAL', term names..., 'L2_raw': [chunk, N],
  'active': [chunk] bool} of the losses at each step's variables before its update.
  Anytime search (`problem.stops_early`): a row whose image has ended (`state.ends_at`) stops
  changing and its trace entries are NaN. ILO (`problem.ilo_layers`, `search/ilo.py`): the
  steps after config.steps search one layer's activation each (`ilo.phase_at`).
  """
  opt = problem.optimizer()
  steps = problem.total_steps
  layers, starts = problem.ilo_layers, problem.ilo_starts
  ilo_opt = ilo.optimizer(problem.config) if layers else None

  def loss_fn(vars, acts, fixed_noise, ref, mask, phase):
    total, terms, l2_raw, _, _ = evaluate(problem, prepared, vars, fixed_noise, ref, mask,
                                          fwd_arrays, acts, phase)
    return jnp.sum(total), (total, terms, l2_raw)

  def losses_and_grads(vars, acts, fixed_noise, ref, mask, phase):
    """Per-restart losses and each restart's gradient (the sum's gradient: rows independent)."""
    (_, aux), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        vars, acts, fixed_noise, ref, mask, phase)
    return aux, grads

  def update_latent(grads, s: SearchState):
    updates, opt_state = opt.update(grads[0], s.opt_state, s.vars)
    return optax.apply_updates(s.vars, updates), opt_state, s.ilo

  def update_layer(layer: str):
    def update(grads, s: SearchState):
      st = s.ilo
      updates, layer_opt = ilo_opt.update(grads[1][layer], st.opt_state[layer], st.acts[layer])
      act = ilo.project(problem.config, optax.apply_updates(st.acts[layer], updates),
                        st.centres[layer])
      return s.vars, s.opt_state, st._replace(acts={**st.acts, layer: act},
                                              opt_state={**st.opt_state, layer: layer_opt})
    return update

  def step(s: SearchState, _):
    if layers:   # entering a layer: the kept iterate re-expressed there
      s = jax.lax.cond(jnp.any(s.step == jnp.asarray(starts, jnp.int32)),
                       functools.partial(_enter_layer, problem, prepared), lambda s: s, s)
      phase = ilo.phase_at(starts, s.step)
      acts = s.ilo.acts
    else:
      phase, acts = None, None
    (total, terms, l2_raw), grads = map_restarts(
        problem, lambda v, a, f, r, m: losses_and_grads(v, a, f, r, m, phase), s.vars, acts,
        s.fixed_noise, ref, mask)
    active = s.step < steps
    # per row: the anytime search freezes the rows of ended images
    rows = active & (s.step < s.ends_at) if problem.stops_early else active
    improved = rows & rank.replaces(total, l2_raw, s.best_total, s.best_l2,
                                    problem.config.eps)
    if layers:
      new_vars, opt_state, new_ilo = jax.lax.switch(
          phase, [update_latent] + [update_layer(layer) for layer in layers], grads, s)
    else:
      new_vars, opt_state, new_ilo = update_latent(grads, s)
    def keep(new, old):  # per-row leaves follow `rows`; shared ones (adam's count) `active`
      n = rows.shape[0] if problem.stops_early else -1
      return jax.tree.map(
          lambda a, b: (jnp.where(rows.reshape((n,) + (1,) * (a.ndim - 1)), a, b)
                        if a.ndim and a.shape[0] == n else jnp.where(active, a, b)), new, old)
    best_l2 = jnp.where(improved, l2_raw, s.best_l2)
    ilo_state = s.ilo
    if layers:
      ilo_state = ilo.IloState(
          acts=keep(new_ilo.acts, s.ilo.acts), centres=s.ilo.centres,
          opt_state=keep(new_ilo.opt_state, s.ilo.opt_state),
          best_acts=_where_rows(improved, s.ilo.acts, s.ilo.best_acts))
    s = SearchState(
        step=s.step + active.astype(jnp.int32),
        vars=keep(new_vars, s.vars),
        fixed_noise=s.fixed_noise,
        opt_state=keep(opt_state, s.opt_state),
        best_vars=_where_rows(improved, s.vars, s.best_vars),
        best_total=jnp.where(improved, total, s.best_total),
        best_terms=_where_rows(improved, terms, s.best_terms),
        best_l2=best_l2,
        best_step=jnp.where(improved, s.step + 1, s.best_step),
        min_l2=jnp.where(rows, jnp.fmin(s.min_l2, l2_raw), s.min_l2),  # NaN-proof
        ends_at=ends_after(problem, s, best_l2) if problem.stops_early else s.ends_at,
        ilo=ilo_state)
    losses_now = {"TOTAL": total, "L2_raw": l2_raw, **terms}
    if problem.stops_early:  # the steps a row did not run are not in its trace
      losses_now = jax.tree.map(lambda v: jnp.where(rows, v, jnp.nan), losses_now)
    trace = {**losses_now, "active": active}
    if problem.stops_early:
      trace["running"] = rows   # [N] bool: the row ran this step
    return s, trace

  return jax.lax.scan(step, state, None, length=problem.chunk_size)


@functools.partial(jax.jit, static_argnames=("problem",), donate_argnames=("state",))
def run_chunk_prepared(problem: Problem, prepared: dict, state: SearchState, ref: jax.Array,
                       mask: jax.Array | None = None,
                       fwd_arrays: dict | None = None) -> tuple[SearchState, dict]:
  """`chunk_steps` jitted, the state donated."""
  return chunk_steps(problem, prepared, state, ref, mask, fwd_arrays)


@functools.partial(jax.jit, static_argnames=("problem",), donate_argnames=("state",))
def run_chunk(problem: Problem, params: dict, state: SearchState, ref: jax.Array,
              mask: jax.Array | None = None,
              fwd_arrays: dict | None = None) -> tuple[SearchState, dict]:
  """`chunk_steps` from stored parameters (prepared inside the program, outside its step
  loop): params: generator parameters. One call from parameters, for tests and experiments;
  the search loop (`runtime.loop`) runs `run_chunk_prepared` on weights prepared once."""
  return chunk_steps(problem, problem.generator.prepare(params), state, ref, mask, fwd_arrays)


def best_images(problem: Problem, prepared: dict, state: SearchState, ref: jax.Array,
                mask: jax.Array | None = None, fwd_arrays: dict | None = None) -> dict:
  """HR and LR images of each restart's best iterate, recomputed from its variables (with ILO,
  from the kept activation of the layer `state.step` has reached), on prepared weights.

  Returns {'hr': [N, C, H, W], 'lr': [N, C', h, w]} in [0, 1] (clamped) and the losses of
  that iterate ('total', 'l2_raw', term names: [N]).
  """
  acts = state.ilo.best_acts if state.ilo is not None else None
  phase = ilo.kept_phase(problem.ilo_starts, state.step)
  total, terms, l2_raw, hr, lr = map_restarts(
      problem, lambda v, a, f, r, m: evaluate(problem, prepared, v, f, r, m, fwd_arrays, a, phase),
      state.best_vars, acts, state.fixed_noise, ref, mask, exact=False)
  return {"hr": jnp.clip(hr, 0.0, 1.0), "lr": jnp.clip(lr, 0.0, 1.0), "total": total,
          "l2_raw": l2_raw, **terms}


render_best_prepared = jax.jit(best_images, static_argnames=("problem",))


def start_values_of(problem: Problem, state: SearchState) -> dict:
  """Each restart's best iterate in the start-values format: {'latent': [N, l, D], 'noise_<i>': [N, 1, r, r]}.

  Includes every non-zero noise map (trainable and fixed), so a search started from it
  continues from the same point, and with ILO the kept activation (`kept_activation`).
  """
  vars = state.best_vars
  out = {"latent": vars["latent"]}
  for k, v in {**state.fixed_noise, **vars.get("noise", {})}.items():
    out[f"noise_{k}"] = v
  out.update(kept_activation(problem, state))
  return out


ILO_PREFIX = "ilo."   # start-values / latents.npz keys of the kept ILO activation


def kept_activation(problem: Problem, state: SearchState) -> dict:
  """With ILO, once a layer was entered: the kept iterate's activation at the last layer
  entered, {'ilo.<layer>': [N, ...]} (a pytree activation: 'ilo.<layer>.<key>' per leaf), what
  `Generator.render_from` needs with the latent and noise maps to re-render the kept image.
  {} otherwise. (A host-side read: `state.step` decides the layer.)"""
  if state.ilo is None:
    return {}
  phase = int(ilo.kept_phase(problem.ilo_starts, state.step))
  if phase == 0:
    return {}
  layer = problem.ilo_layers[phase - 1]
  act = state.ilo.best_acts[layer]
  if isinstance(act, dict):
    return {f"{ILO_PREFIX}{layer}.{k}": v for k, v in act.items()}
  return {f"{ILO_PREFIX}{layer}": act}


def start_from_npz_dict(problem: Problem, d: dict, n: int, images: int) -> dict:
  """Checks and expands start values {'latent', 'noise_<i>'} to N = images x restarts rows.

  Arrays may hold R rows (shared by every image) or images x R rows (image-major).
  """
  restarts = n // images
  dtype = problem.generator.float_dtype
  lat = np.asarray(d["latent"], dtype) if "latent" in d else None
  out: dict = {"noise": {}}

  def rows(name, a, shape):
    if a.shape[1:] != shape:
      raise ValueError(f"start values: {name} has shape {a.shape}, expected [R or B*R, "
                       f"{', '.join(map(str, shape))}] for this generator and options.")
    if a.shape[0] == n:
      return a
    if a.shape[0] == restarts:
      return np.tile(a, (images,) + (1,) * (a.ndim - 1))
    raise ValueError(f"start values: {name} has {a.shape[0]} rows; expected {restarts} "
                     f"(restarts) or {n} (images x restarts).")

  if lat is not None:
    out["latent"] = rows("latent", lat, problem.latent_shape)
  kinds = problem.noise_kinds()
  shapes = problem.generator.noise_shapes
  for key, a in d.items():
    if key == "latent" or key.startswith(ILO_PREFIX):
      continue   # an ILO activation: a search starts from the latent and noise maps
    if not key.startswith("noise_"):
      raise ValueError(f"start values: unexpected array {key!r}; expected 'latent' and "
                       "'noise_<layer>'.")
    i = int(key[len("noise_"):])
    if not 0 <= i < len(shapes):
      raise ValueError(f"start values: {key} is not a noise layer of this generator "
                       f"(layers 0..{len(shapes) - 1}).")
    if kinds[i] == "zero":
      continue  # zero by the options (noise_type / bad_noise_layers)
    out["noise"][str(i)] = rows(key, np.asarray(a, dtype), shapes[i])
  return out
