"""Weights directories and weights_convert against tampered or mistaken input (issue 19, 4).

A tampered metadata.json (wrong types, a missing config, a JSON list, absurd layer counts,
broken JSON) is a `WeightsError` naming the file and the fix (re-convert), a short message,
and a clean exit 2 from `pulse_jax.run` and `pulse_jax.render`; `weights_convert` says what a
directory given as --source is, and refuses an existing --out before reading any source (so
before the Gaussian fit). The weights are the rosinality fixture converted in-process (tiny
StyleGAN2, a 256-sample prior fit: about a second).
"""
import json
import pathlib
import shutil

import numpy as np
import pytest

from pulse_jax.io import weights_dir as checkpoint
from pulse_jax.io.weights_dir import WeightsError
from support.harness import REPO, TEST_DATA, cli

PT = TEST_DATA / "rosinality_tiny32.pt"
MAX_MESSAGE = 1000  # characters: every refusal below is a sentence or two, not a dump


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
  from weights_convert.convert import convert_and_save
  out = tmp_path_factory.mktemp("wd") / "sg2"
  convert_and_save([str(PT)], str(out), gaussian_fit_samples=256, log=lambda s: None)
  return out


def tampered(weights_dir, tmp_path, change) -> pathlib.Path:
  """A copy of the weights directory whose metadata.json is `change(meta)` (a dict or list
  to write as JSON, or a str to write as is)."""
  d = tmp_path / "tampered"
  shutil.copytree(weights_dir, d)
  meta = json.loads((d / "metadata.json").read_text())
  new = change(meta)
  (d / "metadata.json").write_text(new if isinstance(new, str) else json.dumps(new))
  return d


def _set(path, value):
  def change(meta):
    *parents, last = path
    node = meta
    for p in parents:
      node = node[p]
    node[last] = value
    return meta
  return change


def _drop(key):
  def change(meta):
    del meta[key]
    return meta
  return change


