"""Nothing outside OUTPUT_DIR is touched (issue 19): hostile input names, symbolic links in
OUTPUT_DIR, only our own files deleted; clean usage errors for an unusable OUTPUT_DIR and a
full disk; pipes and devices in an input folder skipped, never opened; the gallery shows every
input; a second run keeps the first's record; a run whose inputs all failed blocks nothing.
Built-in DCGAN, 8x8 inputs, 2 steps x 2 restarts."""
import contextlib
import errno
import io
import json
import os
import pathlib
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

from pulse_jax.io import gallery
from pulse_jax.io import input_images
from pulse_jax.job import result_files
from pulse_jax.io import run_files
from pulse_jax.job.settings import RunOptions
from pulse_jax.job.errors import UsageError
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLE, cli

FAST = dict(steps=2, restarts=2)


def job(**kw):
  """run_job with the log and warnings collected: (summary, log lines, warnings)."""
  lines, warnings = [], []
  summary = run_job(RunOptions(**{**FAST, **kw}), log=lines.append, warn=warnings.append)
  return summary, lines, warnings


def tree(d: pathlib.Path) -> dict:
  """{relative path: bytes (files) or None (folders)} of everything under `d`."""
  return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None)
          for p in sorted(d.rglob("*"))}


@contextlib.contextmanager
def no_hang(seconds: int = 20):
  """Fails the test (instead of hanging it) when the block runs longer than `seconds`."""
  def stop(*_):
    raise TimeoutError(f"blocked for more than {seconds} s")
  old = signal.signal(signal.SIGALRM, stop)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def run_cli(*args, timeout=120):
  """`python -m pulse_jax.run ARGS` (subprocess.CompletedProcess)."""
  return cli("pulse_jax.run", *args, timeout=timeout)


# ----------------------------------------------------------------------------- input names

@pytest.mark.slow
@pytest.mark.parametrize("name", ["...png", "..png"])
def test_an_input_named_dots_writes_nothing_outside_its_folder(tmp_path, name):
  """'...png' (stem '..') wrote into and deleted in OUTPUT_DIR's parent; '..png' (stem '.')
  into OUTPUT_DIR itself. Now each gets a safe folder of its own, and the summary says so."""
  src, parent = tmp_path / "src", tmp_path / "parent"
  src.mkdir()
  parent.mkdir()
  shutil.copy(SAMPLE, src / name)
  (parent / "hr_vacation.png").write_text("precious")
  (parent / "report.json").write_text("{}")
  before = tree(parent)
  s, lines, _ = job(input=str(src / name), output_dir=str(parent / "out"))
  assert s["exit_code"] == 0 and s["searched"] == 1
  after = tree(parent)
  assert {k: v for k, v in after.items() if not k.startswith("out")} == before
  entry = s["files"][0]
  stem = entry["stem"]
  assert input_images.is_safe_stem(stem) and stem not in (".", "..")
  assert "cannot be a folder name" in entry["stem_note"] and f"{stem}/" in entry["stem_note"]
  out = parent / "out"
  assert sorted(p.name for p in out.iterdir()) == sorted(["index.html", "summary.json", stem])
  assert (out / stem / "hr_0.png").is_file() and (out / stem / "report.json").is_file()
  report = json.loads((out / stem / "report.json").read_text())
  assert report["stem_note"] == entry["stem_note"]
  assert any("cannot be a folder name" in l for l in lines)


def test_stems_are_safe_unique_and_stable():
  hostile = ["/a/...png", "/a/..png", "/b/..png", "/a/a\\b.png", "/a/x\x01y.png",
             "/a/.hidden.png", "/a/summary.json.png", "/a/" + "n" * 250 + ".png", "/a/ok.png",
             "/a/OK.jpg", "/a/trailing..png", "/a/\udcff.png"]
  stems = input_images.unique_stems(hostile)
  assert stems == input_images.unique_stems(hostile)  # the same command: the same folders (resume)
  assert len({s.casefold() for s in stems}) == len(stems)
  root = os.path.realpath("/tmp/out")
  for s in stems:
    assert input_images.is_safe_stem(s), s
    assert os.path.dirname(os.path.realpath(os.path.join(root, s))) == root
    assert len(s.encode()) <= input_images.MAX_STEM_BYTES and "\\" not in s
  assert stems[8] == "ok"  # a usable name is kept as it is


