"""StyleGAN3 (-T and -R) generator in JAX, as NVIDIA's training/networks_stylegan3.py.

Pure functions of a parameter pytree (params are arguments, never closed over) and a
static, hashable `Stylegan3Config`. Float32 throughout; every matmul and conv runs at
`Precision.HIGHEST` (no TF32 on GPUs). Public tensors are NCHW; activations are NHWC inside.

Mapping: z normalised to unit second moment, `mapping_num_layers` FC layers (learning-rate
multiplier 0.01, leaky ReLU 0.2 with gain sqrt 2), broadcast to `num_ws` rows, truncation
towards `w_avg`. Synthesis: Fourier features (`input`), `num_layers` modulated conv layers
each followed by the filtered leaky ReLU (up-FIR, bias, lrelu * gain, clamp, down-FIR with
the designed low-pass filters), a ToRGB layer, times `output_scale`. No noise inputs.

Parameter tree (torch weights [out, in] are stored transposed, convs as HWIO; values as in
the pickle, equalised-learning-rate gains applied at run time):
  mapping:
    fc{i}: {kernel [in, w_dim], bias [w_dim]}        i < mapping_num_layers
    embed: {kernel [c_dim, w_dim], bias [w_dim]}     only when c_dim > 0
    w_avg [w_dim]
  synthesis:
    input: {kernel [C0, C0], affine: {kernel [w_dim, 4], bias [4]},
            transform [3, 3], freqs [C0, 2], phases [C0]}
    L{i}_{size}_{ch} (NVIDIA's layer names, i <= num_layers; the last is ToRGB):
      {kernel [k, k, C_in, C_out], bias [C_out], affine: {kernel [w_dim, C_in], bias [C_in]},
       magnitude_ema [], up_filter [taps] (when up_taps > 1),
       down_filter [taps] or, radial, [taps, taps] (when down_taps > 1)}

One deliberate difference: NVIDIA pre-normalises the styles by their mean square over the
whole batch; here it is per sample, so that batch elements stay independent. Demodulation
cancels that factor but for its 1e-8 epsilon (an effect below float32 resolution).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.nets import filters as sg3_filters
from pulse_jax.nets import ops
from pulse_jax.nets import stages as stages_lib
from pulse_jax.nets import upfirdn
from pulse_jax.nets.config_dict import DictConfig

HIGHEST = jax.lax.Precision.HIGHEST
SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = ops.LRELU_SLOPE


@dataclasses.dataclass(frozen=True)
class Stylegan3Config(DictConfig):
  """Static architecture: NVIDIA's Generator / MappingNetwork / SynthesisNetwork /
  SynthesisLayer arguments and defaults (mapping_kwargs flattened with a `mapping_` prefix).

  num_fp16_res, mapping_w_avg_beta and magnitude_ema_beta are kept for the round trip only
  (this port is float32 and never updates the moving averages).
  """
  z_dim: int = 512
  c_dim: int = 0
  w_dim: int = 512
  img_resolution: int = 1024
  img_channels: int = 3
  mapping_num_layers: int = 2
  mapping_lr_multiplier: float = 0.01
  mapping_w_avg_beta: float = 0.998
  channel_base: int = 32768
  channel_max: int = 512
  num_layers: int = 14  # synthesis layers without the Fourier input and ToRGB (num_ws - 2)
  num_critical: int = 2
  first_cutoff: float = 2.0
  first_stopband: float = 2 ** 2.1
  last_stopband_rel: float = 2 ** 0.3
  margin_size: int = 10
  output_scale: float = 0.25
  num_fp16_res: int = 4
  conv_kernel: int = 3
  filter_size: int = 6
  lrelu_upsampling: int = 2
  use_radial_filters: bool = False
  conv_clamp: float | None = 256
  magnitude_ema_beta: float = 0.999

  def __post_init__(self):
    for name in ("z_dim", "w_dim", "img_resolution", "img_channels", "mapping_num_layers",
                 "channel_base", "channel_max", "conv_kernel", "filter_size", "lrelu_upsampling"):
      if getattr(self, name) < 1:
        raise ValueError(f"Stylegan3Config.{name} must be positive, got {getattr(self, name)}.")
    if self.c_dim < 0 or not 0 <= self.num_critical < self.num_layers:
      raise ValueError(f"Need c_dim >= 0 and 0 <= num_critical < num_layers: {self}.")
    _architecture(self)  # raises ValueError on sampling rates NVIDIA's asserts would refuse

  @property
  def num_ws(self) -> int:
    """Number of W rows the synthesis takes: num_layers + 2 (16 for the released networks)."""
    return self.num_layers + 2

  @property
  def input_spec(self) -> "InputSpec":
    return _architecture(self)[0]

  @property
  def layer_specs(self) -> tuple["LayerSpec", ...]:
    return _architecture(self)[1]

  def noise_shapes(self) -> tuple:
    """StyleGAN3 has no noise inputs."""
    return ()


  @classmethod
  def from_init_kwargs(cls, d: dict) -> "Stylegan3Config":
    """From a network pickle's `G.init_kwargs` (NVIDIA's Generator arguments, with
    `mapping_kwargs`). Unknown arguments are an error naming them."""
    d = dict(d)
    mapping = dict(d.pop("mapping_kwargs", None) or {})
    bad_mapping = set(mapping) - {"num_layers", "lr_multiplier", "w_avg_beta"}
    if bad_mapping:
      raise ValueError(f"Unknown StyleGAN3 mapping_kwargs {sorted(bad_mapping)}.")
    d.update({f"mapping_{k}": v for k, v in mapping.items()})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
      raise ValueError(f"Unknown StyleGAN3 Generator arguments {sorted(unknown)}; "
                       f"known: {sorted(fields)} (mapping_* from mapping_kwargs).")
    defaults = cls()
    out = {}
    for k, v in d.items():
      kind = type(getattr(defaults, k))
      out[k] = None if v is None else (bool(v) if kind is bool else
                                       int(v) if kind is int else float(v))
    return cls(**out)


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """SynthesisInput: `channels` Fourier features on a size x size grid."""
  channels: int
  size: int
  sampling_rate: float
  bandwidth: float


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One SynthesisLayer, as NVIDIA derives it (sizes are square)."""
  name: str
  is_torgb: bool
  is_critically_sampled: bool
  in_channels: int
  out_channels: int
  in_size: int
  out_size: int
  in_sampling_rate: int
  out_sampling_rate: int
  tmp_sampling_rate: int
  in_cutoff: float
  out_cutoff: float
  in_half_width: float
  out_half_width: float
  conv_kernel: int
  up_factor: int
  down_factor: int
  up_taps: int
  down_taps: int
  down_radial: bool
  padding: tuple[int, int, int, int]  # x0, x1, y0, y1 of the up-sampled image

  def up_filter_design(self) -> np.ndarray | None:
    return sg3_filters.design_lowpass_filter(
        self.up_taps, self.in_cutoff, self.in_half_width * 2, self.tmp_sampling_rate)

  def down_filter_design(self) -> np.ndarray | None:
    return sg3_filters.design_lowpass_filter(
        self.down_taps, self.out_cutoff, self.out_half_width * 2, self.tmp_sampling_rate,
        radial=self.down_radial)


