"""The gallery page (pulse_jax.gallery) of a real tiny run: its HTML, and in headless Chromium."""
import html
import html.parser
import json
import os
import pathlib
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from pulse_jax.io import gallery
from pulse_jax.io import run_files
from pulse_jax.io import responsible_use
from pulse_jax.job.settings import RunOptions
from pulse_jax.job.pipeline import run_job
from support.harness import SAMPLES, cli, require_builtin_model

HOSTILE = "<svg onload=alert(1)>\"x&y'#?%"   # input file names (stems) with HTML and URL specials
BROKEN = "<img src=x onerror=alert(2)>"
# stop_within=0: every step runs (the page's curves and "6 of 6 steps run"; the preset stops early,
# which test_spread_map_diversity_and_steps_run shows)
FAST = dict(steps=6, restarts=3, duplicates=2, chunk_size=3, eps=0.15, stop_within=0)
CHROMIUM_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome",
                  "google-chrome-stable", "headless_shell")


class _Tags(html.parser.HTMLParser):
  """Every start tag as (tag, {attr: value}), and the text of the page."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.tags, self.text = [], []

  def handle_starttag(self, tag, attrs):
    self.tags.append((tag, dict(attrs)))

  def handle_data(self, data):
    self.text.append(data)


def _parse(text):
  p = _Tags()
  p.feed(text)
  return p.tags, "".join(p.text)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A real run: the 8x8 sample under a hostile name (within eps), 16x16 binary noise (not
  within eps), a corrupt file (failed). The run writes each input's trace.json; the noise
  input's is removed to show the page without curves."""
  require_builtin_model()
  src = tmp_path_factory.mktemp("inputs")
  shutil.copy(SAMPLES / "astronaut_8x8.png", src / f"{HOSTILE}.png")
  noise = np.random.default_rng(0).integers(0, 2, (16, 16, 3)).astype(np.uint8) * 255
  Image.fromarray(noise).save(src / "noise16.png")
  (src / f"{BROKEN}.png").write_bytes(b"not a png")
  out = tmp_path_factory.mktemp("run")
  summary = run_job(RunOptions(input=str(src), output_dir=str(out), **FAST),
                    log=lambda s: None, warn=lambda s: None)
  assert (out / "index.html").is_file()  # the run writes its gallery
  trace = json.loads((out / HOSTILE / run_files.TRACE).read_text())
  assert trace["steps"] == list(range(1, FAST["steps"] + 1))
  assert sorted(trace["restarts"], key=int) == [str(r) for r in range(FAST["restarts"])]
  (out / "noise16" / run_files.TRACE).unlink()
  path = gallery.write_gallery(str(out))
  return out, summary, pathlib.Path(path)


@pytest.mark.slow
def test_the_run_is_as_the_gallery_test_needs(run_dir):
  _, s, _ = run_dir
  st = {f["stem"]: f["status"] for f in s["files"]}
  assert st == {HOSTILE: "within_eps", "noise16": "not_within_eps", BROKEN: "failed"}


