"""Error of the bfloat16 compute option against float32 (documented in docs/program.md).

On the reference's tiny 1024 fixture network (real Gaussian fit) and on the full 1024
architecture with random weights, measures:
  - the rendered image's max and mean abs difference (bf16 vs f32), relative to the f32 range;
  - a 30-step default search from the fixture's starting values: the loss trace drift and the
    best L2 reached, bf16 vs f32.

  python -m experiments.bf16_error
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("fixtures", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                             "fixtures"), "The reference fixtures folder.")
flags.DEFINE_boolean("full_size", True, "Also measure the full 1024 architecture (random weights).")


def render_error(g32, g16, params, w, noise) -> tuple[float, float]:
  a = np.asarray(jax.jit(g32.render)(params, w, noise))
  b = np.asarray(jax.jit(g16.render)(params, w, noise))
  span = np.abs(a).max()
  return float(np.abs(a - b).max() / span), float(np.abs(a - b).mean() / span)


def main(argv):
  del argv
  from pulse_jax import generators
  from pulse_jax.search import program
  from pulse_jax.nets import stylegan1
  from pulse_jax.search.config import SearchConfig
  from weights_convert.convert import convert_sources
  f = FLAGS.fixtures
  w = convert_sources([os.path.join(f, "synthesis_tiny1024.pt"),
                       os.path.join(f, "real", "gaussian_fit.pt")], log=lambda s: None)
  g32 = generators.Generator("stylegan", w.config)
  g16 = generators.Generator("stylegan", w.config, compute_dtype="bfloat16")
  data = np.load(os.path.join(f, "synthesis_tiny1024.npz"))
  noise = [data[f"noise_{i}"] for i in range(18)]
  mx, mean = render_error(g32, g16, w.params, data["dlatents"], noise)
  print(f"tiny 1024 render: max |bf16 - f32| = {mx:.2e}, mean = {mean:.2e} (of the f32 range)")

  loop = np.load(os.path.join(f, "loop_default.npz"))
  cfg = SearchConfig(steps=30)
  results = {}
  for name, g in (("float32", g32), ("bfloat16", g16)):
    p = program.Problem(g, cfg, factor=64, chunk_size=30)
    start = {"latent": loop["latent_init"]}
    for j, i in enumerate([i for i, k in enumerate(cfg.noise_layer_kinds(18)) if k != "zero"]):
      start[f"noise_{i}"] = loop[f"noise_init_{j}"]
    st = program.start_from_npz_dict(p, start, 1, 1)
    s = program.init_state(p, jnp.zeros(1, jnp.uint32), jnp.zeros(1, jnp.uint32), st)
    s, tr = program.run_chunk(p, w.params, s, jnp.asarray(loop["ref_im"]))
    results[name] = (np.asarray(tr["TOTAL"])[:, 0], float(s.best_l2[0]))
  t32, t16 = results["float32"][0], results["bfloat16"][0]
  print(f"30-step default search: max |bf16 - f32| / f32 loss = {np.max(np.abs(t16 - t32) / t32):.2e}"
        f"; best L2 f32 {results['float32'][1]:.5f}, bf16 {results['bfloat16'][1]:.5f}")

  if FLAGS.full_size:
    cfg = stylegan1.StyleGANConfig()
    rng = np.random.default_rng(0)
    shapes = stylegan1.synthesis_param_shapes(cfg)
    params = {"synthesis": jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32)
                                        * 0.5, shapes)}
    dl = rng.standard_normal((1, 18, 512)).astype(np.float32)
    nz = [rng.standard_normal((1,) + s).astype(np.float32) for s in cfg.noise_shapes()]
    mx, mean = render_error(generators.Generator("stylegan", cfg),
                            generators.Generator("stylegan", cfg, compute_dtype="bfloat16"),
                            params, dl, nz)
    print(f"full 1024 render (random weights): max |bf16 - f32| = {mx:.2e}, mean = {mean:.2e}")


if __name__ == "__main__":
  app.run(main)