@functools.lru_cache(maxsize=64)
def _architecture(cfg: Stylegan3Config) -> tuple[InputSpec, tuple[LayerSpec, ...]]:
  """SynthesisNetwork's progression of cutoffs, stopbands, rates, sizes and channels."""
  n = cfg.num_layers
  last_cutoff = cfg.img_resolution / 2
  last_stopband = last_cutoff * cfg.last_stopband_rel
  exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
  cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
  stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
  rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, cfg.img_resolution))))
  half_widths = np.maximum(stopbands, rates / 2) - cutoffs
  sizes = rates + cfg.margin_size * 2
  sizes[-2:] = cfg.img_resolution
  channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
  channels[-1] = cfg.img_channels
  inp = InputSpec(int(channels[0]), int(sizes[0]), float(rates[0]), float(cutoffs[0]))
  layers = []
  for idx in range(n + 1):
    prev = max(idx - 1, 0)
    torgb = idx == n
    critical = idx >= n - cfg.num_critical
    in_sr, out_sr = int(rates[prev]), int(rates[idx])
    tmp_sr = max(in_sr, out_sr) * (1 if torgb else cfg.lrelu_upsampling)
    up, down = int(np.rint(tmp_sr / in_sr)), int(np.rint(tmp_sr / out_sr))
    if in_sr * up != tmp_sr or out_sr * down != tmp_sr:
      raise ValueError(f"StyleGAN3 layer {idx}: sampling rates {in_sr} -> {tmp_sr} -> {out_sr} "
                       f"are not integer multiples: {cfg}.")
    k = 1 if torgb else cfg.conv_kernel
    up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
    down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
    in_size, out_size = int(sizes[prev]), int(sizes[idx])
    pad_total = (out_size - 1) * down + 1 - (in_size + k - 1) * up + up_taps + down_taps - 2
    pad_lo = (pad_total + up) // 2  # the symmetric interpretation (the paper's Appendix C.3)
    pad_hi = pad_total - pad_lo
    out_ch = int(channels[idx])
    layers.append(LayerSpec(
        name=f"L{idx}_{out_size}_{out_ch}", is_torgb=torgb, is_critically_sampled=critical,
        in_channels=int(channels[prev]), out_channels=out_ch, in_size=in_size, out_size=out_size,
        in_sampling_rate=in_sr, out_sampling_rate=out_sr, tmp_sampling_rate=tmp_sr,
        in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
        in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
        conv_kernel=k, up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
        down_radial=cfg.use_radial_filters and not critical,
        padding=(pad_lo, pad_hi, pad_lo, pad_hi)))
  return inp, tuple(layers)