# ----------------------------------------------------------------------------- deleting

def _earlier_report(d: pathlib.Path, **extra) -> None:
  doc = {"status": "within_eps", "latents": "latents.npz",
         "outputs": [{"hr": "hr_0.png", "lr": "lr_0.png"}], **extra}
  (d / "report.json").write_text(json.dumps(doc))
  for n in ("input.png", "hr_0.png", "lr_0.png", "latents.npz", "trace.json"):
    (d / n).write_bytes(b"ours")


def test_clear_outputs_deletes_only_the_files_the_earlier_report_lists(tmp_path):
  d = tmp_path / "a"
  d.mkdir()
  _earlier_report(d, outputs=[{"hr": "hr_0.png", "lr": "lr_0.png"},
                              {"hr": "../victim.txt", "lr": "/etc/hostname"}])
  (tmp_path / "victim.txt").write_text("keep")
  for n in ("hr_vacation.png", "hr_7.png", "lr_notes.png", "input.png.bak"):
    (d / n).write_text("user's")
  (d / ".latents.npz.tmp-123").write_bytes(b"left by a kill")
  (d / ".mine.tmp-1").write_text("user's")
  removed = result_files.clear_outputs(str(tmp_path), "a")
  assert sorted(os.path.basename(p) for p in removed) == sorted(
      [".latents.npz.tmp-123", "hr_0.png", "input.png", "latents.npz", "lr_0.png",
       "report.json", "trace.json"])
  assert sorted(p.name for p in d.iterdir()) == [
      ".mine.tmp-1", "hr_7.png", "hr_vacation.png", "input.png.bak", "lr_notes.png"]
  assert (tmp_path / "victim.txt").read_text() == "keep"
  # without a report.json nothing of the user's is deleted either
  assert result_files.clear_outputs(str(tmp_path), "a") == []


