"""The built-in preset's counts of restarts (keep --duplicates, stop at --stop_within) are capped
at the --restarts a job runs with, and the reports say so (settings.PRESET_AT_MOST_RESTARTS)."""
import json
import types

import pytest

from pulse_jax.job import builtin_models
from pulse_jax.job import settings
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from pulse_jax.job.settings import RunOptions, check_options, resolve
from support.harness import SAMPLE, require_builtin_model

PRESET = builtin_models.PRESETS[builtin_models.DEFAULT_MODEL]
DCGAN = types.SimpleNamespace(kind="dcgan", noise_shapes=(), has_wplus=False,  # as test_options
                              latent_layers=lambda tile: 1, num_classes=0,
                              ilo_layers=("b4", "b8", "b16", "b32"))


def test_the_preset_counts_restarts_only_in_the_capped_options():
  counts = [n for n in settings.PRESET_AT_MOST_RESTARTS if n in PRESET]
  assert counts == ["duplicates", "stop_within"]
  assert all(1 < PRESET[n] <= PRESET["restarts"] for n in counts)


def test_a_smaller_restarts_caps_the_preset_and_the_record_says_so():
  r = resolve(RunOptions(restarts=2))
  check_options(r)  # capped values pass the rules over --restarts
  assert (r.duplicates, r.stop_within, r.stop_extra_steps) == (2, 2, PRESET["stop_extra_steps"])
  assert r.sources["duplicates"] == r.sources["stop_within"] == "preset"
  assert r.capped == {"duplicates": PRESET["duplicates"], "stop_within": PRESET["stop_within"]}
  assert r.given_names() == {"restarts"}  # a capped value does not count as given
  rec = settings.record(r, DCGAN)["options"]
  assert rec["duplicates"] == {"value": 2, "source": "preset",
                               "preset_value": PRESET["duplicates"]}
  assert rec["stop_within"] == {"value": 2, "source": "preset",
                                "preset_value": PRESET["stop_within"]}
  assert rec["restarts"] == {"value": 2, "source": "given"}
  assert resolve(r).capped == r.capped  # resolving again changes nothing


def test_enough_restarts_leave_the_preset_as_it_is():
  for restarts in (PRESET["duplicates"], PRESET["restarts"], 40):
    r = resolve(RunOptions(restarts=restarts))
    assert (r.duplicates, r.stop_within) == (PRESET["duplicates"], PRESET["stop_within"])
    assert r.capped == {}
    assert "preset_value" not in settings.record(r, DCGAN)["options"]["duplicates"]
  r = resolve(RunOptions())
  assert (r.restarts, r.duplicates, r.stop_within, r.capped) == (
      PRESET["restarts"], PRESET["duplicates"], PRESET["stop_within"], {})


def test_given_counts_are_checked_not_capped():
  r = resolve(RunOptions(restarts=2, duplicates=3))
  assert r.duplicates == 3 and r.sources["duplicates"] == "given" and "duplicates" not in r.capped
  assert r.stop_within == 2 and r.capped == {"stop_within": PRESET["stop_within"]}
  with pytest.raises(UsageError, match=r"--duplicates: must be in 1\.\.--restarts \(2\)"):
    check_options(r)
  with pytest.raises(UsageError, match=r"--stop_within: must be at most --restarts \(2\)"):
    check_options(resolve(RunOptions(restarts=2, stop_within=3)))
  r = resolve(RunOptions(restarts=2, stop_within=0))  # the stop off, as given
  assert (r.stop_within, r.duplicates, r.capped) == (0, 2, {"duplicates": PRESET["duplicates"]})


@pytest.mark.slow
def test_a_run_with_two_restarts_keeps_two_and_its_report_says_why(tmp_path):
  require_builtin_model()
  out = tmp_path / "out"
  summary = run_job(RunOptions(input=str(SAMPLE), output_dir=str(out), steps=2, restarts=2),
                    log=lambda s: None, warn=lambda s: None)
  assert summary["exit_code"] == 0
  stem = SAMPLE.stem
  rep = json.loads((out / stem / "report.json").read_text())
  assert rep["preset"] == builtin_models.DEFAULT_MODEL
  assert rep["options"]["duplicates"] == {"value": 2, "source": "preset",
                                          "preset_value": PRESET["duplicates"]}
  assert rep["options"]["stop_within"]["value"] == 2
  assert summary["options"]["duplicates"]["preset_value"] == PRESET["duplicates"]
  assert sorted(p.name for p in (out / stem).glob("hr_*.png")) == ["hr_0.png", "hr_1.png"]
