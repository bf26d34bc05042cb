"""The recipes, followed: a new loss term is ONE entry in `pulse_jax.search.losses.LOSS_TERMS`;
a new forward operator is ONE entry in `pulse_jax.forward.options.OPTIONS`. Everything else (the
--loss_str parser and help, the search loss, the flags, `RunOptions`, the `upsample` keywords,
`ForwardModel`'s fields and D) follows from the entry."""
import textwrap
import types

import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.job import model as job_model
from pulse_jax.job import options
from pulse_jax.job.errors import UsageError
from pulse_jax.search import losses
from pulse_jax.search.config import SearchConfig
from support.harness import run_python


def _toy_term(t: losses.LossInputs):
  """Mean |lr_gen| per image: [...]."""
  return jnp.mean(jnp.abs(t.lr_gen), axis=(-3, -2, -1))


def test_adding_a_loss_term_is_one_table_entry(monkeypatch):
  monkeypatch.setitem(losses.LOSS_TERMS, "TOY", losses.LossTerm(
      _toy_term, applies=lambda g: g.has_wplus, lacks="no toys", note_why="it has no toys"))
  # --loss_str accepts it (the flag's check, SearchConfig's, the parser) and --help names it
  assert options.problems({"loss_str": "100*L2+3*toy"})[1] == []
  assert SearchConfig(loss_str="100*L2+3*TOY").loss_str == "100*L2+3*TOY"
  assert losses.parse_loss_str("100*L2+3*toy") == ((100.0, "L2"), (3.0, "TOY"))
  assert "L2, L1, GEOCROSS, TOY" in options.get("loss_str").help_text()
  # the search loss computes it, weighted, next to the others
  rng = np.random.default_rng(0)
  lr, ref = (jnp.asarray(rng.random((2, 3, 4, 4), np.float32)) for _ in range(2))
  w = jnp.asarray(rng.standard_normal((2, 18, 512), np.float32))
  total, values = losses.total_loss("100*L2+3*TOY", w, lr, ref, 2e-3)
  np.testing.assert_allclose(values["TOY"], jnp.mean(jnp.abs(lr), axis=(-3, -2, -1)))
  np.testing.assert_allclose(total, 100 * losses.l2(lr, ref, 2e-3) + 3 * values["TOY"],
                             rtol=1e-6)
  # the job drops it for the generators it does not apply to, with its reasons
  dcgan = types.SimpleNamespace(kind="dcgan", has_wplus=False)
  new, notes = job_model.loss_for_generator("100*L2+3*TOY", dcgan)
  assert new == "100*L2" and notes == [
      "note: TOY does not apply to the dcgan generator (it has no toys): searching with "
      "--loss_str='100*L2'"]
  with pytest.raises(UsageError, match=r"has only GEOCROSS and TOY, which do not apply to the "
                                       r"dcgan generator \(no W\+ latents; no toys\); add an "
                                       r"L2 or L1 term"):
    job_model.loss_for_generator("1*GEOCROSS+3*TOY", dcgan)


def test_an_unknown_loss_term_is_refused():
  _, found = options.problems({"loss_str": "100*L2+3*TOY"})
  assert found == ["--loss_str: unknown loss term 'TOY' in '100*L2+3*TOY'; valid terms: L2, L1, "
                   "GEOCROSS"]


# The table's entry is added before the modules that derive from it are imported (as a new
# entry in pulse_jax/forward/options.py would be): a fresh interpreter.
_FORWARD_RECIPE = textwrap.dedent('''
    import inspect
    import numpy as np
    from pulse_jax.core.option import finite
    from pulse_jax.forward import options as forward_options

    forward_options.OPTIONS += (forward_options.ForwardOption(
        "gain", float, 1.0, "Multiply the HR image by this gain before D's other steps end.",
        check=finite(0.0), convert=float, apply=lambda m, x, arrays: x * m.gain,
        operator=lambda m: f"gain({m.gain:g})" if m.gain != 1.0 else None),)

    from absl import flags
    import pulse_jax
    from pulse_jax.forward import ForwardModel, OPTION_NAMES
    from pulse_jax.job import options
    from pulse_jax.job.settings import RunOptions

    fv = flags.FlagValues()
    options.define_flags(flag_values=fv)
    assert fv["gain"].default == 1.0 and "gain" in fv["gain"].help.lower()
    assert options.get("gain").group == "forward" and "gain" in OPTION_NAMES
    assert options.problems({"gain": -1.0})[1] == [
        "--gain: must be a finite number >= 0 (got -1.0)"]
    assert inspect.signature(pulse_jax.upsample).parameters["gain"].default == 1.0
    o = RunOptions(gain=2.0)
    assert options.values_of(o, "forward")["gain"] == 2.0
    model = ForwardModel.from_options(factor=2, **options.values_of(o, "forward"))
    plain = ForwardModel(factor=2)
    assert model.gain == 2.0 and plain.gain == 1.0 and hash(model) != hash(plain)
    assert model.operators() == ["bicubic(factor=2)", "gain(2)"] and not model.is_default
    assert model.describe()["gain"] == 2.0
    hr = np.random.default_rng(0).random((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model.apply(hr)), 2 * np.asarray(plain.apply(hr)),
                               rtol=1e-6)
    print("recipe followed")
''')


def test_adding_a_forward_operator_is_one_table_entry():
  p = run_python("-c", _FORWARD_RECIPE, timeout=300)
  assert p.returncode == 0 and p.stdout.strip() == "recipe followed", p.stdout + p.stderr