def test_page_structure_candidates_badges_and_notice(run_dir):
  out, s, index = run_dir
  assert index == out / "index.html"
  text = index.read_text(encoding="utf-8")
  tags, page_text = _parse(text)
  assert responsible_use.NOTICE in page_text
  assert any(t == "aside" and "responsible-use" in a.get("class", "") for t, a in tags)
  # run summary header
  for words in ("2 searched, 1 failed", "1 within eps, 1 not within eps", "eps0.15",
                "dcgan-digiface", "3 restarts x 6 steps", "compile", "per image"):
    assert words in page_text.replace("\n", ""), words
  sections = {a["data-stem"]: a for t, a in tags if t == "section" and "data-stem" in a}
  assert set(sections) == {HOSTILE, "noise16"}
  for stem in (HOSTILE, "noise16"):
    rep = json.loads((out / stem / "report.json").read_text())
    # this section's tags
    start = [i for i, (t, a) in enumerate(tags) if a.get("data-stem") == stem][0]
    end = next((i for i in range(start + 1, len(tags)) if tags[i][0] == "section"), len(tags))
    sec = tags[start:end]
    cands = [a for t, a in sec if t == "figure" and a.get("class") == "candidate"]
    assert [(int(a["data-rank"]), int(a["data-restart"])) for a in cands] == [
        (o["rank"], o["restart"]) for o in rep["outputs"]]
    assert len(cands) == FAST["duplicates"]
    for a, o in zip(cands, rep["outputs"]):
      assert a["data-within-eps"] == ("true" if o["within_eps"] else "false")
      assert f"{o['l2']:.3e}" in page_text
    srcs = [urllib.parse.unquote(a["src"]) for t, a in sec if t == "img"]
    for o in rep["outputs"]:
      assert f"{stem}/{o['hr']}" in srcs and f"{stem}/{o['lr']}" in srcs
    assert srcs.count(f"{stem}/input.png") == 1 + len(cands)   # enlarged + beside each LR
    assert any(t == "img" and a.get("class") == "px" and a["src"].endswith("input.png")
               for t, a in sec)
    badges = [a["class"] for t, a in sec if t == "span" and "badge" in a.get("class", "")]
    want = "badge within" if rep["within_eps"] else "badge not-within"
    assert badges.count(want) == 1 + len(cands)   # the section's and each candidate's
    # the spread map of its within-eps restarts beside the candidates, or why there is none
    spread_figs = [a for t, a in sec if t == "figure" and "spread" in a.get("class", "")]
    assert len(spread_figs) == 1 and spread_figs[0]["data-restarts"] == str(
        rep["spread"]["restarts"])
    if rep["spread"]["file"]:
      assert f"{stem}/spread.png" in srcs and rep["spread"]["restarts"] >= 2
    else:
      assert f"{stem}/spread.png" not in srcs and rep["spread"]["restarts"] < 2
  no_map = [json.loads((out / st / "report.json").read_text())["spread"]["file"] is None
            for st in (HOSTILE, "noise16")]
  assert no_map == [False, True]   # the sample within eps has a map, the noise none
  assert page_text.count(gallery.NO_SPREAD) == 1
  # the diversity of the candidates and the steps run
  assert page_text.count(f"of {FAST['steps']} steps run") == 2
  assert page_text.count("diversity") >= 2
  # advice when eps was not reached; none for the input within eps
  rep = json.loads((out / "noise16" / "report.json").read_text())
  assert rep["advice"] and rep["advice"] in page_text
  assert page_text.count("Not within eps.") == 1
  # loss curves from trace.json; a note where there is none
  hostile_part = text[text.index(f'data-stem="{html.escape(HOSTILE)}"'):text.index(
      'data-stem="noise16"')]
  assert hostile_part.count('<svg class="curve"') == 2 and 'class="no-trace"' not in hostile_part
  noise_part = text[text.index('data-stem="noise16"'):]
  assert '<svg class="curve"' not in noise_part and 'class="no-trace"' in noise_part
  # the failed input with its error
  failed = [f for f in s["files"] if f["status"] == "failed"][0]
  assert failed["message"] in page_text and failed["input"] in page_text
  assert any(t == "li" and a.get("class") == "failed" for t, a in tags)


def test_user_strings_are_escaped_and_nothing_is_loaded_from_the_network(run_dir):
  out, _, index = run_dir
  text = index.read_text(encoding="utf-8")
  assert HOSTILE not in text and BROKEN not in text and "alert(" not in text.replace(
      "alert(1)&gt;", "").replace("alert(2)&gt;", "")
  assert html.escape(HOSTILE) in text and html.escape(BROKEN) in text
  tags, _ = _parse(text)
  assert not any(k.startswith("on") for _, a in tags for k in a)
  assert not any(t in ("script", "iframe", "object", "embed", "link", "base") for t, _ in tags)
  urls = [a[k] for t, a in tags for k in ("src", "href") if k in a]
  assert urls
  for u in urls:
    parsed = urllib.parse.urlsplit(u)
    assert parsed.scheme in ("", "data") and not u.startswith("//") and not parsed.netloc, u
    if not parsed.scheme and not u.startswith("#"):   # a relative link to an existing file
      assert (out / urllib.parse.unquote(u)).is_file(), u
  assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
  assert "https://" not in text and "url(" not in text and "@import" not in text
  assert "Content-Security-Policy" in text


def test_cli_rebuilds_and_refuses_a_non_run(run_dir, tmp_path):
  out, _, index = run_dir
  index.unlink()
  r = cli("pulse_jax.gallery", out, timeout=60)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == str(index) and index.is_file()
  r = cli("pulse_jax.gallery", tmp_path / "nope", timeout=60)
  assert r.returncode == 2 and "no such directory" in r.stderr


