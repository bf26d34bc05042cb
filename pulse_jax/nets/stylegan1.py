"""StyleGAN v1 synthesis and mapping networks in Flax (linen).

Matches the PULSE reference (a PyTorch port of NVIDIA's StyleGAN) exactly:
equalised learning rate, learned constant input, per-pixel noise with a
per-channel weight, LeakyReLU(0.2), instance norm, style modulation, nearest
2x up-sampling + 3x3 conv below 128 px and the fused transposed conv from 128 px
up, the [1,2,1] blur, and a 1x1 to-RGB conv at the last block.

Public tensors are NCHW as in the reference; activations are NHWC inside.

Parameter tree of `SynthesisNetwork` (C_i = channels of layer i, HWIO kernels):
  block_b (b = 0 .. log2(res) - 2), holding layers i = 2b and 2b + 1:
    const [1, 4, 4, C_0]                       (block_0 only)
    conv_i {kernel [3, 3, C_in, C_i]}          (every layer but 0)
    layer_i {bias [C_i], noise_weight [C_i], style_kernel [D, 2 C_i], style_bias [2 C_i]}
  torgb_kernel [1, 1, C_last, num_channels], torgb_bias [num_channels]
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pulse_jax.nets import ops
from pulse_jax.nets import remat as remat_lib
from pulse_jax.nets import stages as stages_lib
from pulse_jax.nets.config_dict import DictConfig

FUSED_MIN_RESOLUTION = 128  # output resolution from which up-sampling is a fused transposed conv


@dataclasses.dataclass(frozen=True)
class StyleGANConfig(DictConfig):
  """Static architecture of a StyleGAN v1 generator (the reference's names and defaults)."""
  resolution: int = 1024
  fmap_base: int = 8192
  fmap_decay: float = 1.0
  fmap_max: int = 512
  dlatent_size: int = 512
  num_channels: int = 3
  mapping_layers: int = 8
  mapping_lrmul: float = 0.01
  # torch.nn.InstanceNorm2d's eps, as the PULSE reference uses; NVIDIA's TF code uses 1e-8.
  instance_norm_eps: float = 1e-5

  def __post_init__(self):
    log2 = int(round(math.log2(self.resolution))) if self.resolution > 0 else 0
    if self.resolution < 4 or 2 ** log2 != self.resolution or self.resolution > 4096:
      raise ValueError(
          f"StyleGAN resolution must be a power of two in 4..4096, got {self.resolution}.")
    if self.fmap_base < 1 or self.fmap_max < 1 or self.dlatent_size < 1:
      raise ValueError(f"fmap_base, fmap_max and dlatent_size must be positive: {self}.")

  @property
  def resolution_log2(self) -> int:
    return int(round(math.log2(self.resolution)))

  @property
  def num_layers(self) -> int:
    """Number of style inputs / noise maps (18 at 1024)."""
    return 2 * self.resolution_log2 - 2

  def stage_channels(self, stage: int) -> int:
    return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

  def layer_channels(self, layer: int) -> int:
    """Output channels of layer `layer` (0-based): nf(res - 1) with res = layer // 2 + 2."""
    return self.stage_channels(layer // 2 + 1)

  def layer_resolution(self, layer: int) -> int:
    return 2 ** (layer // 2 + 2)

  def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """Per-layer noise shape without the batch dim: (1, r, r)."""
    return tuple((1, self.layer_resolution(i), self.layer_resolution(i))
                 for i in range(self.num_layers))



REMAT_POLICIES = ("none", "epilogue", "block")


def _conv_layers(config: StyleGANConfig) -> list[tuple[int, int, int, int, str]]:
  """(block, layer, C_in, C_out, up-sampling mode) of every conv, in order (layers 1 .. L-1)."""
  out = []
  for i in range(1, config.num_layers):
    b = i // 2
    cin = config.layer_channels(i - 1)
    if i % 2:
      mode = "none"
    else:
      mode = "fused" if config.layer_resolution(i) >= FUSED_MIN_RESOLUTION else "nearest"
    out.append((b, i, cin, config.layer_channels(i), mode))
  return out


def _param_specs(config: StyleGANConfig) -> dict:
  """{name path: (shape, initializer)} of the synthesis parameters, nested as the tree."""
  d = config.dlatent_size
  tree: dict = {f"block_{b}": {} for b in range(config.resolution_log2 - 1)}
  tree["block_0"]["const"] = ((1, 4, 4, config.layer_channels(0)), "ones")
  for b, i, cin, cout, _ in _conv_layers(config):
    tree[f"block_{b}"][f"conv_{i}"] = {"kernel": ((3, 3, cin, cout), "normal")}
  for i in range(config.num_layers):
    c = config.layer_channels(i)
    tree[f"block_{i // 2}"][f"layer_{i}"] = {
        "bias": ((c,), "zeros"), "noise_weight": ((c,), "zeros"),
        "style_kernel": ((d, 2 * c), "normal"), "style_bias": ((2 * c,), "zeros")}
  c_last = config.layer_channels(config.num_layers - 1)
  tree["torgb_kernel"] = ((1, 1, c_last, config.num_channels), "normal")
  tree["torgb_bias"] = ((config.num_channels,), "zeros")
  return tree


def _is_spec(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], str)


def synthesis_param_shapes(config: StyleGANConfig) -> dict:
  """Abstract parameter tree (jax.ShapeDtypeStruct leaves) without allocating anything."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s[0], jnp.float32), _param_specs(config),
                      is_leaf=_is_spec)


def _init_tree(key: jax.Array, specs):
  leaves, treedef = jax.tree.flatten(specs, is_leaf=_is_spec)
  keys = jax.random.split(key, len(leaves))
  make = {"ones": lambda k, s: jnp.ones(s), "zeros": lambda k, s: jnp.zeros(s),
          "normal": lambda k, s: jax.random.normal(k, s, jnp.float32)}
  return jax.tree.unflatten(treedef, [make[init](k, shape)
                                      for k, (shape, init) in zip(keys, leaves)])


def init_synthesis_params(key: jax.Array, config: StyleGANConfig) -> dict:
  """Random parameters as the reference initialises them (unit normal weights, zero biases and
  noise weights, constant input of ones), float32."""
  return _init_tree(key, _param_specs(config))


def accum_dtype(dtype):
  """Dtype of styles, norms and the RGB output: float32 for float32/bfloat16 compute, float64
  for float64 compute (verification against float64 reference runs)."""
  return jnp.promote_types(dtype, jnp.float32)


def prepare_synthesis(params: dict, config: StyleGANConfig, dtype=jnp.float32) -> dict:
  """Run-time weights from stored ones: equalised-LR scaling, the compute dtype, and the forms
  the convolutions use (per-phase 2x2 kernels for up-sampling convs, transposed kernels for the
  input gradient; see `ops`). A pure function of the parameters: the search computes it once
  per compiled chunk, outside its step loop. Styles, biases of RGB and norms stay in the
  accumulation dtype (`accum_dtype(dtype)`: float32, or float64 for a float64 verification run).

  Returns the parameter tree with each `conv_i` replaced by {'kernel', 'kernel_t'} and
  `torgb_kernel` by `torgb` {'kernel', 'kernel_t'}.
  """
  f32 = lambda a: jnp.asarray(a, accum_dtype(dtype))
  d = config.dlatent_size
  out = {f"block_{b}": {} for b in range(config.resolution_log2 - 1)}
  out["block_0"]["const"] = f32(params["block_0"]["const"]).astype(dtype)
  for b, i, cin, _, mode in _conv_layers(config):
    kernel = f32(params[f"block_{b}"][f"conv_{i}"]["kernel"]) * ops.he_coefficient(cin * 9)
    out[f"block_{b}"][f"conv_{i}"] = (ops.prepare_conv2d(kernel, dtype) if mode == "none"
                                      else ops.prepare_upsample_conv2d(kernel, mode, dtype))
  for i in range(config.num_layers):
    p = params[f"block_{i // 2}"][f"layer_{i}"]
    out[f"block_{i // 2}"][f"layer_{i}"] = {
        "bias": f32(p["bias"]).astype(dtype), "noise_weight": f32(p["noise_weight"]).astype(dtype),
        "style_kernel": f32(p["style_kernel"]) * ops.he_coefficient(d, gain=1.0),
        "style_bias": f32(p["style_bias"])}
  c_last = config.layer_channels(config.num_layers - 1)
  out["torgb"] = ops.prepare_conv2d(
      f32(params["torgb_kernel"]) * ops.he_coefficient(c_last, gain=1.0), dtype)
  out["torgb_bias"] = f32(params["torgb_bias"])
  return out


def _epilogue(x, w, dlatent, noise, eps: float, blur: bool):
  """[blur,] + bias, + noise, LeakyReLU, instance norm, style modulation.

  x: [B, H, W, C] conv output (compute dtype); w: prepared `layer_i`; dlatent: [B, D];
  noise: [B, 1, H, W] (NCHW, as the reference).
  """
  if blur:
    x = ops.blur_121(x)
  dtype = x.dtype
  c = x.shape[-1]
  x = x + w["bias"]
  # Tied to x: else XLA hoists noise_weight x noise (fixed noise maps are loop-invariant) out
  # of the search loop as a [B, H, W, C] buffer per layer, ~190 MB per restart at 1024 px.
  noise = remat_lib.depend_on(noise, x)
  x = x + w["noise_weight"] * jnp.transpose(noise, (0, 2, 3, 1)).astype(dtype)
  x = ops.instance_norm(ops.leaky_relu(x), eps)
  style = jnp.dot(dlatent.astype(w["style_kernel"].dtype), w["style_kernel"]) + w["style_bias"]  # [B, 2C]
  scale = (style[:, :c] + 1.0).astype(dtype)[:, None, None, :]
  shift = style[:, c:].astype(dtype)[:, None, None, :]
  return x * scale + shift


def _recomputed_epilogue(x, w, dlatent, noise, eps: float, blur: bool):
  """`_epilogue` saving only its inputs (the conv output) for the backward pass."""
  fn = lambda w, x, dlatent, noise: _epilogue(x, w, dlatent, noise, eps, blur)
  return remat_lib.recompute_in_backward(fn)(w, x, dlatent, noise)


def _block(config: StyleGANConfig, block: int, remat: str, w, x, styles, noise0, noise1):
  """One resolution: layers 2*block and 2*block + 1. w: prepared `block_<block>`; x:
  [B, H, W, C] or None (block 0); styles: [B, 2, D] (those layers' dlatents)."""
  i0, i1 = 2 * block, 2 * block + 1
  epilogue = _epilogue
  if remat in ("epilogue", "block"):  # keep only conv outputs; recompute the elementwise chain
    epilogue = _recomputed_epilogue
  if block == 0:
    x = jnp.broadcast_to(w["const"], (styles.shape[0],) + w["const"].shape[1:])
    x = epilogue(x, w[f"layer_{i0}"], styles[:, 0], noise0, config.instance_norm_eps, False)
  else:
    x = ops.upsample_conv2d_prepared(x, w[f"conv_{i0}"])
    x = epilogue(x, w[f"layer_{i0}"], styles[:, 0], noise0, config.instance_norm_eps, True)
  x = ops.conv2d_prepared(x, w[f"conv_{i1}"])
  return epilogue(x, w[f"layer_{i1}"], styles[:, 1], noise1, config.instance_norm_eps, False)


def _check_inputs(dlatents, noise, config: StyleGANConfig, remat: str) -> None:
  cfg = config
  if dlatents.ndim != 3 or dlatents.shape[1:] != (cfg.num_layers, cfg.dlatent_size):
    raise ValueError(f"dlatents must be [B, {cfg.num_layers}, {cfg.dlatent_size}], "
                     f"got {dlatents.shape}.")
  if len(noise) != cfg.num_layers:
    raise ValueError(f"Expected {cfg.num_layers} noise maps, got {len(noise)}.")
  if remat not in REMAT_POLICIES:
    raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {remat!r}.")


def _block_stage(prepared: dict, dlatents, noise, config: StyleGANConfig, b: int,
                 remat: str) -> stages_lib.Stage:
  """Block b as a stage: x [B, r/2, r/2, C] or None (block 0) -> [B, r, r, C_r], r = 4 * 2^b."""
  block = functools.partial(_block, config, b, remat)
  if remat == "block":
    block = remat_lib.recompute_in_backward(block)
  run = lambda x: block(prepared[f"block_{b}"], x, dlatents[:, 2 * b:2 * b + 2], noise[2 * b],
                        noise[2 * b + 1])
  return stages_lib.Stage(f"b{config.layer_resolution(2 * b)}", run)


def _stages(prepared: dict, dlatents, noise, config: StyleGANConfig, dtype,
            remat: str) -> list[stages_lib.Stage]:
  """The synthesis as stages: 'b4', 'b8', .. 'b<res>' (one per block; the state after each is
  its activation x [B, r, r, C_r], NHWC, compute dtype), then 'torgb' (-> images NCHW)."""
  _check_inputs(dlatents, noise, config, remat)

  def torgb(x):
    rgb = ops.conv2d_prepared(x, prepared["torgb"]).astype(accum_dtype(dtype))
    rgb = rgb + prepared["torgb_bias"]
    return jnp.transpose(rgb, (0, 3, 1, 2))

  return ([_block_stage(prepared, dlatents, noise, config, b, remat)
           for b in range(config.resolution_log2 - 1)] + [stages_lib.Stage("torgb", torgb)])


def cut_points(config: StyleGANConfig) -> tuple[str, ...]:
  """Where the synthesis can be cut: after each block, 'b4', 'b8', .. 'b<res>' (the last one's
  activation is the to-RGB conv's input)."""
  return tuple(f"b{2 ** k}" for k in range(2, config.resolution_log2 + 1))


def synthesize(prepared: dict, dlatents: jax.Array, noise: Sequence[jax.Array],
               config: StyleGANConfig, dtype=jnp.float32, remat: str = "none") -> jax.Array:
  """G_synthesis on prepared weights (`prepare_synthesis(params, config, dtype)`).

  dlatents: [B, L, D] float32; noise: L maps [B, 1, r_i, r_i] -> images [B, C, H, W] float32
  (float64 when `dtype` is float64: the verification mode, under jax x64).
  remat: 'none'; 'epilogue' keeps only each conv's output for the backward pass and recomputes
  the elementwise chain after it (bias, noise, LeakyReLU, instance norm, style); 'block'
  recomputes each whole block, and each chain inside it. Both recompute only once the
  backward pass reaches them (`remat.recompute_in_backward`), so one block's activations are
  alive at a time: 417 MiB per restart at 1024 px instead of 1092 (docs/scaling.md).
  """
  return stages_lib.run_stages(_stages(prepared, dlatents, noise, config, dtype, remat))


def synthesize_until(prepared: dict, dlatents: jax.Array, noise: Sequence[jax.Array],
                     config: StyleGANConfig, layer: str, dtype=jnp.float32,
                     remat: str = "none") -> jax.Array:
  """`synthesize` up to and including the block `layer` (one of `cut_points(config)`): its
  activation [B, r, r, C_r] (NHWC, the compute dtype). Arguments as `synthesize` (all rows
  and noise maps; those of later layers are not used)."""
  stages_lib.check_cut(layer, cut_points(config), "this StyleGAN")
  return stages_lib.run_stages(_stages(prepared, dlatents, noise, config, dtype, remat),
                               until=layer)


def synthesize_from(prepared: dict, dlatents: jax.Array, noise: Sequence[jax.Array],
                    config: StyleGANConfig, layer: str, activation: jax.Array,
                    dtype=jnp.float32, remat: str = "none", until: str | None = None) -> jax.Array:
  """The rest of `synthesize` after the block `layer`, from its `activation` (as
  `synthesize_until` returns it) -> images [B, C, H, W]. Arguments as `synthesize` (all rows
  and noise maps; those of earlier layers are not used). With `until` (a later cut point):
  that block's activation instead of the image."""
  stages_lib.check_cut(layer, cut_points(config), "this StyleGAN")
  if until is not None:
    stages_lib.check_cut(until, cut_points(config), "this StyleGAN")
  return stages_lib.run_stages(_stages(prepared, dlatents, noise, config, dtype, remat),
                               activation, after=layer, until=until)


class SynthesisNetwork(nn.Module):
  """G_synthesis as a Flax module: dlatents [B, L, D] and L noise maps [B, 1, r_i, r_i] ->
  images [B, C, H, W] float32. A thin wrapper of `prepare_synthesis` + `synthesize`.

  `dtype` is the compute dtype (float32 or bfloat16; norms and styles stay float32);
  `remat` one of REMAT_POLICIES (see `synthesize`).
  """
  config: StyleGANConfig
  dtype: jnp.dtype = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, dlatents: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
    params = {name: self.param(name, _init_tree, spec)
              for name, spec in _param_specs(self.config).items()}
    prepared = prepare_synthesis(params, self.config, self.dtype)
    return synthesize(prepared, dlatents, noise, self.config, self.dtype, self.remat)


class MappingNetwork(nn.Module):
  """G_mapping: z [B, 512] -> w [B, D]. Pixel norm, then 8 dense layers with lrmul 0.01."""
  config: StyleGANConfig

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    cfg = self.config
    x = ops.pixel_norm(z.astype(jnp.float32))
    for i in range(cfg.mapping_layers):
      fan_in = x.shape[-1]
      kernel = self.param(f"dense{i}_kernel", nn.initializers.normal(1.0 / cfg.mapping_lrmul),
                          (fan_in, cfg.dlatent_size))
      bias = self.param(f"dense{i}_bias", nn.initializers.zeros, (cfg.dlatent_size,))
      x = jnp.dot(x, kernel * ops.he_coefficient(fan_in, lrmul=cfg.mapping_lrmul))
      x = ops.leaky_relu(x + bias * cfg.mapping_lrmul)
    return x


def zero_noise(config: StyleGANConfig, batch: int) -> list[jax.Array]:
  """All-zero noise maps: [batch, 1, r_i, r_i] float32 for every layer."""
  return [jnp.zeros((batch,) + s, jnp.float32) for s in config.noise_shapes()]


def mapping_param_shapes(config: StyleGANConfig) -> dict:
  net = MappingNetwork(config)
  z = jax.ShapeDtypeStruct((1, config.dlatent_size), jnp.float32)
  return jax.eval_shape(net.init, jax.random.key(0), z)["params"]
