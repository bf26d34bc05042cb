"""StyleGAN2 / StyleGAN2-ADA generator (NVIDIA's ``networks_stylegan2.py``) as pure JAX functions.

Same networks as NVIDIA's PyTorch code (stylegan2-ada-pytorch ``training/networks.py`` and
stylegan3 ``training/networks_stylegan2.py``): the mapping network (2nd-moment normalised z,
optional class embedding, lr-multiplied FC layers, w_avg and truncation) and the synthesis
network (learned 4x4 constant, modulated 3x3 convs with weight demodulation, 2x up-sampling
with the [1, 3, 3, 1] FIR filter, noise, bias + lrelu with gain sqrt 2 and ``conv_clamp``,
ToRGB layers and the 'skip' / 'orig' / 'resnet' architectures). Always float32:
``num_fp16_res`` is kept in the config but ignored (NVIDIA's code runs those layers in
float32 off the GPU, too).

Modulation is applied to the activations (``x * style``, one shared-weight conv for the whole
batch, then ``* demodulation``), NVIDIA's ``fused_modconv=False`` form: the same function as
the per-sample weights of the fused form, batch-efficient.

Activations are NHWC inside; public images and noise maps are NCHW as in NVIDIA's code.

Parameter tree (``param_shapes``; C_r = ``config.channels(r)``, D = w_dim, kernels HWIO, FC
weights [in, out]; an FC layer is {'kernel': [in, out], 'bias': [out]}):
  mapping:
    embed: FC [c_dim, E]                  (c_dim > 0 only)
    fc{i}: FC, i = 0 .. mapping_layers - 1 ([z_dim + E, F], [F, F] ..., [F, D])
    w_avg: [D]                            (w_avg_beta not None)
  synthesis:
    b{r}, r = 4, 8, .. img_resolution:
      const: [4, 4, C_4]                  (b4 only)
      conv0: synthesis layer, C_{r/2} -> C_r, 2x up-sampling (r > 4)
      conv1: synthesis layer, C_r -> C_r
      torgb: {affine: FC [D, C_r], kernel: [1, 1, C_r, img_channels], bias: [img_channels]}
             (every block for 'skip', the last one otherwise)
      skip: {kernel: [1, 1, C_{r/2}, C_r]}  ('resnet', r > 4)
  a synthesis layer: {affine: FC [D, C_in], kernel: [3, 3, C_in, C_out], bias: [C_out],
                      noise_const: [r, r], noise_strength: []}  (noise_* if use_noise)
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from pulse_jax.nets import ops
from pulse_jax.nets import stages as stages_lib
from pulse_jax.nets import upfirdn
from pulse_jax.nets.config_dict import DictConfig

SQRT2 = math.sqrt(2.0)
LRELU_ALPHA = ops.LRELU_SLOPE
ARCHITECTURES = ("orig", "skip", "resnet")
# name -> (func, default alpha, default gain), as NVIDIA's bias_act.activation_funcs.
ACTIVATIONS = ops.ACTIVATIONS
# init_kwargs that change nothing here (memory layout / fused-op choices of the torch code).
_IGNORED_KWARGS = ("fp16_channels_last", "fused_modconv_default", "channels_last")
_MAPPING_KWARGS = {"num_layers": "mapping_layers", "embed_features": "mapping_embed_features",
                   "layer_features": "mapping_layer_features", "activation": "mapping_activation",
                   "lr_multiplier": "mapping_lr_multiplier", "w_avg_beta": "w_avg_beta"}
_TOP_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_SYNTHESIS_KWARGS = ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                     "resample_filter", "use_noise", "activation")


@dataclasses.dataclass(frozen=True)
class Stylegan2Config(DictConfig):
  """Static architecture of a StyleGAN2 generator (NVIDIA's argument names and defaults)."""
  z_dim: int = 512
  c_dim: int = 0
  w_dim: int = 512
  img_resolution: int = 1024
  img_channels: int = 3
  mapping_layers: int = 8
  mapping_embed_features: int | None = None  # None: w_dim
  mapping_layer_features: int | None = None  # None: w_dim
  mapping_activation: str = "lrelu"
  mapping_lr_multiplier: float = 0.01
  w_avg_beta: float | None = 0.998  # None: no w_avg (then no truncation)
  channel_base: int = 32768
  channel_max: int = 512
  num_fp16_res: int = 4  # kept for the record; everything runs in float32
  conv_clamp: float | None = 256
  architecture: str = "skip"
  resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
  use_noise: bool = True
  activation: str = "lrelu"

  def __post_init__(self):
    object.__setattr__(self, "resample_filter", tuple(float(t) for t in self.resample_filter))
    r = self.img_resolution
    if r < 4 or r & (r - 1) or r > 8192:
      raise ValueError(f"img_resolution must be a power of two in 4..8192, got {r}.")
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}.")
    for name in ("activation", "mapping_activation"):
      if getattr(self, name) not in ACTIVATIONS:
        raise ValueError(f"{name} {getattr(self, name)!r} is not supported; one of "
                         f"{sorted(ACTIVATIONS)}.")
    if min(self.z_dim, self.c_dim) < 0 or self.z_dim + self.c_dim == 0 or self.w_dim < 1:
      raise ValueError(f"need z_dim >= 0, c_dim >= 0 (not both 0) and w_dim >= 1: {self}.")
    if self.mapping_layers < 1 or self.channel_base < 1 or self.channel_max < 1:
      raise ValueError(f"mapping_layers, channel_base and channel_max must be positive: {self}.")
    upfirdn.normalized_taps(self.resample_filter)

  @classmethod
  def from_init_kwargs(cls, kwargs: dict) -> Stylegan2Config:
    """From a network pickle's ``init_kwargs`` (``NetworkData.init_kwargs``).

    Accepts the stylegan3 repo's flat form (synthesis arguments at the top level) and
    stylegan2-ada-pytorch's ``synthesis_kwargs`` sub-dict; each repo's defaults apply to what
    is absent (``conv_clamp``: 256 in stylegan3's ``SynthesisBlock``, None in ADA's).

    Raises:
      ValueError: an argument this port does not know (listed).
    """
    kw = dict(kwargs)
    ada = "synthesis_kwargs" in kw
    syn = dict(kw.pop("synthesis_kwargs", None) or {})
    mapping = dict(kw.pop("mapping_kwargs", None) or {})
    top = {k: kw.pop(k) for k in _TOP_KWARGS if k in kw}
    syn.update(kw)  # stylegan3 form: the rest are synthesis arguments
    out = dict(top)
    if ada:
      out["conv_clamp"] = None
      out["w_avg_beta"] = 0.995
    unknown = [f"mapping_kwargs.{k}" for k in mapping if k not in _MAPPING_KWARGS]
    out.update({_MAPPING_KWARGS[k]: v for k, v in mapping.items() if k in _MAPPING_KWARGS})
    unknown += [k for k in syn if k not in _SYNTHESIS_KWARGS and k not in _IGNORED_KWARGS]
    if unknown:
      raise ValueError(f"StyleGAN2 init_kwargs {sorted(unknown)} are not supported by this port "
                       f"(known: {list(_TOP_KWARGS + _SYNTHESIS_KWARGS)}, mapping_kwargs "
                       f"{sorted(_MAPPING_KWARGS)}).")
    out.update({k: v for k, v in syn.items() if k in _SYNTHESIS_KWARGS})
    return cls(**out)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["resample_filter"] = list(self.resample_filter)
    return d


  @property
  def resolution_log2(self) -> int:
    return self.img_resolution.bit_length() - 1

  @property
  def block_resolutions(self) -> tuple[int, ...]:
    return tuple(2 ** i for i in range(2, self.resolution_log2 + 1))

  def channels(self, res: int) -> int:
    return min(self.channel_base // res, self.channel_max)

  def has_torgb(self, res: int) -> bool:
    return self.architecture == "skip" or res == self.img_resolution

  def num_conv(self, res: int) -> int:
    return 1 if res == 4 else 2

  @property
  def num_ws(self) -> int:
    """Number of w vectors the synthesis takes (2 log2(res) - 2: 18 at 1024)."""
    return sum(self.num_conv(r) for r in self.block_resolutions) + 1

  @property
  def embed_features(self) -> int:
    if self.c_dim == 0:
      return 0
    return self.w_dim if self.mapping_embed_features is None else self.mapping_embed_features

  @property
  def mapping_features(self) -> tuple[int, ...]:
    """Widths of the mapping layers' inputs and output: [z_dim + E, F, ..., F, w_dim]."""
    f = self.w_dim if self.mapping_layer_features is None else self.mapping_layer_features
    return (self.z_dim + self.embed_features,) + (f,) * (self.mapping_layers - 1) + (self.w_dim,)


class NoiseLayer(NamedTuple):
  """One noise input: its noise_const's state-dict name and the map's shape (1, r, r)."""
  name: str
  shape: tuple[int, int, int]


def noise_layers(config: Stylegan2Config) -> list[NoiseLayer]:
  """Noise inputs in the order ``synthesize`` consumes them (empty when not use_noise)."""
  if not config.use_noise:
    return []
  out = []
  for r in config.block_resolutions:
    for k in ((1,) if r == 4 else (0, 1)):
      out.append(NoiseLayer(f"synthesis.b{r}.conv{k}.noise_const", (1, r, r)))
  return out


def noise_shapes(config: Stylegan2Config) -> list[tuple[int, int, int]]:
  """Per-layer noise shape without the batch dim, (1, r, r), in the synthesis' order."""
  return [layer.shape for layer in noise_layers(config)]


# ------------------------------------------------------------------------------ parameters


def _fc_spec(fin: int, fout: int, lr: float = 1.0, bias_init: float = 0.0) -> dict:
  return {"kernel": ((fin, fout), ("normal", 1.0 / lr)), "bias": ((fout,), ("const", bias_init))}


def _layer_spec(config: Stylegan2Config, cin: int, cout: int, res: int) -> dict:
  spec = {"affine": _fc_spec(config.w_dim, cin, bias_init=1.0),
          "kernel": ((3, 3, cin, cout), ("normal", 1.0)), "bias": ((cout,), ("const", 0.0))}
  if config.use_noise:
    spec["noise_const"] = ((res, res), ("normal", 1.0))
    spec["noise_strength"] = ((), ("const", 0.0))
  return spec


def _param_specs(config: Stylegan2Config) -> dict:
  """{part: nested {name: (shape, (init, value))}}, NVIDIA's initialisation."""
  feats = config.mapping_features
  mapping = {f"fc{i}": _fc_spec(feats[i], feats[i + 1], config.mapping_lr_multiplier)
             for i in range(config.mapping_layers)}
  if config.c_dim:
    mapping["embed"] = _fc_spec(config.c_dim, config.embed_features)
  if config.w_avg_beta is not None:
    mapping["w_avg"] = ((config.w_dim,), ("const", 0.0))
  synthesis = {}
  for r in config.block_resolutions:
    c = config.channels(r)
    block = {}
    if r == 4:
      block["const"] = ((4, 4, c), ("normal", 1.0))
    else:
      cin = config.channels(r // 2)
      block["conv0"] = _layer_spec(config, cin, c, r)
      if config.architecture == "resnet":
        block["skip"] = {"kernel": ((1, 1, cin, c), ("normal", 1.0))}
    block["conv1"] = _layer_spec(config, c, c, r)
    if config.has_torgb(r):
      block["torgb"] = {"affine": _fc_spec(config.w_dim, c, bias_init=1.0),
                        "kernel": ((1, 1, c, config.img_channels), ("normal", 1.0)),
                        "bias": ((config.img_channels,), ("const", 0.0))}
    synthesis[f"b{r}"] = block
  return {"mapping": mapping, "synthesis": synthesis}


def _is_spec(x) -> bool:
  return isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], tuple)