def test_without_summary_or_input_png_it_falls_back(run_dir, tmp_path):
  out, _, _ = run_dir
  d = tmp_path / "partial"
  shutil.copytree(out / "noise16", d / "noise16")
  (d / "noise16" / "input.png").unlink()
  text = gallery.render_gallery(str(d))
  assert "summary.json is absent" in text and 'data-stem="noise16"' in text
  assert 'src="data:image/png;base64,' in text and "input.png absent" in text


def _chromium():
  env = os.environ.get("PULSE_JAX_CHROMIUM")
  if env:
    return env
  for name in CHROMIUM_NAMES:
    path = shutil.which(name)
    if path:
      return path
  return None


def _browser(binary, tmp_path, *args):
  cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--mute-audio", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", *args]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


# Inserted right after the page's CSP meta tag (a copy of the page, for the test only): records
# each blocked load (a CSP violation: anything not a local file or data: URI) from the start, with
# a canary request that must be the only one, and marks each image's load state on window load.
PROBE = """<script>
var blocked = [];
document.addEventListener('securitypolicyviolation', function (e) {
  blocked.push(e.blockedURI);
  document.documentElement.setAttribute('data-blocked', JSON.stringify(blocked));
});
new Image().src = 'http://127.0.0.1:9/canary.png';
window.addEventListener('load', function () {
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    im.setAttribute('data-loaded', im.complete && im.naturalWidth > 0 ? 'yes' : 'no');
  }
  document.documentElement.setAttribute('data-probe', 'done');
});
</script>"""


def test_renders_in_headless_chromium(run_dir, tmp_path):
  binary = _chromium()
  if binary is None:
    pytest.skip("no Chromium binary found (tried $PULSE_JAX_CHROMIUM, "
                f"{', '.join(CHROMIUM_NAMES)}); install it with "
                "`apt-get install chromium-headless-shell`")
  out, _, index = run_dir
  # 1. a screenshot of the page as it is: not blank
  shot = tmp_path / "gallery.png"
  r = _browser(binary, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000",
               index.as_uri())
  assert shot.is_file(), r.stderr[-2000:]
  a = np.asarray(Image.open(shot).convert("RGB"), np.float32)
  assert a.shape == (2000, 1200, 3)
  assert a.std() > 20, "screenshot looks blank"
  assert len(np.unique(a.reshape(-1, 3)[::7], axis=0)) > 500   # photos, not just text
  # 2. every image loads, and only local files are requested: the same page, plus a probe
  #    script (the page has none; the probe's copy lets inline scripts run)
  text = index.read_text(encoding="utf-8")
  n_img = text.count("<img ")
  probe = out / "_probe.html"
  csp = html.escape("default-src 'none';")
  assert text.count(csp) == 1
  meta_end = text.index(">", text.index("Content-Security-Policy")) + 1
  probe.write_text(text[:meta_end].replace(csp, csp + html.escape(" script-src 'unsafe-inline';"))
                   + PROBE + text[meta_end:], encoding="utf-8")
  try:
    r = _browser(binary, tmp_path, "--dump-dom", probe.as_uri())
  finally:
    probe.unlink()
  assert r.returncode == 0, r.stderr[-2000:]
  tags, _ = _parse(r.stdout)
  root = [a for t, a in tags if t == "html"][0]
  assert root.get("data-probe") == "done", r.stdout[-2000:]
  imgs = [a for t, a in tags if t == "img"]
  assert len(imgs) == n_img > 0
  assert [urllib.parse.unquote(a["src"]) for a in imgs if a.get("data-loaded") != "yes"] == []
  assert json.loads(root.get("data-blocked", "[]")) == ["http://127.0.0.1:9/canary.png"]


def test_odd_or_hostile_reports_do_not_break_the_page(tmp_path):
  """Hand-written files: links outside the folder, wrong types, a corrupt trace, missing PNGs."""
  d = tmp_path / "odd"
  (d / "x").mkdir(parents=True)
  Image.new("RGB", (4, 4), (200, 10, 10)).save(d / "x" / "hr_0.png")
  (d / "x" / "report.json").write_text(json.dumps({
      "within_eps": "yes", "eps": "tiny", "restarts": {"0": 1}, "best": [1],
      "input": {"path": "/nonexistent/in.png", "notes": ["<script>n</script>"]},
      "advice": "<script>advice</script>",
      "outputs": [{"rank": 0, "restart": 0, "hr": "hr_0.png", "lr": "../../../etc/passwd",
                   "l2": "NaN"}, {"rank": "1", "restart": None, "hr": "/etc/passwd"}, 7]}))
  (d / "x" / "trace.json").write_text("{not json")
  (d / "summary.json").write_text(json.dumps({
      "files": [{"stem": "x", "status": "within_eps"}, {"stem": "../..", "status": "within_eps"},
                {"input": "<u>f</u>", "status": "failed", "message": None}, "junk"],
      "weights": "w", "eps": None}))
  text = gallery.render_gallery(str(d))
  tags, page_text = _parse(text)
  assert "<script>" not in text and "<u>" not in text and "&lt;script&gt;advice" in text
  assert "trace.json unreadable" in page_text and "No result folder" in page_text
  srcs = [a["src"] for t, a in tags if t == "img"]
  assert srcs == ["x/hr_0.png"]       # only the existing, in-folder file
  assert [a["data-rank"] for t, a in tags if a.get("class") == "candidate"] == ["0", "1"]


