"""Cut points (ILO): every family's synthesis cut at each of its cut points and resumed equals
the whole synthesis.

`render_from(layer, render_until(layer))` is `render_prepared` bit for bit when both halves
run in one compiled program (as the whole does) and when run op by op; compiled as two
separate programs, XLA fuses across the cut differently for StyleGAN2 (measured up to 3.1e-7
of the output range on these networks; bit for bit for the others). Random weights, small
networks.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax import generators
from pulse_jax.generators.base import Family
from pulse_jax.nets import dcgan, stylegan1, stylegan2 as sg2, stylegan3 as sg3

SPLIT_APART_TOL = 1e-6  # of max |image|: two programs, float32 rounding of other fusions


def _jitter(params, seed: int, scale: float):
  """Random weights: `params` plus scale * N(0, 1) (zero biases and noise weights become
  non-zero, so every term of the network is exercised)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [a + scale * jax.random.normal(k, a.shape, a.dtype)
                                      for a, k in zip(leaves, keys)])


def _dcgan():
  cfg = dcgan.DCGANConfig(nz=8, ngf=4)
  p = _jitter(dcgan.DCGANGenerator(cfg).init(jax.random.key(1), jnp.zeros((1, 8)))["params"],
              2, 0.1)
  p = {k: {**v, "var": jnp.abs(v["var"]) + 0.5} if "var" in v else v for k, v in p.items()}
  return generators.Generator("dcgan", cfg), {"dcgan": p}


def _stylegan1(resolution=32, compute_dtype="float32", remat="none"):
  cfg = stylegan1.StyleGANConfig(resolution=resolution, fmap_base=256, fmap_max=8,
                                 dlatent_size=16)
  p = _jitter(stylegan1.init_synthesis_params(jax.random.key(3), cfg), 4, 0.2)
  return generators.Generator("stylegan", cfg, compute_dtype, remat), {"synthesis": p}


def _stylegan2(architecture="skip", use_noise=True):
  cfg = sg2.Stylegan2Config(z_dim=16, w_dim=16, img_resolution=32, channel_base=128,
                            channel_max=8, mapping_layers=2, architecture=architecture,
                            use_noise=use_noise, conv_clamp=0.5 if architecture == "skip" else None)
  p = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.full_like(v, 0.3) if "noise_strength" in jax.tree_util.keystr(path)
      else v, sg2.init_params(jax.random.key(5), cfg))
  return generators.Generator("stylegan2", cfg), p


def _stylegan3(radial=False):
  cfg = sg3.Stylegan3Config(z_dim=16, w_dim=16, img_resolution=32, channel_base=1024,
                            channel_max=16, mapping_num_layers=2, use_radial_filters=radial)
  return generators.Generator("stylegan3", cfg), sg3.init_params(jax.random.key(6), cfg)


CASES = {
    "dcgan": _dcgan,
    "stylegan_32": _stylegan1,
    "stylegan_128_bfloat16_remat": lambda: _stylegan1(128, "bfloat16", "block"),
    "stylegan2_skip": _stylegan2,
    "stylegan2_orig_no_noise": lambda: _stylegan2("orig", use_noise=False),
    "stylegan2_resnet": lambda: _stylegan2("resnet"),
    "stylegan3_t": _stylegan3,
    "stylegan3_r": lambda: _stylegan3(radial=True),
}


def _inputs(g, batch=3, seed=0):
  """ws [batch, num_ws, w_dim] and unit noise maps, standard normal."""
  k_w, k_n = jax.random.split(jax.random.key(seed))
  ws = jax.random.normal(k_w, (batch, g.num_layers, g.latent_dim))
  keys = jax.random.split(k_n, max(g.num_noise_layers, 1))
  return ws, [jax.random.normal(k, (batch,) + s) for k, s in zip(keys, g.noise_shapes)]


