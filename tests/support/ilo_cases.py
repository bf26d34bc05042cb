"""Tiny generators for the ILO tests (tests/search/test_ilo*.py): a random DCGAN, and the
cut-point cases of tests/generators/test_split.py (`CASES`: name -> () -> (Generator, params))."""
from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np

from support.harness import REPO


def tiny_dcgan():
  """(Generator, params): a DCGAN with nz 8, ngf 4, its initial weights plus N(0, 0.05^2)
  (seeded), so that its layers are not symmetric."""
  from pulse_jax import generators
  from pulse_jax.nets import dcgan
  cfg = dcgan.DCGANConfig(nz=8, ngf=4)
  params = dcgan.DCGANGenerator(cfg).init(jax.random.key(1), jnp.zeros((1, 8)))["params"]
  rng = np.random.RandomState(3)
  params = jax.tree.map(lambda x: x + 0.05 * rng.randn(*x.shape).astype(x.dtype), params)
  return generators.Generator("dcgan", cfg), {"dcgan": params}


_SPLIT = []


def split_cases():
  """tests/generators/test_split.py as a module (loaded once; tests/ is not a package)."""
  if not _SPLIT:
    spec = importlib.util.spec_from_file_location(
        "_split_cases", REPO / "tests" / "generators" / "test_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _SPLIT.append(module)
  return _SPLIT[0]