def _range_report(spread: dict, **more) -> dict:
  return {"within_eps": True, "eps": 0.1, "restarts": [], "best": {"l2": 0.05, "restart": 0},
          "outputs": [{"rank": 0, "restart": 0, "hr": "hr_0.png", "lr": "lr_0.png",
                       "l2": 0.05, "within_eps": True},
                      {"rank": 1, "restart": 2, "hr": "hr_1.png", "lr": "lr_1.png",
                       "l2": 0.2, "within_eps": False}],
          "candidates": {"selection": "diverse", "filled": 1, "diversity": 0.1234,
                         "kept": []},
          "stopping": {"steps_run": 40, "steps": 100, "ended_early": True},
          "spread": spread, **more}


def test_spread_map_diversity_and_steps_run(tmp_path):
  """Hand-written reports: a map with its one line, no map (fewer than 2 within eps), a
  missing map file, and an older report without the blocks."""
  d = tmp_path / "run"
  reports = {
      "mapped": {"file": "spread.png", "restarts": 5, "mean": 0.0712, "max": 0.31,
                 "vmax": 0.25, "why": None},
      "nomap": {"file": None, "restarts": 1, "mean": None, "max": None, "vmax": 0.25,
                "why": "fewer than 2 restarts within eps"},
      "lost": {"file": "spread.png", "restarts": 3, "vmax": 0.25},
  }
  for stem, spread in [*reports.items(), ("old", None)]:
    (d / stem).mkdir(parents=True)
    for name in ("hr_0.png", "hr_1.png", "lr_0.png", "lr_1.png", "input.png"):
      Image.new("RGB", (4, 4), (90, 90, 90)).save(d / stem / name)
    rep = _range_report(spread) if spread else {
        k: v for k, v in _range_report({}).items()
        if k not in ("spread", "candidates", "stopping")}
    (d / stem / "report.json").write_text(json.dumps(rep))
  Image.new("RGB", (8, 8), (250, 200, 60)).save(d / "mapped" / "spread.png")
  text = gallery.render_gallery(str(d))
  tags, page_text = _parse(text)

  def section(stem):
    start = text.index(f'data-stem="{stem}"')
    end = text.find("<section", start)
    return text[start:end if end >= 0 else len(text)]

  mapped = section("mapped")
  sec_tags, sec_text = _parse(mapped)
  figs = [a for t, a in sec_tags if t == "figure" and "spread" in a.get("class", "")]
  assert figs == [{"class": "spread", "data-restarts": "5"}]
  assert [a["src"] for t, a in sec_tags if t == "img"][-1] == "mapped/spread.png"
  line = gallery.SPREAD_LINE.format(vmax=0.25)
  assert line in sec_text and "not a confidence about the person" in line
  assert "bright = not determined by the input" in line and "0.25" in line
  assert "0.0712" in sec_text and "5 within-eps restarts" in sec_text
  assert "diversity 0.123" in sec_text and "40 of 100 steps run (ended early)" in sec_text
  assert "1 not within eps" in sec_text and "diverse selection" in sec_text
  # candidates first, then the map, in one row
  assert mapped.index('class="candidate"') < mapped.index('class="spread"')
  nomap_tags, nomap_text = _parse(section("nomap"))
  assert gallery.NO_SPREAD in nomap_text and gallery.SPREAD_LINE[:20] not in nomap_text
  assert not any(t == "img" and "spread" in a.get("src", "") for t, a in nomap_tags)
  assert "spread map spread.png missing" in _parse(section("lost"))[1]
  old = section("old")
  assert 'class="spread' not in old and 'class="range"' not in old
  assert page_text.count("steps run") == 3