def param_shapes(config: Stylegan2Config) -> dict:
  """{'mapping': tree, 'synthesis': tree} of jax.ShapeDtypeStruct (float32); nothing allocated."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s[0], jnp.float32), _param_specs(config),
                      is_leaf=_is_spec)


def init_params(key: jax.Array, config: Stylegan2Config) -> dict:
  """Random parameters as NVIDIA initialises them (unit-normal weights / lr_multiplier,
  affine biases 1, other biases, noise strengths and w_avg 0), float32."""
  leaves, treedef = jax.tree.flatten(_param_specs(config), is_leaf=_is_spec)
  keys = jax.random.split(key, len(leaves))
  make = {"normal": lambda k, s, v: v * jax.random.normal(k, s, jnp.float32),
          "const": lambda k, s, v: jnp.full(s, v, jnp.float32)}
  return jax.tree.unflatten(treedef, [make[init](k, shape, v)
                                      for k, (shape, (init, v)) in zip(keys, leaves)])


def const_noise(params: dict, config: Stylegan2Config, batch: int) -> list[jax.Array]:
  """The stored unit noise maps (noise_const), [batch, 1, r, r] each, in ``noise_layers``
  order: ``synthesize(.., noise=const_noise(..))`` is ``noise_mode='const'``."""
  p = _part(params, "synthesis")
  out = []
  for layer in noise_layers(config):
    _, block, conv, _ = layer.name.split(".")
    n = p[block][conv]["noise_const"]
    out.append(jnp.broadcast_to(n[None, None], (batch, 1) + n.shape))
  return out


def _part(params: dict, name: str) -> dict:
  """The ``name`` part of a full tree, or ``params`` itself when it already is that part."""
  if name in params and ("mapping" in params or "synthesis" in params):
    return params[name]
  return params


# ------------------------------------------------------------------------------ layers


def _conv(x: jax.Array, weight: jax.Array, up: int, taps: Sequence[float]) -> jax.Array:
  """Shared-weight conv, optionally 2x up-sampling as NVIDIA's conv2d_resample (flip_weight =
  up == 1): insert zeros, pad, FIR (gain up^2), true convolution with ``weight``.

  x: [B, H, W, Cin]; weight: [k, k, Cin, Cout] -> [B, H * up, W * up, Cout].

  Every conv is a plain stride-1 NHWC conv with `ops.conv_nhwc`'s input gradient: XLA:CPU
  runs the backward convs JAX's own transpose rule writes on a slow generic path inside the
  search's `lax.scan` (measured 5x on a 256 px conv; see `ops.conv_nhwc`).
  """
  k = weight.shape[0]
  p = k // 2
  if up == 1:
    return ops.conv_nhwc(x, weight, ops.transpose_kernel(weight), ((p, p), (p, p)))
  n = len(taps)
  lo, hi = p + (n + up - 1) // 2, p + (n - up) // 2 + up - 1  # on the zero-dilated input
  # Conv and FIR are both correlations on the up-sampled grid, so they commute: the conv (on
  # the zero-dilated input: a transposed conv) comes first, the FIR runs on its output.
  y = _upsample_conv(x, weight[::-1, ::-1], up, lo, hi)
  return upfirdn.upfirdn2d(y, upfirdn.normalized_taps(taps), gain=float(up * up))


def _phases(size: int, k: int, up: int, lo: int, hi: int) -> list[tuple[list[int], int, int, int]]:
  """Per output phase r of a correlation with k taps of an input zero-dilated by `up` and
  padded (lo, hi): (taps that meet input pixels, input padding before, after, output length).
  Output j = up * t + r is sum over those taps of x[t + (r + tap - lo) / up] * w[tap]."""
  length = (size - 1) * up + 1 + lo + hi - k + 1
  out = []
  for r in range(up):
    taps = [t for t in range(k) if (r + t - lo) % up == 0]
    count = -(-(length - r) // up)
    d = [(r + t - lo) // up for t in taps]
    out.append((taps, -d[0], count - 1 + d[-1] - (size - 1), count))
  return out


def _upsample_conv(x: jax.Array, weight: jax.Array, up: int, lo: int, hi: int) -> jax.Array:
  """``conv_general_dilated(x, weight, padding=(lo, hi), lhs_dilation=up)`` ('VALID' on the
  zero-dilated, padded input) computed by output phase: per phase pair a stride-1 conv of x
  with the taps that meet input pixels (9 / up^2 of the multiply-adds), interleaved."""
  k = weight.shape[0]
  rows = _phases(x.shape[1], k, up, lo, hi)
  cols = _phases(x.shape[2], k, up, lo, hi)
  h, w = max(r[3] for r in rows), max(c[3] for c in cols)
  out = []
  for taps_r, top, bottom, n_r in rows:
    line = []
    for taps_c, left, right, n_c in cols:
      wk = weight[taps_r[0]:taps_r[-1] + 1:up, taps_c[0]:taps_c[-1] + 1:up]
      y = ops.conv_nhwc(x, wk, ops.transpose_kernel(wk), ((top, bottom), (left, right)))
      line.append(jnp.pad(y, ((0, 0), (0, h - n_r), (0, w - n_c), (0, 0))))
    out.append(jnp.stack(line, axis=3))  # [B, h, w, up (c), C]
  y = jnp.stack(out, axis=2)  # [B, h, up (r), w, up (c), C]
  b, _, _, _, _, ch = y.shape
  y = y.reshape(b, h * up, w * up, ch)
  return y[:, :(x.shape[1] - 1) * up + 1 + lo + hi - k + 1, :(x.shape[2] - 1) * up + 1 + lo + hi - k + 1]


def _synthesis_layer(p: dict, config: Stylegan2Config, x: jax.Array, w: jax.Array,
                     noise: jax.Array | None, up: int, gain: float = 1.0) -> jax.Array:
  """Modulated conv + demodulation + noise + bias/act/clamp.

  x: [B, H, W, Cin]; w: [B, D]; noise: [B or 1, H * up, W * up, 1] unit noise or None.
  """
  styles = ops.dense(p["affine"], w)  # [B, Cin]
  weight = p["kernel"]
  x = _conv(x * styles[:, None, None, :], weight, up, config.resample_filter)
  wsq = jnp.sum(jnp.square(weight), axis=(0, 1))  # [Cin, Cout]
  dcoefs = jax.lax.rsqrt(jnp.square(styles) @ wsq + 1e-8)  # [B, Cout]
  x = x * dcoefs[:, None, None, :]
  if noise is not None:
    x = x + noise * p["noise_strength"]
  act_gain = ACTIVATIONS[config.activation].def_gain * gain
  clamp = config.conv_clamp * gain if config.conv_clamp is not None else None
  return ops.bias_act(x, p["bias"], config.activation, gain=act_gain, clamp=clamp)


def _torgb(p: dict, config: Stylegan2Config, x: jax.Array, w: jax.Array) -> jax.Array:
  """Modulated 1x1 conv without demodulation: [B, H, W, C] -> [B, H, W, img_channels]."""
  kh, kw, cin, _ = p["kernel"].shape
  styles = ops.dense(p["affine"], w) * (1.0 / math.sqrt(cin * kh * kw))
  y = jnp.einsum("bhwi,io->bhwo", x * styles[:, None, None, :], p["kernel"][0, 0])
  return ops.bias_act(y, p["bias"], "linear", gain=1.0, clamp=config.conv_clamp)


def _skip(p: dict, config: Stylegan2Config, x: jax.Array) -> jax.Array:
  """'resnet' shortcut: 1x1 conv (no bias) then FIR 2x up-sampling, gain sqrt(1/2)."""
  cin = p["kernel"].shape[2]
  y = jnp.einsum("bhwi,io->bhwo", x, p["kernel"][0, 0] * (1.0 / math.sqrt(cin)))
  return upfirdn.upsample2d(y, config.resample_filter) * math.sqrt(0.5)


# ------------------------------------------------------------------------------ networks


def _mapping_hidden(p: dict, config: Stylegan2Config, z, c) -> jax.Array:
  """Normalised inputs through all but the last FC layer: [B, mapping_features[-2]]."""
  parts = []
  if config.z_dim:
    if z is None or z.ndim != 2 or z.shape[1] != config.z_dim:
      raise ValueError(f"z must be [B, {config.z_dim}], got {None if z is None else z.shape}.")
    parts.append(ops.pixel_norm(z.astype(jnp.float32)))
  if config.c_dim:
    if c is None or c.ndim != 2 or c.shape[1] != config.c_dim:
      raise ValueError(f"this generator is conditional: c must be [B, {config.c_dim}] (one-hot "
                       f"class labels), got {None if c is None else c.shape}.")
    parts.append(ops.pixel_norm(ops.dense(p["embed"], c.astype(jnp.float32))))
  x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
  act, lr = config.mapping_activation, config.mapping_lr_multiplier
  for i in range(config.mapping_layers - 1):
    x = ops.bias_act(ops.dense(p[f"fc{i}"], x, lr), None, act)
  return x


def mapping_pre_activation(params: dict, config: Stylegan2Config, z: jax.Array | None,
                           c: jax.Array | None = None) -> jax.Array:
  """The last mapping layer's output before its activation: [B, w_dim] float32.

  ``pre_to_w`` of it is the mapping's w (before broadcast / truncation). PULSE fits its
  Gaussian prior to this (the mapping output "before its last activation").
  params: the 'mapping' part (or the whole tree); z: [B, z_dim]; c: [B, c_dim] or None.
  """
  p = _part(params, "mapping")
  x = _mapping_hidden(p, config, z, c)
  return ops.dense(p[f"fc{config.mapping_layers - 1}"], x, config.mapping_lr_multiplier)


def pre_to_w(u: jax.Array) -> jax.Array:
  """lrelu(0.2) with gain sqrt 2 (the mapping's last activation); any shape."""
  return ops.leaky_relu(u) * SQRT2


def w_to_pre(w: jax.Array) -> jax.Array:
  """The inverse of ``pre_to_w`` (all / sqrt 2, then negative values / 0.2); any shape."""
  return ops.leaky_relu_inverse(w / SQRT2)


def mapping(params: dict, config: Stylegan2Config, z: jax.Array | None,
            c: jax.Array | None = None, truncation_psi: float | jax.Array = 1.0,
            truncation_cutoff: int | None = None) -> jax.Array:
  """z [B, z_dim] (and c [B, c_dim] one-hot when c_dim > 0) -> ws [B, num_ws, w_dim] float32.

  Truncation: ws[:, :cutoff] = w_avg + psi * (ws - w_avg) (all layers when cutoff is None).
  params: the 'mapping' part (or the whole tree).
  """
  p = _part(params, "mapping")
  u = mapping_pre_activation(p, config, z, c)
  w = ops.bias_act(u, None, config.mapping_activation)
  ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], config.num_ws, config.w_dim))
  if isinstance(truncation_psi, (int, float)) and truncation_psi == 1:
    return ws
  if "w_avg" not in p:
    raise ValueError("truncation needs w_avg, which this mapping network has none of.")
  trunc = p["w_avg"] + truncation_psi * (ws - p["w_avg"])
  if truncation_cutoff is None:
    return trunc
  layer = jnp.arange(config.num_ws)[None, :, None]
  return jnp.where(layer < truncation_cutoff, trunc, ws)