def noise_shapes(config: Stylegan3Config) -> list:
  """StyleGAN3 has no noise inputs: []."""
  return list(config.noise_shapes())


# ----------------------------------------------------------------------------- parameters

def _shape_tree(config: Stylegan3Config) -> dict:
  """Nested dict of parameter shapes (tuples), the layout of the module docstring."""
  d = config.w_dim
  fc = lambda i, o: {"kernel": (i, o), "bias": (o,)}
  mapping = {}
  if config.c_dim:
    mapping["embed"] = fc(config.c_dim, d)
  for i in range(config.mapping_num_layers):
    mapping[f"fc{i}"] = fc((config.z_dim + (d if config.c_dim else 0)) if i == 0 else d, d)
  mapping["w_avg"] = (d,)
  c0 = config.input_spec.channels
  synthesis = {"input": {"kernel": (c0, c0), "affine": fc(d, 4), "transform": (3, 3),
                         "freqs": (c0, 2), "phases": (c0,)}}
  for s in config.layer_specs:
    layer = {"kernel": (s.conv_kernel, s.conv_kernel, s.in_channels, s.out_channels),
             "bias": (s.out_channels,), "affine": fc(d, s.in_channels), "magnitude_ema": ()}
    if s.up_taps > 1:
      layer["up_filter"] = (s.up_taps,)
    if s.down_taps > 1:
      layer["down_filter"] = (s.down_taps,) * (2 if s.down_radial else 1)
    synthesis[s.name] = layer
  return {"mapping": mapping, "synthesis": synthesis}


_is_shape = lambda x: isinstance(x, tuple)