@pytest.mark.slow  # each case compiles for 3 to 20 s on 2 CPU cores
@pytest.mark.parametrize("name", CASES)
def test_every_cut_point_resumes_to_the_same_image_bit_for_bit(name):
  g, params = CASES[name]()
  ws, noise = _inputs(g)
  assert g.ilo_layers, "every family has cut points"

  @jax.jit
  def whole_and_split(prepared, ws, noise):
    acts = {layer: g.render_until(prepared, ws, noise, layer) for layer in g.ilo_layers}
    return (g.render_prepared(prepared, ws, noise), acts,
            {layer: g.render_from(prepared, ws, noise, layer, a) for layer, a in acts.items()})

  whole, acts, split = whole_and_split(g.prepare(params), ws, noise)
  whole = np.asarray(whole)
  assert np.all(np.isfinite(whole)) and np.abs(whole).max() > 0
  for layer in g.ilo_layers:
    np.testing.assert_array_equal(np.asarray(split[layer]), whole, err_msg=layer)
    want = g.activation_shapes(layer, batch=ws.shape[0])
    assert jax.tree.structure(want) == jax.tree.structure(acts[layer]), layer
    for got, shape in zip(jax.tree.leaves(acts[layer]), jax.tree.leaves(want)):
      assert (got.shape, got.dtype) == (shape.shape, shape.dtype), layer


@pytest.mark.slow
def test_op_by_op_halves_are_the_whole_bit_for_bit():
  for make in (_dcgan, _stylegan2):
    g, params = make()
    ws, noise = _inputs(g, batch=2)
    prepared = g.prepare(params)
    whole = np.asarray(g.render_prepared(prepared, ws, noise))
    for layer in g.ilo_layers:
      act = g.render_until(prepared, ws, noise, layer)
      np.testing.assert_array_equal(np.asarray(g.render_from(prepared, ws, noise, layer, act)),
                                    whole, err_msg=f"{g.kind} {layer}")


@pytest.mark.slow
def test_halves_compiled_apart_agree_to_float32_rounding():
  g, params = _stylegan2()
  ws, noise = _inputs(g)
  prepared = g.prepare(params)
  until = jax.jit(g.render_until, static_argnums=3)
  resume = jax.jit(g.render_from, static_argnums=3)
  whole = np.asarray(jax.jit(g.render_prepared)(prepared, ws, noise))
  for layer in g.ilo_layers:
    got = np.asarray(resume(prepared, ws, noise, layer, until(prepared, ws, noise, layer)))
    assert np.abs(got - whole).max() <= SPLIT_APART_TOL * np.abs(whole).max(), layer


@pytest.mark.slow
@pytest.mark.parametrize("make", [_stylegan2, lambda: _stylegan1(32, "float32", "block")],
                         ids=["stylegan2", "stylegan_remat_block"])
def test_gradients_through_the_cut_are_those_of_the_whole(make):
  g, params = make()
  ws, noise = _inputs(g, batch=2)
  layer = g.ilo_default_layers[-1]
  whole = lambda p, ws: jnp.sum(jnp.square(g.render_prepared(p, ws, noise)))
  split = lambda p, ws: jnp.sum(jnp.square(
      g.render_from(p, ws, noise, layer, g.render_until(p, ws, noise, layer))))
  prepared = g.prepare(params)
  want, got = jax.jit(lambda p, ws: (jax.grad(whole, 1)(p, ws), jax.grad(split, 1)(p, ws)))(
      prepared, ws)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # The activation is a variable of its own: the image depends on it.
  act = g.render_until(prepared, ws, noise, layer)
  d_act = jax.grad(lambda a: jnp.sum(jnp.square(g.render_from(prepared, ws, noise, layer, a))))(
      act)
  assert all(np.abs(np.asarray(d)).max() > 0 for d in jax.tree.leaves(d_act))