CASES = {
    "img_resolution_as_string": (_set(("config", "img_resolution"), "64"),
                                 'config.img_resolution must be an integer'),
    "missing_config": (_drop("config"), '"config" (the architecture) is missing'),
    "json_list": (lambda m: [m], "must be a JSON object"),
    "config_as_list": (_set(("config",), [1, 2]), '"config" must be an object'),
    "mapping_layers_100000": (_set(("config", "mapping_layers"), 100000),
                              "config.mapping_layers must be an integer in 0..1024"),
    "float_for_int": (_set(("config", "z_dim"), 1.5), "config.z_dim must be an integer"),
    "bool_for_int": (_set(("config", "w_dim"), True), "config.w_dim must be an integer"),
    "nan_number": (_set(("config", "mapping_lr_multiplier"), float("nan")),
                   "config.mapping_lr_multiplier must be a number"),
    "string_for_bool": (_set(("config", "use_noise"), "yes"), "config.use_noise must be true"),
    "filter_of_strings": (_set(("config", "resample_filter"), ["a"]),
                          "config.resample_filter must be a list of numbers"),
    "unknown_config_field": (_set(("config", "bogus"), 1), 'unknown field(s) "bogus"'),
    "unknown_kind": (_set(("kind",), "x" * 5000), '"kind" must be one of'),
    "parts_not_a_list": (_set(("parts",), "synthesis"), '"parts" must be a list'),
    "unknown_part": (_set(("parts",), ["synthesis", "bogus"]), "Unknown part 'bogus'"),
    "sources_not_objects": (_set(("sources",), [1, 2]), '"sources" must be a list'),
    "format_version_string": (_set(("format_version",), "1"), "format version"),
    "broken_json": (lambda m: '{"kind": ', "not valid JSON"),
    "deeply_nested_json": (lambda m: "[" * 100_000, "not valid JSON"),
    "not_utf8": (None, "not valid JSON"),  # written below: a raw 0xff byte
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_metadata_is_a_short_weights_error_naming_the_file(weights_dir, tmp_path,
                                                                     case):
  change, expected = CASES[case]
  if change is None:
    d = tmp_path / "tampered"
    shutil.copytree(weights_dir, d)
    (d / "metadata.json").write_bytes(b'{"kind": "\xff"}')
  else:
    d = tampered(weights_dir, tmp_path, change)
  with pytest.raises(WeightsError) as e:
    checkpoint.load_weights(str(d))
  msg = str(e.value)
  assert expected in msg, msg
  assert str(d / "metadata.json") in msg and "python -m weights_convert" in msg, msg
  assert len(msg) < MAX_MESSAGE, len(msg)


def test_shape_mismatches_are_listed_briefly(weights_dir, tmp_path):
  """channel_max 8 instead of 16 changes nearly every synthesis shape: the first few are named,
  then a count (a 100000-layer config gave a 13.6 MB message)."""
  d = tampered(weights_dir, tmp_path, _set(("config", "channel_max"), 8))
  with pytest.raises(WeightsError) as e:
    checkpoint.load_weights(str(d))
  msg = str(e.value)
  assert "stored shape" in msg and "more" in msg and "python -m weights_convert" in msg, msg
  assert msg.count("stored shape") == checkpoint.MAX_LISTED, msg
  assert len(msg) < 2 * MAX_MESSAGE, len(msg)


def test_family_defaults_of_tampered_metadata_are_skipped_not_raised(weights_dir, tmp_path):
  """The option resolution reads metadata.json before loading: a tampered one must not raise
  there (RecursionError today for deeply nested JSON) but leave the message to loading."""
  from pulse_jax.job.settings import family_defaults_for
  d = tampered(weights_dir, tmp_path, lambda m: "[" * 100_000)
  assert family_defaults_for(str(d)) == (None, {})


@pytest.mark.slow
def test_tampered_metadata_run_and_render_exit_2_without_traceback(weights_dir, tmp_path):
  d = tampered(weights_dir, tmp_path, _set(("config", "img_resolution"), "64"))
  latents = tmp_path / "z.npz"
  np.savez(latents, z=np.zeros((1, 16), np.float32))
  for cmd in (["pulse_jax.run", f"--weights={d}", f"--output_dir={tmp_path / 'out'}",
               "--steps=2", "--restarts=2"],
              ["pulse_jax.render", f"--weights={d}", f"--latents={latents}",
               f"--out={tmp_path / 'x.png'}"]):
    p = cli(*cmd, cwd=REPO)
    assert p.returncode == 2, (cmd[0], p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr and f"{cmd[0]}: error:" in p.stderr, p.stderr[-2000:]
    assert "metadata.json" in p.stderr and "img_resolution" in p.stderr, p.stderr
    assert "python -m weights_convert" in p.stderr and len(p.stderr) < MAX_MESSAGE, p.stderr
  assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- weights_convert

def test_weights_convert_source_directory_is_named_a_directory(tmp_path):
  from weights_convert.convert import convert_and_save
  with pytest.raises(ValueError, match=r"a directory; pass a weights file") as e:
    convert_and_save([str(TEST_DATA)], str(tmp_path / "w"), log=lambda s: None)
  assert "no such file" not in str(e.value)
  assert not (tmp_path / "w").exists()


def test_weights_convert_existing_out_is_refused_before_any_source_is_read(weights_dir,
                                                                           tmp_path,
                                                                           monkeypatch):
  """Reading the sources (and then the Gaussian fit, which takes long for a real network)
  must not start when --out cannot be written."""
  from weights_convert import convert

  def must_not_run(*a, **k):
    raise AssertionError("the sources were read before --out was checked")
  monkeypatch.setattr(convert, "convert_sources", must_not_run)
  with pytest.raises(FileExistsError, match="already holds converted weights; pass --overwrite"):
    convert.convert_and_save([str(PT)], str(weights_dir), log=lambda s: None)
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  for overwrite in (False, True):  # never into a folder of other files, even with --overwrite
    with pytest.raises(ValueError, match="holds other files .*notes.txt"):
      convert.convert_and_save([str(PT)], str(other), overwrite=overwrite, log=lambda s: None)
  (tmp_path / "file").write_text("x")
  with pytest.raises(ValueError, match="a file, not a directory"):
    convert.convert_and_save([str(PT)], str(tmp_path / "file"), log=lambda s: None)
  assert (other / "notes.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) \
      == ["notes.txt"]
