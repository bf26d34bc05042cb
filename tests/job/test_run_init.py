"""--init continues every restart of a run from its latents.npz (row r: restart r's best
iterate); fewer rows than restarts: the rest start from their usual random draws. Built-in
DCGAN on the 8x8 sample."""
import json
import pathlib

import numpy as np
import pytest

from pulse_jax.job.settings import RunOptions
from pulse_jax.job.errors import UsageError
from pulse_jax.job.init_values import init_rule
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLE

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

KW = dict(input=str(SAMPLE), restarts=2, eps=0.0, chunk_size=20)


def _job(**kw):
  lines = []
  summary = run_job(RunOptions(**{**KW, **kw}), log=lines.append, warn=lambda s: None)
  return summary, lines


def _report(out) -> dict:
  return json.loads((pathlib.Path(out) / "astronaut_8x8" / "report.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """100 steps, 2 restarts, the reference's learning rate (not the DCGAN preset's)."""
  out = tmp_path_factory.mktemp("base")
  _job(output_dir=str(out), steps=100, learning_rate=0.4)
  return out


def test_init_continues_every_restart_and_lowers_the_best_l2(base, tmp_path):
  before = _report(base)
  with np.load(base / "astronaut_8x8" / "latents.npz") as z:
    # the preset keeps 4, capped at --restarts (2): both restarts, the best first
    assert z["latent"].shape == (2, 1, 100) and z["kept"].tolist()[0] == before["best"]["restart"]
    assert sorted(z["kept"].tolist()) == [0, 1]
  # 20 more steps (a gentler peak learning rate: the optimiser state starts afresh)
  s, lines = _job(output_dir=str(tmp_path), steps=20, learning_rate=0.05, init=str(base))
  assert any("init (" in l and "2 rows for 2 restarts: restart r continues row r" in l
             for l in lines), lines
  after = _report(tmp_path)
  l2_before = [r["l2"] for r in before["restarts"]]
  l2_after = [r["l2"] for r in after["restarts"]]
  # every restart continues its own row: none gets worse (step 1 re-evaluates the start), the
  # restarts stay distinct, and the best L2 goes down
  assert all(a <= b * (1 + 1e-5) for a, b in zip(l2_after, l2_before)), (l2_before, l2_after)
  assert len(set(l2_after)) == 2
  assert after["best"]["l2"] < 0.97 * before["best"]["l2"], (before["best"], after["best"])


def test_fewer_rows_than_restarts(base, tmp_path):
  """Restarts past the rows start from the random draws of a run without --init."""
  init = tmp_path / "one_row.npz"
  with np.load(base / "astronaut_8x8" / "latents.npz") as z:
    np.savez(init, latent=z["latent"][:1])
  s, lines = _job(output_dir=str(tmp_path / "a"), steps=3, restarts=3, init=str(init))
  msg = [l for l in lines if l.startswith("init (")]
  assert msg == [f"init ({init}): 1 row for 3 restarts: restart 0 continues row 0; restarts "
                 "1..2 start from fresh random draws (as without --init)"], lines
  fresh, _ = _job(output_dir=str(tmp_path / "b"), steps=3, restarts=3)
  a, b = _report(tmp_path / "a")["restarts"], _report(tmp_path / "b")["restarts"]
  assert [r["l2"] for r in a[1:]] == [r["l2"] for r in b[1:]]
  assert a[0]["l2"] != b[0]["l2"]


def test_init_rule_sentences():
  assert init_rule(16, 16) == "16 rows for 16 restarts: restart r continues row r"
  assert init_rule(3, 16) == ("3 rows for 16 restarts: restarts 0..2 continue rows 0..2; "
                              "restarts 3..15 start from fresh random draws (as without --init)")
  assert init_rule(16, 4) == ("16 rows for 4 restarts: restarts 0..3 continue rows 0..3; "
                              "rows 4..15 not used")
  assert init_rule(2, 1) == "2 rows for 1 restart: restart 0 continues row 0; row 1 not used"


def test_bad_init_files(base, tmp_path):
  bad = tmp_path / "bad.npz"
  np.savez(bad, latent=np.zeros((2, 1, 100), np.float32), noise_0=np.zeros((2, 1, 4, 4)))
  with pytest.raises(UsageError, match=r"--init: .*unexpected array 'noise_0'"):
    _job(output_dir=str(tmp_path / "a"), steps=1, init=str(bad))
  np.savez(bad, latent=np.zeros((2, 1, 99), np.float32))
  with pytest.raises(UsageError, match=r"'latent' has shape \(2, 1, 99\)"):
    _job(output_dir=str(tmp_path / "a"), steps=1, init=str(bad))
