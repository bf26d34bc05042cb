"""Forward models through the job (python -m pulse_jax.run): "inverse crime" per operator and
the error cases. Built-in DCGAN.

Inverse crime: a sample of the DCGAN (its latent scaled to the search sphere's radius
sqrt(100)) passed through the operator D is the input; `run_job(RunOptions(...))` with the
matching flag finds an HR image whose D is within eps of it. A restart's result depends only
on (seed, input pixels, restart index), not on the restart count, so the counts measured with
16 restarts (stated per test, same steps; `python tests/job/test_forward_run.py [CASE...]`) say how
many of the first restarts the test runs reach eps. Measured on a shared 2-core CPU: the file
takes 73-81 s (7 searches of 4 restarts x 100 steps, about 10 s each).
"""
import json
import os
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from pulse_jax.job import options
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from pulse_jax.job.settings import RunOptions
from support.harness import REPO, SAMPLE, builtin_generator, cli

pytestmark = pytest.mark.slow  # end-to-end: not in the quick tier (-m "not slow")

TINY = dict(restarts=1, steps=1, chunk_size=1)  # error cases: the search itself does not matter


def test_forward_options_are_the_forward_table():
  """options.py duplicates pulse_jax.forward.OPTIONS (which imports jax) as its FORWARD group."""
  from pulse_jax import forward
  kinds = {"float": float, "bool": bool, "enum": str, "string": os.PathLike}
  mine = options.GROUPS["forward"]
  assert [o.name for o in mine] == [f.name for f in forward.OPTIONS]
  for o, f in zip(mine, forward.OPTIONS):
    assert (o.type, o.default, o.help, tuple(o.choices)) == (
        kinds[f.kind], f.default, f.help, tuple(f.choices)), o.name
    assert options.get(o.name).group == "forward"
    assert o.scope == "job" and o.api and o.presettable and o.setting
  assert set(options.api_names()) >= set(forward.OPTION_NAMES)


@pytest.fixture(scope="module")
def model():
  return builtin_generator()


def _sample(model, seed: int) -> np.ndarray:
  """[3, 64, 64] float32 in [0, 1]: the DCGAN's image of a latent on the sphere of radius 10."""
  import jax
  import jax.numpy as jnp
  g = model.generator()
  x = jax.random.normal(jax.random.key(seed), (1, 1, g.latent_dim))
  x = x / jnp.linalg.norm(x) * jnp.sqrt(g.latent_dim)
  return np.clip(np.asarray((g.render(model.params, g.latent_to_w(model.params, x), []) + 1) / 2,
                            np.float32)[0], 0, 1)


