"""The documented contract of `python -m pulse_jax.run` and `python -m pulse_jax.render`: exit
codes, messages that name the flag, bad inputs reported before the search, no INFO noise."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from pulse_jax.job.settings import RunOptions
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLE, cli, module_command

TINY = ["--steps=2", "--restarts=2", "--chunk_size=1"]

# Usage errors (exit status 2) whose message quotes the argument as given.
QUOTED = ["--steps=0", "--restarts=0", "--fit=stretch", "--batch_size=two"]
# (arguments, exit status, what stderr (or stdout for help) must say)
CASES = {
    "help": (["--help"], 0, "--steps:"),
    "h": (["-h"], 0, "--steps:"),
    "helpfull": (["--helpfull"], 0, "--verbosity:"),
    **{arg[2:]: ([arg], 2, arg) for arg in QUOTED},
    "eps=-1": (["--eps=-1"], 2, "--eps: must be a finite number >= 0"),
    "learning_rate=0": (["--learning_rate=0"], 2, "--learning_rate: must be"),
    "loss_str": (["--loss_str=100*L3"], 2, "--loss_str: "),
    "bad_noise_layers": (["--bad_noise_layers=a.b"], 2, "--bad_noise_layers: must be"),
    "duplicates": (["--restarts=2", "--duplicates=3"], 2, "--duplicates: must be in 1..--restarts"),
    "weights": (["--weights=/nonexistent"], 2, "--weights=/nonexistent: neither"),
    "unknown": (["--stpes=3"], 2, "stpes"),
    "input": (["--input=/nonexistent.png"], 2, "--input: no such file"),
    "positional": (["extra"], 2, "unexpected arguments"),
}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
  """Every case at once (subprocesses in parallel): name -> (exit status, stdout, stderr)."""
  out = tmp_path_factory.mktemp("cli")
  procs = {name: subprocess.Popen(module_command("pulse_jax.run", *args,
                                                 f"--output_dir={out / name}"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for name, (args, _, _) in CASES.items()}
  results = {}
  try:
    for name, p in procs.items():
      o, e = p.communicate(timeout=300)
      results[name] = (p.returncode, o, e)
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.kill()
        p.wait()
  return results


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_exit_status_and_message(cli_results, name):
  _, status, words = CASES[name]
  rc, out, err = cli_results[name]
  assert rc == status, (out, err)
  assert words in (out if status == 0 else err), (out, err)
  if status == 2:
    assert err.startswith("pulse_jax.run: error: ") and "Traceback" not in err, err


def test_weights_message_names_the_flag_once(cli_results):
  err = cli_results["weights"][2]
  assert err.count("--weights") == 1, err


@pytest.mark.parametrize("kw, words", [
    (dict(eps=-1.0), "--eps: must be a finite number >= 0"),
    (dict(steps=0, learning_rate=-1.0), "--learning_rate: must be a finite number > 0"),
    (dict(steps=0), "--steps: must be an integer >= 1"),
    (dict(opt_name="lbfgs"), "--opt_name: must be one of"),
    (dict(restarts=0), "--restarts: must be >= 1"),
])
def test_search_config_errors_name_the_flag(tmp_path, kw, words):
  with pytest.raises(UsageError) as e:
    run_job(RunOptions(output_dir=str(tmp_path), **kw), log=lambda s: None)
  assert words in str(e.value)
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_bad_inputs_are_reported_before_the_search_and_no_info_noise(tmp_path):
  d = tmp_path / "in"
  d.mkdir()
  shutil.copy(SAMPLE, d / "good.png")
  (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
  p = cli("pulse_jax.run", f"--input={d}", f"--output_dir={tmp_path / 'out'}",
          f"--checkpoint_dir={tmp_path / 'ck'}", "--checkpoint_every=1", *TINY,
          merge_stderr=True, timeout=300)
  assert p.returncode == 1, p.stdout
  lines = p.stdout.splitlines()
  bad = [i for i, l in enumerate(lines) if l.startswith("error: ") and "corrupt.png" in l]
  first_step = next(i for i, l in enumerate(lines) if " step 1/2 " in l)
  summary = next(i for i, l in enumerate(lines) if l.startswith("pulse_jax.run: 2 input(s)"))
  assert bad and bad[0] < first_step, p.stdout  # reported when found, before the search
  assert any("failed" in l and "corrupt.png" in l for l in lines[summary:]), p.stdout
  assert len(bad) == 1, p.stdout  # and not again as an error line after the search
  # no absl / jax / orbax INFO lines (absl's format: I<mmdd> <time> ...)
  noise = [l for l in lines if re.match(r"I\d{4} ", l) or "INFO" in l
           or "Unable to initialize backend" in l]
  assert not noise, noise


@pytest.mark.slow
def test_render_defaults_to_the_built_in_model(tmp_path):
  from pulse_jax.job import result_files
  lat = np.random.RandomState(0).randn(3, 1, 100).astype(np.float32)
  np.savez(tmp_path / "latents.npz", **result_files.latent_arrays(
      {"latent": lat}, ranking=np.array([2, 0, 1]), kept=np.array([2, 0])))
  latents = f"--latents={tmp_path / 'latents.npz'}"
  p = cli("pulse_jax.render", latents, f"--out={tmp_path / 'kept.png'}", timeout=300)
  assert p.returncode == 0, p.stderr
  assert p.stdout.split() == ["wrote", str(tmp_path / "kept_0.png"), "wrote",
                              str(tmp_path / "kept_1.png")]
  assert not re.search(r"^I\d{4} ", p.stderr, re.M), p.stderr
  p = cli("pulse_jax.render", latents, f"--out={tmp_path / 'all.png'}", "--rows=all",
          timeout=300)
  assert p.returncode == 0 and p.stdout.count("wrote") == 3, p.stderr
  # the kept rows, best first: kept_0 is row 2, kept_1 row 0
  assert (tmp_path / "kept_0.png").read_bytes() == (tmp_path / "all_2.png").read_bytes()
  assert (tmp_path / "kept_1.png").read_bytes() == (tmp_path / "all_0.png").read_bytes()
  for args, status in ((["--help"], 0), ([latents, "--rows=x", "--out=x.png"], 2),
                       ([latents, "--bogus"], 2), ([], 2)):
    p = cli("pulse_jax.render", *args, timeout=300)
    assert p.returncode == status, (args, p.stderr)