NOISE_MODES = ("const", "none", "random")


def _noise_inputs(p: dict, config: Stylegan2Config, noise, noise_mode: str, key, batch: int):
  """One [B or 1, r, r, 1] unit-noise map (or None) per noise layer."""
  inputs = noise_layers(config)
  if noise is not None:
    if len(noise) != len(inputs):
      raise ValueError(f"expected {len(inputs)} noise maps, got {len(noise)}.")
    out = []
    for n, layer in zip(noise, inputs):
      if n.ndim != 4 or n.shape[1:] != layer.shape or n.shape[0] not in (1, batch):
        raise ValueError(f"noise for {layer.name} must be [B or 1, "
                         f"{', '.join(map(str, layer.shape))}], got {n.shape}.")
      out.append(jnp.transpose(n, (0, 2, 3, 1)).astype(jnp.float32))
    return out
  if noise_mode not in NOISE_MODES:
    raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
  if noise_mode == "none":
    return [None] * len(inputs)
  if noise_mode == "random":
    if key is None:
      raise ValueError("noise_mode='random' needs a key.")
    keys = jax.random.split(key, max(len(inputs), 1))
    return [jax.random.normal(k, (batch,) + l.shape[1:] + (1,), jnp.float32)
            for k, l in zip(keys, inputs)]
  out = []
  for layer in inputs:
    _, block, conv, _ = layer.name.split(".")
    out.append(p[block][conv]["noise_const"][None, :, :, None])
  return out