def _degrade(hr, size: int, **opts) -> np.ndarray:
  import jax.numpy as jnp
  from pulse_jax.forward import ForwardModel
  fw = ForwardModel.from_options(64 // size, **opts)
  return np.asarray(fw.apply(jnp.asarray(hr[None]), fw.arrays()))[0]


def _save(a: np.ndarray, path) -> str:
  """[C, h, w] in [0, 1] -> an 8-bit PNG (mode L for one channel)."""
  u8 = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
  Image.fromarray(u8[0] if u8.shape[0] == 1 else u8.transpose(1, 2, 0)).save(path)
  return str(path)


def _run(tmp_path, src, **kw):
  lines, warnings = [], []
  s = run_job(RunOptions(input=str(src), output_dir=str(tmp_path / "out"), **kw),
              log=lines.append, warn=warnings.append)
  return s, lines, warnings


def _report(tmp_path, stem: str) -> dict:
  return json.loads((tmp_path / "out" / stem / "report.json").read_text())


# The inverse-crime cases: sample seed, input size, flags; noise: std of the Gaussian noise
# added to D(sample); mask: the known pixels (True), the others set to `fill` (a grey value, or
# "random" values), which the search must ignore.
# `python tests/job/test_forward_run.py` measures each case with 16 restarts (the counts below).
HALF64 = np.random.default_rng(64).random((64, 64)) < 0.5
HALF32 = np.random.default_rng(32).random((32, 32)) < 0.5
KERNEL = np.outer(np.hanning(7)[1:-1], [1.0, 2.0, 1.0])  # 5 x 3, not symmetric in shape
CASES = {
    "blur_sigma": dict(seed=2, size=32, flags={"blur_sigma": 1.0}),
    "blur_kernel": dict(seed=2, size=32, flags={"blur_kernel": "kernel.npy"}),
    "area": dict(seed=2, size=16, flags={"downsample": "area"}),
    "colourisation": dict(seed=2, size=64, flags={"grayscale": True}),
    "inpainting": dict(seed=2, size=64, flags={"mask": "mask.png"}, mask=HALF64, fill=0.5),
    "mask_downsampled": dict(seed=2, size=32, flags={"mask": "mask.png"}, mask=HALF32,
                             fill="random"),
    "noise": dict(seed=2, size=8, flags={"noise_sigma": 0.1}, noise=0.1),
}
STEPS = 100  # the DCGAN preset's


def _crime(model, tmp_path, name: str, restarts: int, check: bool = True):
  """The inverse crime of CASES[name]: returns the input's report and output folder; asserts
  (check) within eps, and that lr_0.png is D(hr_0.png) (up to 8-bit rounding)."""
  case = CASES[name]
  size, flags = case["size"], dict(case["flags"])
  if "blur_kernel" in flags:
    np.save(tmp_path / "kernel.npy", KERNEL)
    flags["blur_kernel"] = str(tmp_path / "kernel.npy")
  d_opts = {k: v for k, v in flags.items() if k not in ("mask", "noise_sigma")}
  hr = _sample(model, case["seed"])
  lr = _degrade(hr, size, **d_opts)
  if case.get("noise"):
    lr = np.clip(lr + np.random.default_rng(case["seed"]).normal(0, case["noise"], lr.shape),
                 0, 1)
  if case.get("mask") is not None:
    known, fill = case["mask"], case["fill"]
    lr = np.where(known[None], lr,
                  np.random.default_rng(1).random(lr.shape) if fill == "random" else fill)
    Image.fromarray(known.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    flags["mask"] = str(tmp_path / "mask.png")
  src = _save(lr, tmp_path / "crime.png")
  s, lines, _ = _run(tmp_path, src, restarts=restarts, steps=STEPS, overwrite=True, **flags)
  rep = _report(tmp_path, "crime")
  if not check:
    return rep, None, lines
  assert s["failed"] == 0 and s["exit_code"] == 0, s["files"]
  assert rep["within_eps"] and rep["restarts_within_eps"] >= 1, (rep["best"], rep["eps"])
  assert rep["best"]["l2"] <= rep["eps"]
  out = tmp_path / "out" / "crime"
  hr0 = np.asarray(Image.open(out / "hr_0.png").convert("RGB"), np.float32).transpose(2, 0, 1)
  lr0 = np.asarray(Image.open(out / "lr_0.png"), np.float32)
  lr0 = lr0[None] if lr0.ndim == 2 else lr0.transpose(2, 0, 1)
  np.testing.assert_allclose(lr0 / 255, _degrade(hr0 / 255, size, **d_opts), atol=3 / 255)
  assert rep["forward"]["factor"] == 64 // size
  for k, v in flags.items():
    assert rep["options"][k] == {"value": v, "source": "given"}
  return rep, out, lines


def test_blur_sigma_with_bicubic_downsampling(model, tmp_path):
  """32x32 input, --blur_sigma=1 then bicubic x2. Measured (100 steps): 13/16 restarts within
  eps, 3 of the first 4."""
  rep, _, _ = _crime(model, tmp_path, "blur_sigma", restarts=4)
  assert rep["forward"]["operators"] == [
      "gaussian_blur(sigma=1, radius=3, reflect)", "bicubic(factor=2)"]


def test_blur_kernel_npy(model, tmp_path):
  """32x32 input, a 5x3 .npy kernel (true convolution) then bicubic x2. Measured: 12/16
  within eps, 4 of the first 4."""
  rep, _, _ = _crime(model, tmp_path, "blur_kernel", restarts=4)
  k = rep["forward"]["blur_kernel"]
  assert k["shape"] == [5, 3] and len(k["sha256"]) == 64
  assert rep["settings"]["forward"]["blur_kernel"] == k   # part of what a re-run compares


def test_area_downsampling(model, tmp_path):
  """16x16 input, --downsample=area (4x4 block means). Measured: 15/16, 4 of the first 4."""
  rep, _, _ = _crime(model, tmp_path, "area", restarts=4)
  assert rep["forward"]["operators"] == ["area(factor=4)"]


def test_colourisation_at_factor_1(model, tmp_path):
  """A 64x64 gray input (factor 1: colourisation only), --grayscale. Measured: 11/16, 3 of
  the first 4."""
  rep, out, _ = _crime(model, tmp_path, "colourisation", restarts=4)
  assert rep["forward"]["operators"] == ["grayscale(BT.601)"]
  assert Image.open(out / "input.png").mode == "L" and Image.open(out / "lr_0.png").mode == "L"
  assert Image.open(out / "hr_0.png").mode == "RGB"
  assert "gray input searched as one channel (--grayscale)" in rep["input"]["notes"]
  assert not any("converted to RGB" in n for n in rep["input"]["notes"])


def test_inpainting_at_factor_1(model, tmp_path):
  """64x64 input (factor 1), half of the pixels unknown (grey there). Measured: 12/16, 3 of
  the first 4 (with random values on the unknown pixels, other starts: 7/16)."""
  rep, _, _ = _crime(model, tmp_path, "inpainting", restarts=4)
  assert rep["forward"]["operators"] == []
  assert rep["mask"]["known_pixels"] == int(HALF64.sum()) and rep["mask"]["pixels"] == 64 * 64


def test_mask_with_downsampling(model, tmp_path):
  """32x32 input, half of its pixels unknown (random values there), bicubic x2. Measured:
  10/16, 3 of the first 4."""
  rep, _, _ = _crime(model, tmp_path, "mask_downsampled", restarts=4)
  assert rep["mask"]["known_pixels"] == int(HALF32.sum())


def test_noisy_input_within_noise_eps(model, tmp_path):
  """8x8 input with Gaussian noise of std 0.1: recovered within max(eps, 0.1^2) = 0.01, the
  expected L2 of the noise alone (--eps 2e-3 cannot be reached). Measured: 14/16, 3 of the
  first 4. (At 16x16: std 0.05, 0/16 for two samples, best L2 2.75e-3 > 2.5e-3; std 0.1,
  10/16 (docs/forward.md). max(eps, S^2) leaves no room for an error of the fit, so the search
  must fit part of the noise: easiest with few values, 192 at 8x8 against 100 latent dims.)"""
  rep, _, lines = _crime(model, tmp_path, "noise", restarts=4)
  assert rep["eps"] == pytest.approx(0.01) and rep["settings"]["eps"] == pytest.approx(0.01)
  assert rep["options"]["eps"]["value"] == 2e-3
  assert rep["forward"]["eps_rule"] == "max(eps, noise_sigma^2)"
  assert "max(--eps=0.002, noise_sigma^2=0.01) = 0.01" in rep["eps_note"]
  assert any("note: --noise_sigma=0.1: the success test uses eps" in l for l in lines)


# ----------------------------------------------------------------------------- errors

def _write(a: np.ndarray, path) -> str:
  Image.fromarray(a.astype(np.uint8)).save(path)
  return str(path)


def test_bad_masks_fail_only_their_input(model, tmp_path):
  """A mask of the wrong size, one without a known pixel and a missing one each fail their
  input only (exit status 1); the input with a good mask is searched with it. The mask is
  part of the settings a re-run compares."""
  faces, masks = tmp_path / "faces", tmp_path / "masks"
  faces.mkdir(), masks.mkdir()
  for i, stem in enumerate("abcd"):
    _write(np.random.default_rng(i).integers(0, 256, (8, 8, 3)), faces / f"{stem}.png")
  good = np.zeros((8, 8)); good[:, :4] = 255
  _write(good, masks / "a.png")
  _write(np.full((16, 16), 255), masks / "b.png")   # the wrong size
  np.save(masks / "c.npy", np.zeros((8, 8)))        # no known pixel; d: none
  s, lines, warnings = _run(tmp_path, faces, mask=str(masks), **TINY)
  files = {f["stem"]: f for f in s["files"]}
  assert s["exit_code"] == 1 and s["searched"] == 1 and s["failed"] == 3
  assert files["a"]["status"] != "failed"
  assert "b.png: is 16x16, but its input is 8x8" in files["b"]["message"]
  assert files["b"]["message"].startswith(str(faces / "b.png"))
  assert "c.npy: no known pixel" in files["c"]["message"]
  assert "no mask for input" in files["d"]["message"] and "d.png" in files["d"]["message"]
  assert sum(w.startswith("error: ") for w in warnings) == 3
  rep = _report(tmp_path, "a")
  assert rep["mask"]["known_pixels"] == 32 and rep["mask"]["file"] == str(masks / "a.png")
  assert any("32 of 64 pixels known" in n for n in rep["input"]["notes"])
  # the same command again keeps a; another mask for it is another run
  s2, _, _ = _run(tmp_path, faces, mask=str(masks), **TINY)
  assert s2["kept"] == 1
  good[:, :2] = 0
  _write(good, masks / "a.png")
  with pytest.raises(UsageError, match=r"mask\.sha256"):
    _run(tmp_path, faces, mask=str(masks), **TINY)


def test_bad_kernel_is_a_usage_error(model, tmp_path):
  """A kernel file summing to 0 (exit status 2, the command) or larger than the generator's
  image (UsageError, in process) is an error of the whole run naming --blur_kernel."""
  np.save(tmp_path / "zero.npy", np.array([[1.0, -1.0]]))
  r = cli("pulse_jax.run", f"--input={tmp_path}/none.png", f"--output_dir={tmp_path / 'out'}",
          f"--blur_kernel={tmp_path}/zero.npy", cwd=REPO, timeout=300)
  assert r.returncode == 2, r.stderr
  assert f"--blur_kernel: {tmp_path}/zero.npy: its taps sum to 0" in r.stderr
  np.save(tmp_path / "big.npy", np.ones((65, 3)))
  src = SAMPLE
  with pytest.raises(UsageError, match=r"^--blur_kernel=.*big\.npy: the kernel is 65x3, larger "
                                       r"than the 64x64 HR image"):
    _run(tmp_path, src, blur_kernel=str(tmp_path / "big.npy"), **TINY)


def test_colour_input_with_grayscale_and_resume_settings(model, tmp_path):
  """A colour input with --grayscale is converted to luminance, with a note; input.png and
  lr_0.png have one channel. Another forward model is not "the same settings" on a re-run."""
  src = SAMPLE
  s, lines, _ = _run(tmp_path, src, grayscale=True, **TINY)
  assert s["exit_code"] == 0
  note = "colour input converted to luminance (--grayscale; ITU-R BT.601"
  assert any(note in l for l in lines)
  rep = _report(tmp_path, "astronaut_8x8")
  assert any(note in n for n in rep["input"]["notes"])
  out = tmp_path / "out" / "astronaut_8x8"
  assert Image.open(out / "input.png").mode == "L" and Image.open(out / "lr_0.png").mode == "L"
  rgb = np.asarray(Image.open(src).convert("RGB"), np.float64) / 255
  np.testing.assert_allclose(np.asarray(Image.open(out / "input.png"), np.float64) / 255,
                             rgb @ [0.299, 0.587, 0.114], atol=0.5 / 255 + 1e-9)
  assert rep["forward"]["grayscale"] is True and rep["settings"]["forward"]["grayscale"] is True
  assert _run(tmp_path, src, grayscale=True, **TINY)[0]["kept"] == 1
  with pytest.raises(UsageError, match=r"settings\.forward\.grayscale \(earlier run: True, "
                                       r"now: False\)"):
    _run(tmp_path, src, **TINY)


def test_api_keywords(model, tmp_path):
  """The forward options are keywords of pulse_jax.upsample; lr_images are D(HR)."""
  import pulse_jax
  src = SAMPLE
  r = pulse_jax.upsample(str(src), model, grayscale=True, blur_sigma=0.5, downsample="area",
                         quiet=True, warn=lambda s: None, **TINY)
  assert r.lr_images[0].mode == "L" and r.lr_images[0].size == (8, 8)
  assert r.report["forward"]["operators"] == [
      "gaussian_blur(sigma=0.5, radius=2, reflect)", "area(factor=8)", "grayscale(BT.601)"]
  with pytest.raises(pulse_jax.UsageError, match=r"^noise_sigma: must be a finite number in "
                                                 r"\[0, 1\] \(got 2\.0\)$"):
    pulse_jax.upsample(str(src), model, noise_sigma=2.0, **TINY)


if __name__ == "__main__":  # the counts of the docstrings: each case with 16 restarts
  import tempfile
  import pulse_jax
  g = pulse_jax.load_generator()
  for case in sys.argv[1:] or CASES:
    with tempfile.TemporaryDirectory() as d:
      rep, _, _ = _crime(g, pathlib.Path(d), case, restarts=16, check=False)
    within = [r["restart"] for r in rep["restarts"] if r["within_eps"]]
    print(f"{case}: {len(within)}/16 restarts within eps {rep['eps']:g} ({STEPS} steps); "
          f"within: {within}; best L2 {rep['best']['l2']:.3e}", flush=True)
