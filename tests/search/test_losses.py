"""pulse_jax.search.losses: parser, per-image terms, and the reference's (batch-summed) fixture values."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.forward.bicubic import downsample
from pulse_jax.search.losses import geocross, l1, l2, l2_raw, parse_loss_str, total_loss
from support.harness import fixture_path

EPS = 2e-3


def _fixture(name):
  """The reference fixture `name`: its arrays (np.load) for .npz, else its JSON; skips when
  absent."""
  path = fixture_path(name)
  return np.load(path) if name.endswith(".npz") else json.loads(path.read_text())


def test_parse_loss_str():
  assert parse_loss_str("100*L2+0.05*GEOCROSS") == ((100.0, "L2"), (0.05, "GEOCROSS"))
  assert parse_loss_str(" 10 * l1 + 1e-1*GeoCross ") == ((10.0, "L1"), (0.1, "GEOCROSS"))
  assert parse_loss_str("0*L2") == ((0.0, "L2"),)


@pytest.mark.parametrize(
    "bad,match",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("100*L3", "valid terms: L2, L1, GEOCROSS"),
        ("L2", "L2, L1, GEOCROSS"),
        ("*L2", "bad loss term"),
        ("100*", "bad loss term"),
        ("1*2*L2", "bad loss term"),
        ("x*L2", "bad weight"),
        ("-1*L2", ">= 0"),
        ("nan*L2", "finite"),
        ("inf*L1", "finite"),
        ("1*L2+2*l2", "twice"),
        ("1*L2+", "bad loss term"),
    ],
)
def test_parse_loss_str_rejects(bad, match):
  with pytest.raises(ValueError, match=match):
    parse_loss_str(bad)


@pytest.mark.parametrize("loss_str", ["100*L2+0.05*GEOCROSS", "10*L1", "1*GEOCROSS"])
def test_batch_sums_match_reference(loss_str):
  data, values = _fixture("losses.npz"), _fixture("fixtures.json")["losses.npz"]["values"][loss_str]
  lr_gen = downsample(jnp.asarray(data["gen"]), 8)
  total, terms = jax.jit(total_loss, static_argnums=(0, 4))(
      parse_loss_str(loss_str), jnp.asarray(data["latent"]), lr_gen, jnp.asarray(data["ref"]), EPS
  )
  assert total.shape == (3,) and set(terms) == set(values) - {"TOTAL"}
  np.testing.assert_allclose(float(total.sum()), values["TOTAL"], rtol=1e-5)
  for name, value in terms.items():
    assert value.shape == (3,)
    np.testing.assert_allclose(float(value.sum()), values[name], rtol=1e-5)


def test_per_image_l2_far_within_eps_exact():
  data = _fixture("losses.npz")
  lr_gen, ref = downsample(jnp.asarray(data["gen"]), 8), jnp.asarray(data["ref"])
  raw = np.asarray(l2_raw(lr_gen, ref))
  assert raw[0] > EPS and 0 < raw[1] <= EPS and raw[2] < 1e-10
  np.testing.assert_allclose(np.asarray(l2(lr_gen, ref, EPS)), [raw[0], EPS, EPS], rtol=1e-6)
  l1_raw = np.abs(np.asarray(lr_gen - ref)).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(l1(lr_gen, ref, EPS)), 10 * np.maximum(l1_raw, EPS), rtol=1e-5)


def test_mask_means_over_masked_pixels():
  rng = np.random.default_rng(0)
  a, b = rng.uniform(size=(2, 4, 3, 8, 6)).astype(np.float32)
  ones = jnp.ones((4, 1, 8, 6))
  np.testing.assert_allclose(np.asarray(l2(a, b, 0.0, ones)), np.asarray(l2(a, b, 0.0)), rtol=1e-6)
  mask = np.zeros((4, 1, 8, 6), np.float32)
  mask[:, :, 2:7, 1:4] = 1.0
  want_l2 = ((a - b) ** 2)[:, :, 2:7, 1:4].mean(axis=(1, 2, 3))
  want_l1 = 10 * np.abs(a - b)[:, :, 2:7, 1:4].mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(l2_raw(a, b, mask)), want_l2, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(l1(a, b, 0.0, mask)), want_l1, rtol=1e-5)
  full_c = np.broadcast_to(mask, a.shape)
  np.testing.assert_allclose(np.asarray(l2_raw(a, b, full_c)), want_l2, rtol=1e-5)


def test_geocross_brute_force_tiled_and_gradients():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(2, 3, 4, 7))
  want = np.zeros((2, 3))
  for idx in np.ndindex(2, 3):
    d = [
        2 * np.arctan2(np.sqrt(((x - y) ** 2).sum() + 1e-9), np.sqrt(((x + y) ** 2).sum() + 1e-9))
        for x in w[idx] for y in w[idx]
    ]
    want[idx] = np.mean(np.square(d) * 512) / 8
  got = geocross(jnp.asarray(w, jnp.float32))
  assert got.shape == (2, 3)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
  assert geocross(jnp.ones((5, 1, 512))).shape == (5,) and not np.any(np.asarray(geocross(jnp.ones((5, 1, 512)))))
  same = jnp.tile(jnp.asarray(w[:, :1, :1], jnp.float32), (1, 1, 4, 1))  # identical rows
  grad = jax.grad(lambda v: geocross(v).sum())(same)
  assert np.all(np.isfinite(np.asarray(grad)))
  assert float(geocross(same).max()) < 1e-6


def test_total_loss_weights_terms_and_takes_strings():
  rng = np.random.default_rng(2)
  w = jnp.asarray(rng.normal(size=(2, 18, 512)), jnp.float32)
  a, b = (jnp.asarray(v, jnp.float32) for v in rng.uniform(size=(2, 2, 3, 4, 4)))
  total, terms = total_loss("2*L2+3*L1+0.5*GEOCROSS", w, a, b, EPS)
  want = 2 * l2(a, b, EPS) + 3 * l1(a, b, EPS) + 0.5 * geocross(w)
  np.testing.assert_allclose(np.asarray(total), np.asarray(want), rtol=1e-6)
  assert list(terms) == ["L2", "L1", "GEOCROSS"] and total.dtype == jnp.float32
  with pytest.raises(ValueError):
    total_loss((), w, a, b, EPS)


def test_the_loss_table_drives_the_parser_and_the_help():
  from pulse_jax.search import losses
  assert list(losses.LOSS_TERMS) == ["L2", "L1", "GEOCROSS"]
  assert losses.loss_str_help() == (
      "Loss: 'weight*NAME' terms joined by '+', NAME in L2, L1, GEOCROSS (GEOCROSS is dropped "
      "for generators without W+ latents, e.g. the DCGAN).")
  wplus, single = types.SimpleNamespace(has_wplus=True), types.SimpleNamespace(has_wplus=False)
  assert [n for n, t in losses.LOSS_TERMS.items() if not t.applies_to(single)] == ["GEOCROSS"]
  assert all(t.applies_to(wplus) for t in losses.LOSS_TERMS.values())
  with pytest.raises(ValueError, match="valid terms: L2, L1, GEOCROSS"):
    parse_loss_str("1*L3")