def param_shapes(config: Stylegan3Config) -> dict:
  """The parameter tree with jax.ShapeDtypeStruct (float32) leaves; allocates nothing."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), _shape_tree(config),
                      is_leaf=_is_shape)


def init_params(key: jax.Array, config: Stylegan3Config) -> dict:
  """Random float32 parameters as NVIDIA initialises them (unit normal weights, FC weights
  / lr multiplier, affine biases 1, input affine 0 with bias (1, 0, 0, 0), identity transform,
  frequencies from the disc of radius `bandwidth`, magnitude EMAs 1, designed filters).

  Drawn with numpy from the key's bits (no per-shape compiles); for tests, not training.
  """
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
  normal = lambda shape, scale=1.0: rng.standard_normal(shape) * scale
  tree = _shape_tree(config)
  out: dict = {"mapping": {}, "synthesis": {}}
  for name, shapes in tree["mapping"].items():
    if name == "w_avg":
      out["mapping"][name] = np.zeros(shapes)
    else:
      lr = config.mapping_lr_multiplier if name.startswith("fc") else 1.0
      out["mapping"][name] = {"kernel": normal(shapes["kernel"], 1 / lr),
                              "bias": np.zeros(shapes["bias"])}
  spec = config.input_spec
  freqs = normal((spec.channels, 2))
  radii = np.sqrt(np.sum(np.square(freqs), axis=1, keepdims=True))
  freqs = freqs / (radii * np.exp(np.square(radii)) ** 0.25) * spec.bandwidth
  out["synthesis"]["input"] = {
      "kernel": normal((spec.channels, spec.channels)),
      "affine": {"kernel": np.zeros((config.w_dim, 4)), "bias": np.array([1.0, 0.0, 0.0, 0.0])},
      "transform": np.eye(3), "freqs": freqs, "phases": rng.uniform(size=spec.channels) - 0.5}
  for s in config.layer_specs:
    shapes = tree["synthesis"][s.name]
    layer = {"kernel": normal(shapes["kernel"]), "bias": np.zeros(shapes["bias"]),
             "affine": {"kernel": normal(shapes["affine"]["kernel"]),
                        "bias": np.ones(shapes["affine"]["bias"])},
             "magnitude_ema": np.ones(())}
    if s.up_taps > 1:
      layer["up_filter"] = s.up_filter_design()
    if s.down_taps > 1:
      layer["down_filter"] = s.down_filter_design()
    out["synthesis"][s.name] = layer
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), out)


# ----------------------------------------------------------------------------- mapping

def _dense(p: dict, x: jax.Array, lr_multiplier: float = 1.0) -> jax.Array:
  """FullyConnectedLayer without activation at Precision.HIGHEST: x [B, in] -> [B, out]."""
  return ops.dense(p, x, lr_multiplier, HIGHEST)


def pre_to_w(u: jax.Array) -> jax.Array:
  """The last mapping layer's activation: leaky ReLU 0.2 times sqrt 2. Any shape."""
  return ops.leaky_relu(u) * SQRT2


def w_to_pre(w: jax.Array) -> jax.Array:
  """Inverse of `pre_to_w`: negative values / 0.2, then all / sqrt 2. Any shape."""
  return ops.leaky_relu_inverse(w) / SQRT2


def mapping_pre_activation(params: dict, config: Stylegan3Config, z: jax.Array,
                           c: jax.Array | None = None) -> jax.Array:
  """The last mapping layer's pre-activation u (bias included): z [B, z_dim] (c [B, c_dim]
  when c_dim > 0) -> u [B, w_dim] float32, w = pre_to_w(u)."""
  p = params["mapping"]
  lr = config.mapping_lr_multiplier
  x = ops.pixel_norm(jnp.asarray(z, jnp.float32))
  if config.c_dim:
    if c is None:
      raise ValueError(f"This generator is conditional (c_dim={config.c_dim}): pass c.")
    y = ops.pixel_norm(_dense(p["embed"], jnp.asarray(c, jnp.float32)))
    x = jnp.concatenate([x, y], axis=1)
  for i in range(config.mapping_num_layers):
    if i:
      x = pre_to_w(x)
    x = _dense(p[f"fc{i}"], x, lr)
  return x


def truncate(params: dict, ws: jax.Array, truncation_psi: Any = 1.0,
             truncation_cutoff: int | None = None) -> jax.Array:
  """ws [B, num_ws, w_dim]: rows below `truncation_cutoff` (all: None) moved towards w_avg,
  w_avg + psi (w - w_avg). psi may be traced; the Python number 1 is a no-op."""
  if isinstance(truncation_psi, (int, float)) and truncation_psi == 1:
    return ws
  w_avg = params["mapping"]["w_avg"]
  n = ws.shape[1] if truncation_cutoff is None else min(int(truncation_cutoff), ws.shape[1])
  rows = (jnp.arange(ws.shape[1]) < n)[None, :, None]
  return jnp.where(rows, w_avg + truncation_psi * (ws - w_avg), ws)


def mapping(params: dict, config: Stylegan3Config, z: jax.Array, c: jax.Array | None = None,
            truncation_psi: Any = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
  """MappingNetwork: z [B, z_dim] float32 -> ws [B, num_ws, w_dim] float32."""
  w = pre_to_w(mapping_pre_activation(params, config, z, c))
  ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], config.num_ws, w.shape[1]))
  return truncate(params, ws, truncation_psi, truncation_cutoff)


