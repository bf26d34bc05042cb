"""experiments/sg2_step_benchmark.py, pulse-jax side only (the NVIDIA side needs a checkout of
NVlabs/stylegan3 and torch; without --nvidia_dir it is skipped and said so), on a 16 px
StyleGAN2: a few seconds."""
import pytest
import json

import numpy as np

from experiments import sg2_step_benchmark as bench
from weights_convert.tables import stylegan2 as tables_stylegan2

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")


def test_pulse_jax_side_runs_and_writes_results(tmp_path):
  r = bench.run(None, resolution=16, channel_base=256, channel_max=16, restarts=2, lr_size=4,
                steps=2, rounds=1, log=lambda s: None)
  j = r["pulse_jax"]
  assert r["nvidia"] is None and r["nvidia_skipped"] == "no --nvidia_dir"
  assert j["restart_steps_per_s"] > 0 and j["finite"] and j["steps_per_round"] == 2
  assert r["spec"]["noise_layers"] == 5 and r["spec"]["trainable_noise_layers"] == 5
  paths = bench.write(r, str(tmp_path), "smoke")
  assert json.loads(open(paths[0]).read())["spec"]["resolution"] == 16
  md = open(paths[1]).read()
  assert "| pulse-jax |" in md and "NVIDIA side not run: no --nvidia_dir" in md


def test_torch_state_is_the_converter_run_backwards():
  """The random weights NVIDIA's side loads convert back to the same pulse-jax params."""
  cfg = bench.sg2_config(16, 256, 16)
  params = bench.random_params(cfg, 0)
  state = bench.torch_state(cfg, params)
  assert state["synthesis.b4.const"].shape == (16, 4, 4)  # torch layout (C, H, W)
  assert state["synthesis.b8.conv0.weight"].shape == (16, 16, 3, 3)  # OIHW
  from pulse_jax.nets.upfirdn import setup_filter
  filt = setup_filter(cfg.resample_filter)
  state.update({e.source: filt for e in tables_stylegan2.torch_table(cfg)
                if e.transform == tables_stylegan2.CHECK_FILTER})
  back = tables_stylegan2.apply_table(tables_stylegan2.torch_table(cfg), state, "random", cfg)
  for part in ("mapping", "synthesis"):
    a, b = bench._leaves(back[part]), bench._leaves(params[part])
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
