"""The range of plausible faces in a run's files (job/outputs.py, job/result_files.py): the
report's "candidates", "spread" and "stopping" blocks, spread.png / spread.npy beside the HR
images (only with 2 or more restarts within eps), traces cut at the steps run, the summary
entry and the log line. A hand-made SearchResult: no search is run."""
import json
import types

import numpy as np
import pytest
from PIL import Image

from pulse_jax.io import run_files
from pulse_jax.io.images import SPREAD_VMAX, heat_map
from pulse_jax.io.input_images import InputImage
from pulse_jax.job import outputs, result_files
from pulse_jax.job.inputs import Item
from pulse_jax.runtime.loop import SearchResult

B, R, K, STEPS, HR, LR = 2, 4, 2, 6, 8, 2
EPS = 0.1


def fake_result(**fields) -> SearchResult:
  """2 images x 4 restarts, 2 kept. Image 0: restarts 0, 1, 3 within eps, a spread map, every
  step run. Image 1: only restart 2 within eps (no map; restart 0 fills the second place),
  ended early after 3 steps (its trace NaN after them)."""
  rng = np.random.default_rng(0)
  l2 = np.array([[0.05, 0.08, 0.5, 0.09], [0.3, 0.4, 0.07, 0.6]], np.float32)
  within = l2 <= EPS
  selected = np.array([[0, 3], [2, 0]])
  trace_l2 = rng.uniform(0.01, 1.0, (STEPS, B, R)).astype(np.float32)
  trace_l2[3:, 1] = np.nan
  spread = rng.uniform(0.0, 0.4, (B, HR, HR)).astype(np.float32)
  spread[1] = np.nan
  result = SearchResult(
      total=l2 * 100, terms={"L2": l2}, l2=l2, min_l2=l2, best_step=np.full((B, R), 3),
      within_eps=within, ranking=np.argsort(l2, axis=1), success_rate=within.mean(1),
      selected=selected, hr=rng.uniform(0, 1, (B, K, 3, HR, HR)).astype(np.float32),
      lr=rng.uniform(0, 1, (B, K, 3, LR, LR)).astype(np.float32),
      start_values={"latent": np.zeros((B, K, 1, 4), np.float32)},
      all_start_values={"latent": np.zeros((B, R, 1, 4), np.float32)},
      trace={"L2_raw": trace_l2, "TOTAL": trace_l2 * 100},
      timings={"steps": STEPS, "restart_steps": R * (STEPS + 3)}, num_devices=1, padded_rows=0)
  new = dict(selection="diverse", filled=np.array([0, 1]), diversity=np.array([0.21, 0.34]),
             spread=spread, spread_count=np.array([3, 1]),
             spread_mean=np.array([float(spread[0].mean()), np.nan]),
             steps_run=np.array([STEPS, 3]), ended_early=np.array([False, True]),
             first_within_step=np.array([[2, 4, 0, 5], [0, 0, 3, 0]]))
  new.update(fields)
  for k, v in new.items():  # set after construction: the fields' defaults may change
    setattr(result, k, v)
  return result


def _item(i: int) -> Item:
  pixels = np.full((3, LR, LR), 0.5, np.float32)
  image = InputImage(path=f"/in/face{i}.png", stem=f"face{i}", pixels=pixels, mask=None,
                     image_key=i, original_size=(LR, LR), original_mode="RGB", format="PNG")
  return Item(path=image.path, stem=image.stem, image=image)


def _context(tmp_path, write: bool = True):
  lines = []
  o = types.SimpleNamespace(restarts=R, steps=STEPS, eps=EPS, duplicates=K,
                            output_dir=str(tmp_path), overwrite=False)
  config = types.SimpleNamespace(eps=EPS, steps=STEPS, seed=0)
  ctx = outputs.Context(o=o, generator=types.SimpleNamespace(resolution=HR), config=config,
                        settings={"steps": STEPS}, record={}, winfo={"kind": "fake"},
                        env={"versions": {}, "device": {}}, write=write, log=lines.append,
                        warn=lines.append)
  return ctx, lines


def _finish(tmp_path, i: int, result=None, write: bool = True):
  ctx, lines = _context(tmp_path, write)
  it = _item(i)
  report = outputs.finish_input(ctx, it, result or fake_result(), i, [], {"search_s": 1.0})
  return ctx, it, report, lines


