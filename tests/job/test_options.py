"""One definition per option (pulse_jax.job.options): the flags, RunOptions, SearchConfig and the
API keywords derived from it; messages that name the flag; presets and value sources."""
import dataclasses
import inspect
import types

import pytest

from pulse_jax.job import model as job_model
from pulse_jax.job import builtin_models
from pulse_jax.job import options
from pulse_jax.job import settings as run_options
from pulse_jax.job.errors import UsageError
from pulse_jax.job.settings import RunOptions, check_options, resolve
from pulse_jax.search.config import SearchConfig
from support.harness import run_python

DCGAN = types.SimpleNamespace(kind="dcgan", noise_shapes=(), has_wplus=False,
                              latent_layers=lambda tile: 1, num_classes=0,
                              ilo_layers=("b4", "b8", "b16", "b32"))
STYLEGAN = types.SimpleNamespace(kind="stylegan", noise_shapes=((1, 4, 4),) * 18,
                                 has_wplus=True, latent_layers=lambda tile: 1 if tile else 18,
                                 num_classes=0, ilo_layers=("b4", "b8"))


def test_search_config_is_the_search_options():
  fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
  opts = {o.name: o for o in options.config_options()}
  assert list(fields) == list(opts)
  for name, f in fields.items():
    assert f.default == opts[name].default and f.metadata["option"] is opts[name]
  assert SearchConfig().to_dict() == {n: o.default for n, o in opts.items()}


def test_run_options_are_every_job_option():
  fields = dataclasses.fields(RunOptions)
  assert [f.name for f in fields] == [o.name for o in options.run_options()]
  assert all(f.default == options.get(f.name).default for f in fields)
  assert RunOptions().steps == 100 and RunOptions(steps=7).given_names() == {"steps"}
  with pytest.raises(TypeError, match="unknown option.*stpes; valid: input, output_dir"):
    RunOptions(stpes=3)


def test_flags_are_the_registry():
  from absl import flags
  fv = flags.FlagValues()
  options.define_flags(flag_values=fv)
  assert set(fv) == set(options.OPTIONS)
  for o in options.OPTIONS.values():
    f = fv[o.name]
    assert f.default == o.default, o.name
    assert o.help_text() in f.help, o.name
    if o.choices:
      assert list(f.parser.enum_values) == list(o.choices)
  assert fv["steps"].parser.lower_bound == 1 and fv["micro_batches"].parser.lower_bound == 0
  assert "dcgan-digiface 400" in fv["steps"].help  # the presets are documented in --help


def test_api_keywords_are_the_registry():
  import pulse_jax
  params = inspect.signature(pulse_jax.upsample).parameters
  want = {o.keyword: o.default for o in options.run_options() if o.api}
  assert {k: p.default for k, p in params.items() if k in want} == want
  assert "keep" in params and "duplicates" not in params  # --duplicates is keep=
  assert options.api_names()["keep"] == options.api_names()["duplicates"] == "duplicates"
  assert not {"input", "weights"} & set(params)  # the positional arguments


@pytest.mark.parametrize("values, message", [
    ({"steps": 0}, "--steps: must be an integer >= 1 (got 0)"),
    ({"steps": 2.5}, "--steps: must be an integer (got 2.5)"),
    ({"restarts": 0}, "--restarts: must be >= 1 (got 0)"),
    ({"eps": -1.0}, "--eps: must be a finite number >= 0 (got -1.0)"),
    ({"learning_rate": 0}, "--learning_rate: must be a finite number > 0 (got 0.0)"),
    ({"opt_name": "lbfgs"}, "--opt_name: must be one of sgd, adam, sgdm, adamax "
                            "(got 'lbfgs')"),
    ({"micro_batches": -1}, "--micro_batches: must be >= 0 (0: automatic) (got -1)"),
    ({"bad_noise_layers": "a.b"}, "--bad_noise_layers: must be layer indices joined by '.'"),
    ({"loss_str": "100*L3"}, "--loss_str: unknown loss term 'L3'"),
    ({"remat": 1}, "--remat: must be true or false (got 1)"),
    ({"duplicates": 5, "restarts": 4}, "--duplicates: must be in 1..--restarts (4) (got 5)"),
])
def test_messages_name_the_flag(values, message):
  _, found = options.problems(values)
  assert len(found) == 1 and found[0].startswith(message), found


def test_every_bad_option_is_named_at_once():
  with pytest.raises(UsageError) as e:
    check_options(resolve(RunOptions(steps=0, eps=-1.0, fit="stretch")))
  assert str(e.value) == ("--eps: must be a finite number >= 0 (got -1.0); --steps: must be an "
                          "integer >= 1 (got 0); --fit: must be one of error, resize, pad "
                          "(got 'stretch')")
  with pytest.raises(ValueError, match=r"^steps must be an integer >= 1 \(got 0\)$"):
    SearchConfig(steps=0)  # the same check, naming the field


def test_presets_are_valid_options_of_built_in_models():
  assert set(builtin_models.PRESETS) <= set(builtin_models.BUILTIN)
  for name, preset in builtin_models.PRESETS.items():
    _, found = options.problems(dict(preset))
    assert not found, (name, found)
    assert all(options.get(k).presettable for k in preset)
  # the README's command: the built-in model's measured preset (docs/presets.md)
  assert builtin_models.PRESETS[builtin_models.DEFAULT_MODEL] == {
      "steps": 400, "restarts": 12, "learning_rate": 1.6, "lr_schedule": "linear1cycledrop",
      "opt_name": "adam", "loss_str": "100*L2", "duplicates": 4, "stop_within": 4,
      "stop_extra_steps": 0}