def test_overwrite_keeps_files_it_did_not_write(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  shutil.copy(SAMPLE, src / "a.png")
  out = tmp_path / "out"
  job(input=str(src / "a.png"), output_dir=str(out), duplicates=2)
  (out / "a" / "hr_vacation.png").write_text("precious")
  # duplicates=1 (the preset keeps as many as --restarts allows): hr_1.png is only the earlier run's
  s, _, _ = job(input=str(src / "a.png"), output_dir=str(out), overwrite=True, duplicates=1)
  assert s["exit_code"] == 0
  assert (out / "a" / "hr_vacation.png").read_text() == "precious"
  assert not (out / "a" / "hr_1.png").exists()  # the earlier run's, listed in its report


def test_a_symlinked_input_folder_is_not_followed(tmp_path):
  src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
  for d in (src, out, elsewhere):
    d.mkdir()
  shutil.copy(SAMPLE, src / "a.png")
  shutil.copy(SAMPLE, src / "b.png")
  _earlier_report(elsewhere)
  (elsewhere / "hr_vacation.png").write_text("precious")
  before = tree(elsewhere)
  (out / "a").symlink_to(elsewhere, target_is_directory=True)
  s, _, warnings = job(input=str(src), output_dir=str(out))
  assert tree(elsewhere) == before
  assert s["exit_code"] == 1 and s["failed"] == 1 and s["searched"] == 1
  bad = next(f for f in s["files"] if f["stem"] == "a")
  assert bad["status"] == "failed" and "symbolic link" in bad["message"]
  assert any("symbolic link" in w for w in warnings)
  with pytest.raises(result_files.UnsafeOutputPath, match="symbolic link"):
    result_files.clear_outputs(str(out), "a")
  (out / "b" / "frames").mkdir()
  os.rmdir(out / "b" / "frames")
  (out / "b" / "frames").symlink_to(elsewhere, target_is_directory=True)
  with pytest.raises(result_files.UnsafeOutputPath, match="symbolic link"):
    result_files.input_dir(str(out), "b", sub=run_files.FRAMES)
  with pytest.raises(result_files.UnsafeOutputPath, match="plain name"):
    result_files.input_dir(str(out), "..")


# ----------------------------------------------------------------------------- OUTPUT_DIR errors

def test_output_dir_that_is_a_file_or_under_a_file_is_a_usage_error(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  with pytest.raises(UsageError, match=r"--output_dir=.*file is a file, not a folder"):
    job(input=str(SAMPLE), output_dir=str(f))
  with pytest.raises(UsageError, match=r"--output_dir=.*cannot be made: .*file is a file"):
    job(input=str(SAMPLE), output_dir=str(f / "sub" / "out"))
  assert f.read_text() == "x"


def test_output_dir_under_a_file_exits_2_without_traceback(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  r = run_cli(f"--input={SAMPLE}", f"--output_dir={f / 'out'}", "--steps=2", "--restarts=2")
  assert r.returncode == 2, r.stderr
  assert "pulse_jax.run: error: --output_dir=" in r.stderr and "is a file" in r.stderr
  assert "Traceback" not in r.stderr + r.stdout


def test_unwritable_output_dir_is_a_usage_error(tmp_path, monkeypatch):
  """As root a chmod does not stop writes: the write probe (the lock file) is made to fail
  as on a read-only file system; as another user a real chmod 0o555 folder is tried too."""
  out = tmp_path / "out"
  out.mkdir()
  if os.geteuid() != 0:
    out.chmod(0o555)
    try:
      with pytest.raises(UsageError, match=r"OUTPUT_DIR .*out is not writable"):
        job(input=str(SAMPLE), output_dir=str(out))
    finally:
      out.chmod(0o755)
  real_open = os.open

  def read_only(path, flags, *a, **kw):
    if os.fspath(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR):
      raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
    return real_open(path, flags, *a, **kw)
  monkeypatch.setattr(os, "open", read_only)
  with pytest.raises(UsageError, match=r"OUTPUT_DIR .*out is not writable \(OSError: "
                                       r"Read-only file system.*--output_dir"):
    job(input=str(SAMPLE), output_dir=str(out))
  monkeypatch.undo()
  assert os.listdir(out) == []


def test_disk_full_while_writing_the_summary(tmp_path, monkeypatch):
  out = tmp_path / "out"
  real = result_files.write_json

  def full(path, doc):
    if os.path.basename(path) == run_files.SUMMARY:
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return real(path, doc)
  monkeypatch.setattr(result_files, "write_json", full)
  s, _, warnings = job(input=str(SAMPLE), output_dir=str(out))
  assert s["exit_code"] == 2 and s["searched"] == 1
  assert "summary.json: not written (OSError: No space left on device)" in s["error"]
  assert any("summary.json: not written" in w for w in warnings)
  assert (out / "astronaut_8x8" / "report.json").is_file()  # the results stay
  assert not (out / "summary.json").exists()
  text = io.StringIO()
  result_files.print_summary(s, file=text)
  assert "summary: NOT WRITTEN" in text.getvalue()
  monkeypatch.undo()
  s, _, _ = job(input=str(SAMPLE), output_dir=str(out))  # the same command: written, kept
  assert s["exit_code"] == 0 and s["kept"] == 1 and (out / "summary.json").is_file()


# ----------------------------------------------------------------------------- input folders

def test_pipes_devices_and_bad_links_in_an_input_folder_are_skipped_with_a_reason(tmp_path):
  shutil.copy(SAMPLE, tmp_path / "a.png")
  os.mkfifo(tmp_path / "fifo.png")
  (tmp_path / "broken.png").symlink_to(tmp_path / "missing.png")
  (tmp_path / "dev.png").symlink_to("/dev/null")
  (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
  (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
  (tmp_path / "notes.txt").write_text("hi")
  with no_hang():
    files, skipped = input_images.list_inputs(tmp_path)
  assert [f.name for f in files] == ["a.png", "link.png"]
  reasons = {f.name: input_images.skip_reason(f) for f in skipped}
  assert reasons == {
      "broken.png": "a broken symbolic link",
      "dev.png": "a symbolic link to a device",
      "fifo.png": "a named pipe (FIFO)",
      "loop.png": reasons["loop.png"],
      "notes.txt": "not an image file extension"}
  assert reasons["loop.png"].startswith("a symbolic link that cannot be followed")
  with no_hang():
    s, lines, _ = job(input=str(tmp_path), output_dir=str(tmp_path / "out"))
  assert s["exit_code"] == 0 and s["searched"] == 2 and s["skipped"] == 5
  msgs = {pathlib.Path(f["input"]).name: f["message"] for f in s["files"]
          if f["status"] == "skipped"}
  assert msgs["fifo.png"] == "a named pipe (FIFO)" and msgs["dev.png"].endswith("device")
  assert any(l.endswith("fifo.png (a named pipe (FIFO))") for l in lines)


def test_a_fifo_given_as_input_does_not_hang(tmp_path):
  fifo = tmp_path / "face.png"
  os.mkfifo(fifo)
  with no_hang():
    with pytest.raises(input_images.InputError, match="named pipe"):
      input_images.load_image(fifo, 64)
  r = run_cli(f"--input={fifo}", f"--output_dir={tmp_path / 'out'}", timeout=60)
  assert r.returncode == 2
  assert "pulse_jax.run: error: --input: " in r.stderr and "is a named pipe (FIFO)" in r.stderr
  assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- gallery

def test_a_stem_with_a_backslash_is_shown_in_the_gallery(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  shutil.copy(SAMPLE, src / "a\\b.png")
  out = tmp_path / "out"
  s, _, _ = job(input=str(src), output_dir=str(out))
  stem = s["files"][0]["stem"]
  page = (out / "index.html").read_text()
  assert "No result folder" not in page
  assert f'src="{stem}/hr_0.png"' in page and "a\\b" in page  # original name, as a note
  # an earlier run's folder named with a backslash is found too (a plain name on POSIX)
  if os.sep == "/":
    os.rename(out / stem, out / "x\\y")
    doc = json.loads((out / "summary.json").read_text())
    doc["files"][0]["stem"] = "x\\y"
    (out / "summary.json").write_text(json.dumps(doc))
    page = gallery.render_gallery(str(out))
    assert "No result folder" not in page and 'src="x%5Cy/hr_0.png"' in page


# ----------------------------------------------------------------------------- a second run

def test_a_second_run_keeps_each_inputs_timings_and_says_kept(tmp_path):
  out = tmp_path / "out"
  first, _, _ = job(input=str(SAMPLE), output_dir=str(out))
  second, _, _ = job(input=str(SAMPLE), output_dir=str(out))
  assert second["kept"] == 1 and second["searched"] == 1
  a, b = first["files"][0], second["files"][0]
  assert a["kept"] is False and b["kept"] is True
  assert b["timings"] == a["timings"] and b["timings"]["search_s"] > 0
  on_disk = json.loads((out / "summary.json").read_text())
  assert on_disk["files"][0]["timings"] == a["timings"] and on_disk["kept"] == 1
  page = (out / "index.html").read_text()
  assert "kept from an earlier run" in page
  assert f"searched in {a['timings']['batch_wall_s']:.2f} s" in page


def test_a_run_whose_inputs_all_failed_does_not_block_the_next(tmp_path):
  """The 10x10 input's message advises --fit=resize; the same command with it is accepted."""
  src = tmp_path / "ten.png"
  Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(src)
  out = tmp_path / "out"
  s, _, _ = job(input=str(src), output_dir=str(out))
  assert s["exit_code"] == 1 and "--fit=resize" in s["files"][0]["message"]
  s, _, _ = job(input=str(src), output_dir=str(out), fit="resize")
  assert s["exit_code"] == 0 and s["searched"] == 1
  # a run that did leave results still protects them: another input is refused
  with pytest.raises(UsageError, match=r"summary\.json \(another run"):
    job(input=str(SAMPLE), output_dir=str(out), fit="resize")