def test_cut_point_names_of_the_full_size_architectures():
  sg2_1024 = generators.Generator("stylegan2", sg2.Stylegan2Config())
  assert sg2_1024.ilo_layers == tuple(f"b{2 ** k}" for k in range(2, 10))  # b4 .. b512
  assert sg2_1024.ilo_default_layers == ("b4", "b8", "b16")
  assert sg2_1024.activation_shapes("b16") == {
      "x": jax.ShapeDtypeStruct((1, 16, 16, 512), jnp.float32),
      "img": jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)}
  sg1_1024 = generators.Generator("stylegan", stylegan1.StyleGANConfig(), "bfloat16")
  assert sg1_1024.ilo_layers == tuple(f"b{2 ** k}" for k in range(2, 11))  # b4 .. b1024
  assert sg1_1024.activation_shapes("b8") == jax.ShapeDtypeStruct((1, 8, 8, 512), jnp.bfloat16)
  sg3_1024 = sg3.Stylegan3Config()
  g3 = generators.Generator("stylegan3", sg3_1024)
  names = [s.name for s in sg3_1024.layer_specs]
  assert g3.ilo_layers == ("input",) + tuple(names[:-1]) and names[0] == "L0_36_512"
  assert g3.ilo_default_layers == tuple(names[:4])
  gd = generators.Generator("dcgan", dcgan.DCGANConfig())
  assert gd.ilo_layers == ("b4", "b8", "b16", "b32") and gd.ilo_default_layers == ("b4", "b8")
  assert gd.activation_shapes("b8", batch=5) == jax.ShapeDtypeStruct((5, 8, 8, 256), jnp.float32)
  for g in (sg2_1024, sg1_1024, g3, gd):
    first = g.ilo_layers.index(g.ilo_default_layers[0])  # defaults: a run of cut points
    assert g.ilo_default_layers == g.ilo_layers[first:first + len(g.ilo_default_layers)]


def test_an_unknown_cut_point_is_refused_with_the_names():
  g = generators.Generator("stylegan2", sg2.Stylegan2Config(img_resolution=32))
  with pytest.raises(ValueError, match="no cut point 'b32'.*b4, b8, b16"):  # b32: the image
    g.render_until({"synthesis": {}}, jnp.zeros((1, g.num_layers, g.latent_dim)), [], "b32")
  gd = generators.Generator("dcgan", dcgan.DCGANConfig())
  with pytest.raises(ValueError, match="no cut point 'block1'"):
    gd.render_from({"dcgan": {}}, jnp.zeros((1, 1, 100)), [], "block1", None)


def test_a_family_without_cut_points_says_so():
  class Plain(Family):
    kind = "plain"
    config_from_dict = part_shapes = resolution = num_channels = num_ws = w_dim = None
    synthesize = prior = None

  assert Plain().ilo_layers(None) == () and Plain().ilo_default_layers(None) == ()
  with pytest.raises(ValueError, match="no cut points"):
    Plain().synthesize_until({}, None, None, [], jnp.float32, "none", "b4")


def test_stages_between_two_cuts_and_the_wrong_order_refused():
  from pulse_jax.nets.stages import Stage, run_stages
  stages = [Stage(name, lambda s, name=name: (s or ()) + (name,)) for name in ("a", "b", "c", "d")]
  assert run_stages(stages) == ("a", "b", "c", "d")
  assert run_stages(stages, until="b") == ("a", "b")
  assert run_stages(stages, ("x",), after="b") == ("x", "c", "d")
  assert run_stages(stages, ("x",), after="a", until="c") == ("x", "b", "c")
  assert run_stages(stages, ("x",), after="b", until="b") == ("x",)   # nothing between
  with pytest.raises(ValueError, match="'a' does not come after 'c'"):
    run_stages(stages, ("x",), after="c", until="a")
  cfg = dcgan.DCGANConfig(nz=8, ngf=4)
  g = generators.Generator("dcgan", cfg)

  def until_before_the_cut():   # traced only (eval_shape): the order is checked while tracing
    params = {"dcgan": dcgan.DCGANGenerator(cfg).init(jax.random.key(1), jnp.zeros((1, 8)))[
        "params"]}
    act = jnp.zeros(g.activation_shapes("b16", batch=1).shape)
    return g.render_from(g.prepare(params), jnp.zeros((1, g.num_layers, g.latent_dim)), [],
                         "b16", act, until="b8")
  with pytest.raises(ValueError, match="does not come after"):
    jax.eval_shape(until_before_the_cut)