# ----------------------------------------------------------------------------- synthesis ops

filtered_lrelu = upfirdn.filtered_lrelu  # the shared op; this module's name kept
upfirdn2d = upfirdn.upfirdn2d


def _conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """Stride-1 NHWC / HWIO conv at Precision.HIGHEST with `ops.conv_nhwc`'s fast input gradient."""
  return ops.conv_nhwc(x, kernel, ops.transpose_kernel(kernel), padding, HIGHEST)


def _synthesis_input(p: dict, spec: InputSpec, w: jax.Array) -> jax.Array:
  """SynthesisInput: w [B, w_dim] -> Fourier features [B, size, size, C] (NHWC)."""
  t = _dense(p["affine"], w)  # (r_c, r_s, t_x, t_y)
  t = t / jnp.linalg.norm(t[:, :2], axis=1, keepdims=True)
  one, zero = jnp.ones_like(t[:, 0]), jnp.zeros_like(t[:, 0])
  m_r = jnp.stack([jnp.stack([t[:, 0], -t[:, 1], zero], -1),
                   jnp.stack([t[:, 1], t[:, 0], zero], -1),
                   jnp.stack([zero, zero, one], -1)], 1)  # inverse rotation [B, 3, 3]
  m_t = jnp.stack([jnp.stack([one, zero, -t[:, 2]], -1), jnp.stack([zero, one, -t[:, 3]], -1),
                   jnp.stack([zero, zero, one], -1)], 1)  # inverse translation
  transforms = jnp.matmul(jnp.matmul(m_r, m_t, precision=HIGHEST), p["transform"],
                          precision=HIGHEST)
  phases = p["phases"] + jnp.einsum("cd,bd->bc", p["freqs"], transforms[:, :2, 2],
                                    precision=HIGHEST)
  freqs = jnp.einsum("cd,bde->bce", p["freqs"], transforms[:, :2, :2], precision=HIGHEST)
  amplitudes = jnp.clip(1 - (jnp.linalg.norm(freqs, axis=2) - spec.bandwidth)
                        / (spec.sampling_rate / 2 - spec.bandwidth), 0, 1)  # [B, C]
  # affine_grid(align_corners=False) scaled by size / (2 sampling_rate): pixel centres.
  g = (((2 * np.arange(spec.size) + 1) / spec.size - 1) * (0.5 * spec.size / spec.sampling_rate))
  g = jnp.asarray(g, jnp.float32)
  x = (g[None, None, :, None] * freqs[:, None, None, :, 0]
       + g[None, :, None, None] * freqs[:, None, None, :, 1])  # [B, H (y), W (x), C]
  x = jnp.sin((x + phases[:, None, None, :]) * (2 * np.pi)) * amplitudes[:, None, None, :]
  return jnp.matmul(x, p["kernel"] / math.sqrt(spec.channels), precision=HIGHEST)


def _synthesis_layer(p: dict, spec: LayerSpec, config: Stylegan3Config, x: jax.Array,
                     w: jax.Array) -> jax.Array:
  """SynthesisLayer: x [B, in_size, in_size, C_in] (NHWC), w [B, w_dim] ->
  [B, out_size, out_size, C_out]."""
  styles = _dense(p["affine"], w)  # [B, C_in]
  kernel = p["kernel"]  # [k, k, C_in, C_out]
  k = spec.conv_kernel
  if spec.is_torgb:
    styles = styles * (1 / math.sqrt(spec.in_channels * k * k))
    out_scale = jax.lax.rsqrt(p["magnitude_ema"])
  else:  # pre-normalise, then demodulate
    kernel = kernel * jax.lax.rsqrt(jnp.mean(jnp.square(kernel), axis=(0, 1, 2)))
    styles = styles * jax.lax.rsqrt(jnp.mean(jnp.square(styles), axis=1, keepdims=True))
    energy = jnp.matmul(jnp.square(styles), jnp.sum(jnp.square(kernel), axis=(0, 1)),
                        precision=HIGHEST)  # [B, C_out]
    out_scale = jax.lax.rsqrt(energy + 1e-8) * jax.lax.rsqrt(p["magnitude_ema"])
  x = x * styles[:, None, None, :]
  if k == 1:
    x = jnp.einsum("bhwi,io->bhwo", x, kernel[0, 0], precision=HIGHEST)
  else:
    x = _conv(x, kernel, ((k - 1, k - 1), (k - 1, k - 1)))
  x = x * (out_scale[:, None, None, :] if out_scale.ndim else out_scale)
  return filtered_lrelu(x, p.get("up_filter"), p.get("down_filter"), p["bias"],
                        up=spec.up_factor, down=spec.down_factor, padding=spec.padding,
                        gain=1.0 if spec.is_torgb else SQRT2,
                        slope=1.0 if spec.is_torgb else LRELU_SLOPE, clamp=config.conv_clamp)