def _block_stage(bp: dict, config: Stylegan2Config, r: int, ws: jax.Array, noises: list,
                 w_idx: int) -> stages_lib.Stage:
  """Block `r` as a stage: state {'x': [B, r/2, r/2, C], 'img': [B, r/2, r/2, img_channels]
  (while there is one)} or None (b4) -> the same at r. `w_idx`: the index of the block's
  first conv, its ws row and (use_noise) its noise map in `noises`."""
  cfg = config
  noise = lambda k: noises[w_idx + k] if cfg.use_noise else None

  def run(state):
    x, img = (None, None) if state is None else (state["x"], state.get("img"))
    if r == 4:
      x = jnp.broadcast_to(bp["const"][None], (ws.shape[0],) + bp["const"].shape)
      x = _synthesis_layer(bp["conv1"], cfg, x, ws[:, w_idx], noise(0), up=1)
    elif cfg.architecture == "resnet":
      y = _skip(bp["skip"], cfg, x)
      x = _synthesis_layer(bp["conv0"], cfg, x, ws[:, w_idx], noise(0), up=2)
      x = _synthesis_layer(bp["conv1"], cfg, x, ws[:, w_idx + 1], noise(1), up=1,
                           gain=math.sqrt(0.5))
      x = y + x
    else:
      x = _synthesis_layer(bp["conv0"], cfg, x, ws[:, w_idx], noise(0), up=2)
      x = _synthesis_layer(bp["conv1"], cfg, x, ws[:, w_idx + 1], noise(1), up=1)
    if img is not None:
      img = upfirdn.upsample2d(img, cfg.resample_filter)
    if cfg.has_torgb(r):
      y = _torgb(bp["torgb"], cfg, x, ws[:, w_idx + cfg.num_conv(r)])
      img = y if img is None else img + y
    return {"x": x} if img is None else {"x": x, "img": img}

  return stages_lib.Stage(f"b{r}", run)