def test_sources_given_preset_default(monkeypatch):
  monkeypatch.setitem(builtin_models.PRESETS, builtin_models.DEFAULT_MODEL, {"steps": 300, "eps": 5e-3})
  r = resolve(RunOptions(steps=100))  # given, although it is the global default
  assert (r.steps, r.sources["steps"]) == (100, "given")
  assert (r.eps, r.sources["eps"]) == (5e-3, "preset")
  assert (r.restarts, r.sources["restarts"]) == (16, "default") and r.preset == "dcgan-digiface"
  assert resolve(r).sources == r.sources  # resolving again changes nothing
  r = resolve(RunOptions())
  assert (r.steps, r.sources["steps"]) == (300, "preset")
  assert r.replace(seed=2).given_names() == {"seed"}
  # a converted weights directory (e.g. StyleGAN FFHQ) gets the reference's defaults
  r = resolve(RunOptions(weights="weights/ffhq"))
  assert (r.steps, r.sources["steps"], r.preset) == (100, "default", None)
  # a bad preset value is named as the preset's
  monkeypatch.setitem(builtin_models.PRESETS, builtin_models.DEFAULT_MODEL, {"steps": 0})
  with pytest.raises(UsageError, match=r"--steps: must be .* \(the dcgan-digiface preset\)"):
    check_options(resolve(RunOptions()))
  monkeypatch.setitem(builtin_models.PRESETS, builtin_models.DEFAULT_MODEL, {"output_dir": "x"})
  with pytest.raises(ValueError, match="not an option a preset may set"):
    resolve(RunOptions())


def test_reports_list_the_options_that_apply():
  r = resolve(RunOptions(noise_type="zero"))
  rec = run_options.record(r, DCGAN)
  assert rec["preset"] == "dcgan-digiface"
  assert rec["options"]["steps"] == {"value": 400, "source": "preset"}
  assert not {"noise_type", "num_trainable_noise_layers", "bad_noise_layers", "tile_latent",
              "compute_dtype", "remat"} & set(rec["options"])
  full = run_options.record(r, STYLEGAN)["options"]
  assert full["noise_type"] == {"value": "zero", "source": "given"}
  assert set(full) == set(run_options.NAMES) - {"class_index"}  # StyleGAN v1: unconditional
  conditional = types.SimpleNamespace(**{**vars(STYLEGAN), "num_classes": 10})
  assert set(run_options.record(r, conditional)["options"]) == set(run_options.NAMES)
  settings = run_options.settings(r, r.search_config("100*L2"), DCGAN)
  assert settings["loss_str"] == "100*L2" and settings["loss_str_given"] == r.loss_str
  assert "noise_type" not in settings and "steps" in settings and "quiet" not in settings
  # a note for the options given that do not apply
  notes = job_model.generator_notes(r, DCGAN)
  assert notes == ["note: the dcgan generator has no noise inputs: --noise_type does not apply"]
  assert job_model.generator_notes(resolve(RunOptions()), DCGAN) == []


def test_result_neutral_settings_are_derived():
  from pulse_jax.job import result_files
  assert set(result_files.RESULT_NEUTRAL_SETTINGS) == {"batch_size", "chunk_size", "micro_batches",
                                                   "memory_budget_gb", "remat"}


def test_groups_and_values_of():
  assert [o.name for o in options.GROUPS["device"]][:2] == ["compute_dtype", "remat"]
  assert options.values_of(RunOptions(fit="pad"), "inputs") == {
      "fit": "pad", "alpha_background": "black", "align": False, "align_size": None}
  assert all(o.group for o in options.OPTIONS.values())


def test_importing_pulse_jax_is_cheap():
  code = ("import sys, pulse_jax, pulse_jax.job.options; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'orbax')))")
  p = run_python("-c", code, timeout=60)
  assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_layers_define_their_options_and_the_job_composes_them():
  from pulse_jax.core import dtypes
  from pulse_jax.forward import options as forward_options
  from pulse_jax.search import config
  assert options.GROUPS["search"] is config.SEARCH
  assert options.GROUPS["forward"] is forward_options.OPTIONS
  assert all(options.get(o.name) is o for o in config.SEARCH + forward_options.OPTIONS)
  # --compute_dtype: the generators' dtypes without the verification-only float64
  assert options.COMPUTE_DTYPES == ("float32", "bfloat16")
  assert set(options.COMPUTE_DTYPES) < set(dtypes.COMPUTE_DTYPES)
  assert options.get("compute_dtype").choices == options.COMPUTE_DTYPES


def test_compute_dtypes_are_the_generators():
  from pulse_jax import generators
  from pulse_jax.core import dtypes
  assert generators.COMPUTE_DTYPES == dtypes.COMPUTE_DTYPES


def test_lower_layers_import_no_job():
  code = ("import sys, pulse_jax.search.config, pulse_jax.forward.options, "
          "pulse_jax.forward.model, pulse_jax.core.option; "
          "print(sorted(m for m in sys.modules if m.startswith('pulse_jax.job')))")
  p = run_python("-c", code, timeout=120)
  assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_family_predicates_ask_the_family():
  assert not options.uses_compute_dtype(DCGAN) and options.uses_compute_dtype(STYLEGAN)
  assert job_model.uses_remat is options.uses_remat
  assert options.get("remat").applies_to(STYLEGAN) and not options.get("remat").applies_to(DCGAN)