def test_an_input_with_a_spread_map_writes_it_and_reports_its_range(tmp_path):
  res = fake_result()
  ctx, it, report, lines = _finish(tmp_path, 0, res)
  d = tmp_path / "face0"
  cand, spread, stop = report["candidates"], report["spread"], report["stopping"]
  assert cand["selection"] == "diverse" and cand["filled"] == 0
  assert cand["diversity"] == pytest.approx(res.diversity[0])
  assert [(c["rank"], c["restart"], c["within_eps"]) for c in cand["kept"]] == [
      (k, int(r), bool(res.within_eps[0, r])) for k, r in enumerate(res.selected[0])]
  assert [c["l2"] for c in cand["kept"]] == [res.l2[0, r] for r in res.selected[0]]
  assert spread["file"] == "spread.png" and spread["values"] == "spread.npy"
  assert spread["restarts"] == 3 and spread["why"] is None and spread["vmax"] == SPREAD_VMAX
  assert spread["mean"] == pytest.approx(res.spread_mean[0])
  assert spread["max"] == pytest.approx(float(res.spread[0].max()))
  assert stop == {"steps_run": STEPS, "steps": STEPS, "ended_early": False,
                  "first_within_step": res.first_within_step[0].tolist(),
                  "restart_steps": R * STEPS}
  # the files: the heat map of the values on the fixed scale, and the values themselves
  png = np.asarray(Image.open(d / "spread.png"))
  np.testing.assert_array_equal(png, heat_map(res.spread[0], SPREAD_VMAX))
  np.testing.assert_array_equal(np.load(d / "spread.npy"), res.spread[0])
  on_disk = json.loads((d / run_files.REPORT).read_text())
  assert "spread.png" in on_disk["files"] and "spread.npy" in on_disk["files"]
  assert on_disk["files"][-1] == run_files.REPORT
  assert on_disk["spread"]["file"] == "spread.png"
  # the log line of the finished input
  line = [s for s in lines if s.startswith(it.path)][-1]
  assert "kept 2 candidates (diverse)" in line and "diversity 0.21" in line, line
  assert f"{STEPS}/{STEPS} steps run" in line and "ended early" not in line, line
  # the summary entry
  entry = outputs._file_entry(ctx, it, str(tmp_path))
  assert entry["diversity"] == pytest.approx(res.diversity[0])
  assert entry["spread_mean"] == pytest.approx(res.spread_mean[0])
  assert entry["steps_run"] == STEPS


def test_the_spread_files_belong_to_the_complete_outputs_and_are_cleared(tmp_path):
  _finish(tmp_path, 0)
  d = tmp_path / "face0"
  assert result_files.complete_report(str(tmp_path), "face0") is not None
  assert {"spread.png", "spread.npy"} <= {p.rsplit("/", 1)[-1] for p in
                                          result_files.existing_outputs(str(tmp_path), "face0")}
  planned = result_files.planned_files(str(tmp_path), "face0", K, False)
  assert str(d / "spread.png") in planned and str(d / "spread.npy") in planned
  (d / "spread.npy").unlink()   # a listed file missing: not complete, searched again
  assert result_files.complete_report(str(tmp_path), "face0") is None
  removed = result_files.clear_outputs(str(tmp_path), "face0")
  assert str(d / "spread.png") in removed and not (d / "spread.png").exists()


def test_fewer_than_2_within_eps_gives_no_map_and_says_why(tmp_path):
  res = fake_result()
  _, it, report, lines = _finish(tmp_path, 1, res)
  d = tmp_path / "face1"
  assert not (d / "spread.png").exists() and not (d / "spread.npy").exists()
  spread = report["spread"]
  assert spread["file"] is None and spread["values"] is None and spread["restarts"] == 1
  assert spread["mean"] is None and spread["max"] is None
  assert spread["why"] == result_files.NO_SPREAD and "fewer than 2 restarts within eps" in \
      spread["why"]
  assert not any("spread" in f for f in report["files"])
  assert report["candidates"]["filled"] == 1
  assert report["stopping"] == {"steps_run": 3, "steps": STEPS, "ended_early": True,
                                "first_within_step": res.first_within_step[1].tolist(),
                                "restart_steps": R * 3}
  line = [s for s in lines if s.startswith(it.path)][-1]
  assert "1 not within eps" in line and f"3/{STEPS} steps run (ended early)" in line, line


def test_trace_json_holds_only_the_steps_each_input_ran(tmp_path):
  res = fake_result()
  for b, steps_run in ((0, STEPS), (1, 3)):
    doc = result_files.trace_doc(res, b)
    assert doc["steps"] == list(range(1, steps_run + 1))
    for r in range(R):
      series = doc["restarts"][str(r)]
      np.testing.assert_array_equal(series["L2_raw"], res.trace["L2_raw"][:steps_run, b, r])
      assert len(series["TOTAL"]) == steps_run
    text = json.dumps(result_files.jsonable(doc))
    assert "null" not in text and "NaN" not in text   # no tail of the steps not run
  _finish(tmp_path, 1, res)
  on_disk = json.loads((tmp_path / "face1" / run_files.TRACE).read_text())
  assert on_disk["steps"] == [1, 2, 3] and len(on_disk["restarts"]["0"]["L2_raw"]) == 3


def test_without_writing_the_map_is_reported_but_no_file(tmp_path):
  _, _, report, _ = _finish(tmp_path, 0, write=False)
  assert not list(tmp_path.iterdir())
  assert report["spread"]["file"] is None and report["spread"]["why"] is None
  assert report["spread"]["restarts"] == 3 and report["spread"]["mean"] is not None


def test_a_result_without_the_range_fields_reads_as_before(tmp_path):
  """A SearchResult whose range fields are unset (None): the ranking's kept restarts, no
  diversity, no map, every recorded step run."""
  none = dict.fromkeys(("filled", "diversity", "spread", "spread_count", "spread_mean",
                        "steps_run", "ended_early", "first_within_step"))
  res = fake_result(selection="l2", **none)
  res.trace = {k: np.nan_to_num(v) for k, v in res.trace.items()}
  rng = result_files.range_of(res, 1)
  assert rng["selection"] == "l2" and rng["filled"] == 1 and rng["diversity"] is None
  assert rng["spread"] is None and rng["steps_run"] == STEPS and rng["ended_early"] is False
  _, _, report, _ = _finish(tmp_path, 0, res)
  assert report["spread"]["file"] is None and report["spread"]["why"] == result_files.NO_SPREAD
  assert result_files.trace_doc(res, 1)["steps"] == list(range(1, STEPS + 1))