def _stages(params: dict, config: Stylegan2Config, ws: jax.Array, noise, noise_mode: str,
            key) -> list[stages_lib.Stage]:
  """The synthesis as stages 'b4', 'b8', .. 'b<res>', one per block; the state after each is
  {'x': its features [B, r, r, C_r] (NHWC float32), 'img': the RGB accumulated so far
  [B, r, r, img_channels] ('skip'; absent before the first ToRGB)}."""
  p = _part(params, "synthesis")
  cfg = config
  if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
    raise ValueError(f"ws must be [B, {cfg.num_ws}, {cfg.w_dim}], got {ws.shape}.")
  ws = ws.astype(jnp.float32)
  noises = _noise_inputs(p, cfg, noise, noise_mode, key, ws.shape[0])
  out = []
  w_idx = 0
  for r in cfg.block_resolutions:
    out.append(_block_stage(p[f"b{r}"], cfg, r, ws, noises, w_idx))
    w_idx += cfg.num_conv(r)
  return out


def _image(state: dict) -> jax.Array:
  """The last block's state -> images [B, img_channels, H, W] (NCHW)."""
  return jnp.transpose(state["img"], (0, 3, 1, 2))


def cut_points(config: Stylegan2Config) -> tuple[str, ...]:
  """Where the synthesis can be cut: after each block but the last, 'b4', 'b8', .. 'b<res/2>'."""
  return tuple(f"b{r}" for r in config.block_resolutions[:-1])