def _stages(params: dict, config: Stylegan3Config, ws: jax.Array) -> list[stages_lib.Stage]:
  """The synthesis as stages: 'input' (the Fourier features), then one per SynthesisLayer,
  NVIDIA's names 'L{i}_{size}_{channels}' (the last is the ToRGB layer); the state after each
  is its output [B, size, size, channels] (NHWC float32)."""
  if ws.ndim != 3 or ws.shape[1:] != (config.num_ws, config.w_dim):
    raise ValueError(f"ws must be [B, {config.num_ws}, {config.w_dim}], got {ws.shape}.")
  p = params["synthesis"]
  ws = jnp.asarray(ws, jnp.float32)
  out = [stages_lib.Stage("input",
                          lambda _: _synthesis_input(p["input"], config.input_spec, ws[:, 0]))]
  for i, spec in enumerate(config.layer_specs):
    out.append(_layer_stage(p[spec.name], spec, config, ws[:, i + 1]))
  return out


def _layer_stage(p: dict, spec: LayerSpec, config: Stylegan3Config,
                 w: jax.Array) -> stages_lib.Stage:
  """One SynthesisLayer as a stage, with its style row w [B, w_dim]."""
  return stages_lib.Stage(spec.name, lambda x: _synthesis_layer(p, spec, config, x, w))


def _image(x: jax.Array, config: Stylegan3Config) -> jax.Array:
  """The ToRGB layer's output [B, H, W, C] -> images [B, C, H, W], times `output_scale`."""
  if config.output_scale != 1:
    x = x * config.output_scale
  return jnp.transpose(x, (0, 3, 1, 2))


def cut_points(config: Stylegan3Config) -> tuple[str, ...]:
  """Where the synthesis can be cut: after the Fourier 'input' and after each SynthesisLayer
  but the ToRGB layer ('L0_36_512' .. 'L13_1024_32' at 1024)."""
  return ("input",) + tuple(spec.name for spec in config.layer_specs[:-1])


def synthesize(params: dict, config: Stylegan3Config, ws: jax.Array) -> jax.Array:
  """SynthesisNetwork: ws [B, num_ws, w_dim] float32 -> images [B, img_channels,
  img_resolution, img_resolution] float32 (NCHW, not clamped). Jit with config static."""
  return _image(stages_lib.run_stages(_stages(params, config, ws)), config)


def synthesize_until(params: dict, config: Stylegan3Config, ws: jax.Array,
                     layer: str) -> jax.Array:
  """`synthesize` up to and including `layer` (one of `cut_points(config)`): its output
  [B, size, size, channels] (NHWC float32). ws: all rows (later layers' are not used)."""
  stages_lib.check_cut(layer, cut_points(config), "this StyleGAN3")
  return stages_lib.run_stages(_stages(params, config, ws), until=layer)


def synthesize_from(params: dict, config: Stylegan3Config, ws: jax.Array, layer: str,
                    activation: jax.Array, until: str | None = None) -> jax.Array:
  """The rest of `synthesize` after `layer`, from its `activation` (as `synthesize_until`
  returns it) -> images [B, img_channels, H, W]. ws: all rows (earlier layers' are not used).
  With `until` (a later cut point): that layer's activation instead of the image."""
  stages_lib.check_cut(layer, cut_points(config), "this StyleGAN3")
  if until is not None:
    stages_lib.check_cut(until, cut_points(config), "this StyleGAN3")
    return stages_lib.run_stages(_stages(params, config, ws), activation, after=layer,
                                 until=until)
  return _image(stages_lib.run_stages(_stages(params, config, ws), activation, after=layer),
                config)