def synthesize(params: dict, config: Stylegan2Config, ws: jax.Array,
               noise: Sequence[jax.Array] | None = None, noise_mode: str = "const",
               key: jax.Array | None = None) -> jax.Array:
  """ws [B, num_ws, w_dim] -> images [B, img_channels, H, W] float32 (NCHW, not clamped).

  Args:
    params: the 'synthesis' part (or the whole tree).
    noise: None, or one unit-noise map per ``noise_layers(config)`` entry, [B or 1, 1, r, r]
      (NCHW); each is scaled by its layer's noise_strength, as NVIDIA's random noise is.
    noise_mode: when ``noise`` is None: 'const' (the stored noise_const maps), 'none' (no
      noise) or 'random' (fresh N(0, 1) maps from ``key``).
  """
  return _image(stages_lib.run_stages(_stages(params, config, ws, noise, noise_mode, key)))


def synthesize_until(params: dict, config: Stylegan2Config, ws: jax.Array, layer: str,
                     noise: Sequence[jax.Array] | None = None, noise_mode: str = "const",
                     key: jax.Array | None = None) -> dict:
  """`synthesize` up to and including the block `layer` (one of `cut_points(config)`): its
  state {'x': [B, r, r, C_r], 'img': [B, r, r, img_channels] ('skip' only)}, NHWC float32.
  Arguments as `synthesize` (all rows and noise maps; later layers' are not used)."""
  stages_lib.check_cut(layer, cut_points(config), "this StyleGAN2")
  return stages_lib.run_stages(_stages(params, config, ws, noise, noise_mode, key), until=layer)


def synthesize_from(params: dict, config: Stylegan2Config, ws: jax.Array, layer: str,
                    activation: dict, noise: Sequence[jax.Array] | None = None,
                    noise_mode: str = "const", key: jax.Array | None = None,
                    until: str | None = None) -> jax.Array:
  """The rest of `synthesize` after the block `layer`, from its `activation` (as
  `synthesize_until` returns it) -> images [B, img_channels, H, W]. Arguments as
  `synthesize` (all rows and noise maps; earlier layers' are not used). With `until` (a later
  cut point): that block's activation instead of the image."""
  stages_lib.check_cut(layer, cut_points(config), "this StyleGAN2")
  if until is not None:
    stages_lib.check_cut(until, cut_points(config), "this StyleGAN2")
    return stages_lib.run_stages(_stages(params, config, ws, noise, noise_mode, key),
                                 activation, after=layer, until=until)
  return _image(stages_lib.run_stages(_stages(params, config, ws, noise, noise_mode, key),
                                      activation, after=layer))
