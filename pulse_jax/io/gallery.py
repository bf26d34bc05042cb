"""OUTPUT_DIR/index.html: a self-contained, offline page of a `pulse_jax.run` run.

  python -m pulse_jax.gallery OUTPUT_DIR      (re)builds OUTPUT_DIR/index.html (`pulse_jax.gallery`)

`write_gallery(output_dir) -> path` reads only what a run leaves on disk (pulse_jax.job.result_files):
OUTPUT_DIR/summary.json (when absent, e.g. an interrupted run, the <stem>/report.json folders
found), and per input <stem>/report.json, input.png, hr_<k>.png, lr_<k>.png, progress.gif and
the optional loss trace <stem>/trace.json (format below). The page loads nothing over the
network: images are relative links to the run's own files (or, for an input whose input.png is
missing, an inline data: URI of the original file named in report.json), the loss curves are
inline SVG, the style sheet is inline, there is no script, and a Content-Security-Policy meta
tag forbids any other load. Every string read from the run's files is HTML-escaped (file names
are user data) and every link is a percent-encoded relative path inside OUTPUT_DIR.

Shown: the responsible-use notice (pulse_jax.io.responsible_use.NOTICE); the run summary (inputs,
within eps counts, eps, model, restarts, steps, timings); per input the input enlarged
(nearest neighbour), the kept candidates ranked with their L2 and a within-eps badge, each
candidate's LR beside the input, the spread map of its within-eps restarts (<stem>/spread.png,
named by report.json "spread"; `SPREAD_LINE` says how to read it, or "no map" when fewer than
2 restarts were within eps), the candidates' diversity and the steps run (report.json
"candidates", "stopping"), with --ilo one line on what the search past the generator's range
did (report.json "ilo": the cut points, how far each kept candidate's activation moved, and
`ILO_LINE`), the loss curves, every restart's losses, and the advice when eps was not reached;
the inputs that failed (or were skipped) with their message.

trace.json (per input, optional; without it the page says no curves were recorded):

  {"format": "pulse_jax.trace/1",                 # optional
   "steps": [1, 2, ..., S],                        # step numbers, 1-based like best_step
   "restarts": {"0": {"L2_raw": [S numbers], "TOTAL": [S numbers], ...}, "1": {...}, ...}}

  restarts maps the restart index (as a string, as in report.json "restarts") to series of S
  values: the losses of the iterate at each step before its update (runtime.loop.SearchResult
  .trace [steps, B, R] for that image, cut at the steps it ran), null where not finite. "L2_raw" (unclamped L2) is drawn with
  the eps line, "TOTAL" (the searched loss) below it; other series are ignored. Lists shorter
  than steps are drawn as far as they go.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import urllib.parse

from pulse_jax.io import images as image_files
from pulse_jax.io import responsible_use
from pulse_jax.io.run_files import GIF, INDEX, INPUT_PNG, NOT_WITHIN_EPS, REPORT, SUMMARY, TRACE

HR_PX = 160                # displayed side of HR images and of the input at the top of a section
SMALL_PX = 78              # displayed side of the input / LR pair under each candidate
MAX_INLINE_SIDE = 256      # an inlined original input larger than this is shrunk first
MAX_CURVE_POINTS = 500     # points per drawn curve (longer traces are subsampled)
SEARCHED = ("within_eps", "not_within_eps")
# Entries listed under "Failed, skipped and interrupted inputs" (interrupted: a stopped run, SIGTERM/SIGINT).
NOT_SEARCHED = ("failed", "skipped", "interrupted")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
OTHER_COLOUR = "#c8c8c8"
# How to read a spread map: its one line on the page ({vmax}: the top of its fixed scale).
SPREAD_LINE = ("Per-pixel standard deviation, dark 0, bright {vmax:g} and above: bright = not "
               "determined by the input, the search imagined it; the spread of this search "
               "with this generator, not a confidence about the person.")
NO_SPREAD = "no map: fewer than 2 within eps"
# What the images of an ILO search (--ilo, report.json "ilo") are: the one sentence of its line
# on the page and of the report's block.
ILO_LINE = ("The kept images are outside the generator's exact range, within the l1 ball "
            "around it: still faces the generator imagined, not a recovery of the person.")

CSP = ("default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
 max-width:1160px;padding:12px 20px 40px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:0 0 6px}h3{font-size:15px;margin:14px 0 6px}
.responsible-use{border:2px solid #b26b00;background:#fff6e5;border-radius:6px;padding:8px 12px;
 margin:10px 0}
.responsible-use strong{display:block}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ddd;padding:2px 8px;
 text-align:left;vertical-align:top}th{background:#f4f4f4;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
.summary td:first-child{font-weight:600;white-space:nowrap}
section.input,section.failed-inputs{border-top:1px solid #ccc;padding:14px 0;margin-top:10px}
.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}figure.candidate{border:1px solid #ddd;border-top:4px solid var(--c,#999);
 border-radius:4px;padding:6px;width:164px}
figure.target{width:164px}
figcaption{font-size:12px;margin-top:4px}
img{display:block;background:#eee}img.px{image-rendering:pixelated;image-rendering:crisp-edges}
.pair{display:flex;gap:4px;margin-top:4px}.pair figure{width:78px}.pair figcaption{margin-top:1px}
.badge{display:inline-block;border-radius:9px;padding:0 7px;font-size:12px;font-weight:600;
 white-space:nowrap}
.badge.within{background:#d7f5dc;color:#13612a;border:1px solid #7ccf8f}
.badge.not-within{background:#ffe8d6;color:#8a3b00;border:1px solid #f0a56b}
.badge.failed{background:#fde0e0;color:#8f1010;border:1px solid #e79a9a}
.badge.skipped{background:#eee;color:#555;border:1px solid #bbb}
.badge.kept{background:#e6efff;color:#1f4f99;border:1px solid #9db8e6}
.advice{border-left:4px solid #f0a56b;background:#fff8f2;padding:6px 10px;margin:8px 0}
.note,.no-trace{color:#666;font-style:italic}
.problem{color:#8f1010}
svg.curve{display:block;border:1px solid #ddd;background:#fff;margin:4px 0}
.legend{font-size:12px}.legend span{display:inline-block;margin-right:10px}
.sw{display:inline-block;width:12px;height:3px;vertical-align:middle;margin-right:3px}
nav a{margin-right:10px}
figure.spread{width:164px}figure.spread figcaption{color:#444}
.range,.ilo{margin:4px 0}
code,.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
"""


def _e(v) -> str:
  """HTML-escaped text of any value (quotes included: safe in attributes)."""
  return html.escape(str(v), quote=True)


def _is_num(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v, spec: str = ".4g") -> str:
  """A number formatted with `spec`; '–' for None / non-finite; anything else escaped."""
  if _is_num(v):
    return _e(format(v, spec))
  if v is None or isinstance(v, float):
    return "&ndash;"
  return _e(v)


def _secs(v) -> str:
  return f"{_fmt(v, '.2f')} s" if _is_num(v) else "&ndash;"


def _url(*parts: str) -> str:
  """A relative URL of OUTPUT_DIR/part/... (each part percent-encoded, '/' and ':' included)."""
  return "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _safe_name(name) -> bool:
  """True for a plain file or folder name (one path component: not '', '.' or '..', no NUL,
  no '/' nor this system's other separators; a backslash is a plain character on POSIX)."""
  seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
  return (isinstance(name, str) and name not in ("", ".", "..") and "\0" not in name
          and not any(c in name for c in seps) and os.path.basename(name) == name)


def _read_json(path: str):
  """(document, None) or (None, the problem as text)."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f), None
  except FileNotFoundError:
    return None, f"{os.path.basename(path)} not found"
  except (OSError, ValueError) as e:
    return None, f"{os.path.basename(path)} unreadable ({type(e).__name__}: {e})"


def _image_size(path: str):
  """(width, height) of an image file, or None when absent or unreadable."""
  if not os.path.isfile(path):
    return None
  try:
    with image_files.open_image(path) as im:
      return im.size
  except Exception:  # pylint: disable=broad-except
    return None


def _img(src: str, size, px: int, alt: str, *, pixelated: bool, link: str | None = None) -> str:
  """An <img> scaled to `px` wide (aspect kept); `size` is the file's (w, h)."""
  w, h = size
  height = max(1, round(px * h / w)) if w else px
  cls = ' class="px"' if pixelated else ""
  tag = (f'<img{cls} src="{_e(src)}" width="{px}" height="{height}" alt="{_e(alt)}" '
         f'title="{_e(alt)} ({w}x{h})">')
  return f'<a href="{_e(link)}">{tag}</a>' if link else tag


def _missing(px: int, text: str) -> str:
  return (f'<div class="problem" style="width:{px}px;min-height:{px // 2}px;border:1px dashed '
          f'#c99;font-size:11px">{_e(text)}</div>')


# ----------------------------------------------------------------------------- loss curves

def read_trace(folder: str):
  """(steps, {restart: {series: [values]}}, None), or (None, None, note) when absent/invalid."""
  path = os.path.join(folder, TRACE)
  if not os.path.exists(path):
    return None, None, None
  doc, err = _read_json(path)
  if err:
    return None, None, err
  if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not isinstance(
      doc.get("restarts"), dict):
    return None, None, f"{TRACE} has no 'steps' list and 'restarts' object"
  steps = [s if _is_num(s) else None for s in doc["steps"]]
  restarts = {}
  for r, series in doc["restarts"].items():
    if not isinstance(series, dict):
      continue
    restarts[str(r)] = {str(k): [x if _is_num(x) else None for x in v]
                        for k, v in series.items() if isinstance(v, list)}
  if not steps or not restarts:
    return None, None, f"{TRACE} holds no steps or no restarts"
  return steps, restarts, None


def _restart_order(key: str):
  try:
    return (0, int(key), key)
  except ValueError:
    return (1, 0, key)


def svg_curves(steps: list, curves: list, *, title: str, eps=None, marks=(),
               width: int = 540, height: int = 230) -> str | None:
  """Inline SVG of loss curves against steps (log y when every value is positive).

  curves: [(label, values, colour, stroke width)] drawn in order; eps: a dashed horizontal line;
  marks: [(step, value, colour)] circles. None when there is nothing finite to draw.
  """
  left, right, top, bottom = 62, 12, 22, 30
  pts_all = [v for _, vals, _, _ in curves for v in vals if v is not None]
  if eps is not None and _is_num(eps):
    pts_all.append(eps)
  xs = [s for s in steps if s is not None]
  if not pts_all or not xs:
    return None
  log = all(v > 0 for v in pts_all)
  tf = (lambda v: math.log10(v)) if log else (lambda v: v)
  tvals = [tf(v) for v in pts_all]
  y0, y1 = min(tvals), max(tvals)
  if y1 - y0 < 1e-12:
    pad = 0.5 if log else max(abs(y0) * 0.1, 1e-3)
    y0, y1 = y0 - pad, y1 + pad
  else:
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
  x0, x1 = min(xs), max(xs)
  if x1 == x0:
    x0, x1 = x0 - 1, x1 + 1
  pw, ph = width - left - right, height - top - bottom
  X = lambda s: left + (s - x0) / (x1 - x0) * pw  # noqa: E731
  Y = lambda v: top + (y1 - tf(v)) / (y1 - y0) * ph  # noqa: E731

  title = f"{title} (log scale)" if log else title
  out = [f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{width}" '
         f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
         f'aria-label="{_e(title)}"><title>{_e(title)}</title>',
         f'<text x="{left}" y="14" font-size="12" font-weight="600">{_e(title)}</text>',
         f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
  for i in range(5):  # y ticks
    t = y0 + (y1 - y0) * i / 4
    y = top + (y1 - t) / (y1 - y0) * ph
    label = format(10 ** t if log else t, ".2g")
    out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
               f'stroke="#eee"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
               f'text-anchor="end">{_e(label)}</text>')
  for s in sorted({min(xs), max(xs), round((min(xs) + max(xs)) / 2)}):
    x = X(s)
    out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" font-size="11" '
               f'text-anchor="middle">{_e(format(s, "g"))}</text>')
  out.append(f'<text x="{left + pw}" y="{height - 3}" font-size="11" text-anchor="end">step'
             "</text>")
  if eps is not None and _is_num(eps) and (eps > 0 or not log):
    y = Y(eps)
    out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#c00" '
               f'stroke-dasharray="5,4"/><text x="{left + pw - 4}" y="{y - 4:.1f}" '
               f'font-size="11" fill="#c00" text-anchor="end">eps {_e(format(eps, "g"))}</text>')
  for label, vals, colour, stroke in curves:
    n = min(len(vals), len(steps))
    stride = max(1, math.ceil(n / MAX_CURVE_POINTS))
    idx = list(range(0, n, stride))
    if n and idx[-1] != n - 1:
      idx.append(n - 1)
    d, pen = [], False
    for i in idx:
      v, s = vals[i], steps[i]
      if v is None or s is None or (log and v <= 0):
        pen = False
        continue
      d.append(f'{"L" if pen else "M"}{X(s):.1f} {Y(v):.1f}')
      pen = True
    if d:
      out.append(f'<path d="{" ".join(d)}" fill="none" stroke="{_e(colour)}" '
                 f'stroke-width="{stroke}"><title>{_e(label)}</title></path>')
  for s, v, colour in marks:
    if _is_num(s) and _is_num(v) and (v > 0 or not log):
      out.append(f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="4" fill="none" '
                 f'stroke="{_e(colour)}" stroke-width="2"/>')
  out.append("</svg>")
  return "".join(out)


def _curves_html(folder: str, report: dict, kept: list, colours: dict) -> str:
  steps, restarts, err = read_trace(folder)
  if steps is None:
    why = f" ({err})" if err else ""
    return (f'<p class="no-trace">No loss curves: this run wrote no {TRACE} for this '
            f"input{_e(why)}. The final losses of every restart are in the table below.</p>")
  order = sorted(restarts, key=_restart_order)
  kept_keys = [str(r) for r in kept]
  parts = []
  for series, title, with_eps in (("L2_raw", "L2 (unclamped) per step, each restart", True),
                                  ("TOTAL", "searched loss (TOTAL) per step, each restart",
                                   False)):
    curves = []
    for r in order:  # the others first, in grey, the kept ones on top in their colours
      if r not in kept_keys and series in restarts[r]:
        curves.append((f"restart {r}", restarts[r][series], OTHER_COLOUR, 1))
    for r in reversed(kept_keys):
      if r in restarts and series in restarts[r]:
        curves.append((f"restart {r} (kept)", restarts[r][series], colours[r], 2))
    marks = []
    if series == "L2_raw":
      for o in report.get("outputs") or []:
        if isinstance(o, dict) and str(o.get("restart")) in colours:
          marks.append((o.get("best_step"), o.get("l2"), colours[str(o.get("restart"))]))
    svg = svg_curves(steps, curves, title=title, eps=report.get("eps") if with_eps else None,
                     marks=marks)
    if svg:
      parts.append(svg)
  if not parts:
    return f'<p class="no-trace">No loss curves: {TRACE} holds no finite L2_raw or TOTAL.</p>'
  legend = "".join(
      f'<span><i class="sw" style="background:{_e(colours[r])}"></i>restart {_e(r)} (rank '
      f'{k})</span>' for k, r in enumerate(kept_keys) if r in colours)
  legend += (f'<span><i class="sw" style="background:{OTHER_COLOUR}"></i>other restarts</span>'
             '<span>&#9675; the saved iterate (best step)</span>')
  return ('<div class="row">' + "".join(parts) + f'</div><div class="legend">{legend}</div>')


# ----------------------------------------------------------------------------- sections

def _input_image_html(output_dir: str, stem: str, report: dict) -> str:
  """The searched input, enlarged: <stem>/input.png, else the original file, inlined."""
  path = os.path.join(output_dir, stem, INPUT_PNG)
  size = _image_size(path)
  if size:
    return _img(_url(stem, INPUT_PNG), size, HR_PX, f"input {stem}", pixelated=True)
  orig = (report.get("input") or {}).get("path") if isinstance(report.get("input"), dict) else None
  if isinstance(orig, str) and os.path.isfile(orig):
    try:
      im, _ = image_files.read_image(orig)
      with im:
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        if max(im.size) > MAX_INLINE_SIDE:
          im.thumbnail((MAX_INLINE_SIDE, MAX_INLINE_SIDE))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
      uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
      return (_img(uri, im.size, HR_PX, f"input {stem}", pixelated=True)
              + f'<p class="note">{INPUT_PNG} absent: shown from the original file.</p>')
    except Exception as e:  # pylint: disable=broad-except
      return _missing(HR_PX, f"input unreadable: {type(e).__name__}: {e}")
  return _missing(HR_PX, f"input image not found ({INPUT_PNG} absent, original file absent)")


def _input_small_html(output_dir: str, stem: str) -> str:
  path = os.path.join(output_dir, stem, INPUT_PNG)
  size = _image_size(path)
  if size:
    return _img(_url(stem, INPUT_PNG), size, SMALL_PX, f"input {stem}", pixelated=True)
  return _missing(SMALL_PX, "input absent")


def _describe_input(desc) -> str:
  if not isinstance(desc, dict):
    return ""
  bits = []
  if desc.get("path") is not None:
    bits.append(f'original <span class="path">{_e(desc["path"])}</span>')
  extra = []
  if desc.get("format") is not None:
    extra.append(_e(desc["format"]))
  size = desc.get("original_size")
  if isinstance(size, list) and len(size) == 2:
    extra.append(f"{_fmt(size[0], 'g')}x{_fmt(size[1], 'g')}")
  if desc.get("original_mode") is not None:
    extra.append(_e(desc["original_mode"]))
  if extra:
    bits.append("(" + ", ".join(extra) + ")")
  if _is_num(desc.get("size")):
    bits.append(f"searched at {_fmt(desc['size'], 'g')}x{_fmt(desc['size'], 'g')}")
  if desc.get("resized_from"):
    bits.append(f"resized from {_e(desc['resized_from'])}")
  if desc.get("padding"):
    bits.append(f"padding {_e(desc['padding'])}")
  notes = desc.get("notes")
  out = "<p>" + " ".join(bits) + "</p>"
  if isinstance(notes, list) and notes:
    out += "<ul>" + "".join(f'<li class="note">{_e(n)}</li>' for n in notes) + "</ul>"
  return out


def _badge(within) -> str:
  if within is True:
    return '<span class="badge within">within eps</span>'
  return '<span class="badge not-within">not within eps</span>'


def _file_image(output_dir: str, stem: str, name):
  """(name, (w, h)) of a readable image <stem>/<name>, or None (unsafe name, absent, corrupt)."""
  if not _safe_name(name):
    return None
  size = _image_size(os.path.join(output_dir, stem, name))
  return (name, size) if size else None


def _candidate_html(output_dir: str, stem: str, o: dict, colour: str, small_input: str) -> str:
  """One kept candidate: its HR, the input beside its LR, rank, restart, badge, L2."""
  rank, restart = o.get("rank"), o.get("restart")
  parts = [f'<figure class="candidate" data-rank="{_e(rank)}" data-restart="{_e(restart)}" '
           f'data-within-eps="{"true" if o.get("within_eps") is True else "false"}" '
           f'style="--c:{_e(colour)}">']
  hr = _file_image(output_dir, stem, o.get("hr"))
  if hr:
    name, size = hr
    parts.append(_img(_url(stem, name), size, HR_PX, f"{stem} rank {rank} HR",
                      pixelated=size[0] < HR_PX, link=_url(stem, name)))
  else:
    parts.append(_missing(HR_PX, f"HR image {o.get('hr')} missing"))
  parts.append('<div class="pair"><figure>' + small_input + "<figcaption>input</figcaption>"
               "</figure><figure>")
  lr = _file_image(output_dir, stem, o.get("lr"))
  if lr:
    name, size = lr
    parts.append(_img(_url(stem, name), size, SMALL_PX, f"{stem} rank {rank} LR",
                      pixelated=True))
  else:
    parts.append(_missing(SMALL_PX, f"LR image {o.get('lr')} missing"))
  parts.append("<figcaption>its LR</figcaption></figure></div>")
  parts.append(f'<figcaption><b>#{_fmt(rank, "g")}</b> restart {_fmt(restart, "g")} '
               f'{_badge(o.get("within_eps"))}<br>L2 <b>{_fmt(o.get("l2"), ".3e")}</b>, '
               f'loss {_fmt(o.get("total"), ".4g")}, step {_fmt(o.get("best_step"), "g")}'
               "</figcaption></figure>")
  return "".join(parts)


def _block(report: dict, name: str) -> dict | None:
  value = report.get(name)
  return value if isinstance(value, dict) else None


def _spread_html(output_dir: str, stem: str, report: dict) -> str:
  """The spread map figure (report.json "spread"), its one line, or "no map" when there is
  none; '' for a report without a "spread" block (an older run)."""
  block = _block(report, "spread")
  if block is None:
    return ""
  vmax = block.get("vmax") if _is_num(block.get("vmax")) else image_files.SPREAD_VMAX
  n = block.get("restarts")
  image = _file_image(output_dir, stem, block.get("file")) if block.get("file") else None
  if image:
    name, size = image
    pic = _img(_url(stem, name), size, HR_PX, f"{stem} spread of {n} within-eps restarts",
               pixelated=size[0] < HR_PX, link=_url(stem, name))
    numbers = (f"of {_fmt(n, 'g')} within-eps restarts (mean {_fmt(block.get('mean'), '.3g')},"
               f" max {_fmt(block.get('max'), '.3g')})")
    return (f'<figure class="spread" data-restarts="{_e(n)}">{pic}<figcaption>'
            f'<b>Spread</b> {numbers}. <span class="spread-line">'
            f"{_e(SPREAD_LINE.format(vmax=vmax))}</span></figcaption></figure>")
  why = NO_SPREAD if block.get("file") is None else f"spread map {block.get('file')} missing"
  return (f'<figure class="spread none" data-restarts="{_e(n)}">{_missing(HR_PX, "no map")}'
          f"<figcaption><b>Spread</b>: {_e(why)} ({_fmt(n, 'g')} within eps).</figcaption>"
          "</figure>")


def _range_html(report: dict) -> str:
  """One line: how many candidates were kept and how (report.json "candidates"), their
  diversity and the steps this input ran ("stopping"); '' for an older report without them."""
  cand, stop = _block(report, "candidates"), _block(report, "stopping")
  bits = []
  if cand is not None:
    kept = cand.get("kept") if isinstance(cand.get("kept"), list) else []
    filled = cand.get("filled")
    bits.append(f"{len(kept)} candidate(s) kept ({_e(cand.get('selection', '?'))} selection"
                + (f"; {_fmt(filled, 'g')} not within eps: too few restarts were"
                   if _is_num(filled) and filled > 0 else "") + ")")
    bits.append(f"diversity <b>{_fmt(cand.get('diversity'), '.3g')}</b> (mean pairwise RMS "
                "difference of their HR images)" if _is_num(cand.get("diversity"))
                else "diversity &ndash; (one candidate)")
  if stop is not None:
    early = " (ended early)" if stop.get("ended_early") is True else ""
    bits.append(f"<b>{_fmt(stop.get('steps_run'), 'g')}</b> of {_fmt(stop.get('steps'), 'g')} "
                f"steps run{early}")
  return f'<p class="range">{"; ".join(bits)}.</p>' if bits else ""


def _percent(v) -> str:
  return f"{100 * v:.1f}%" if _is_num(v) else "&ndash;"


def _ilo_html(report: dict) -> str:
  """One line (report.json "ilo", written with --ilo): the cut points searched after the latent
  search, how far each kept candidate's activation moved from the generator's range there
  (||a - c||_1 / ||c||_1) against the ball's radius, the layer the images render from, and
  `ILO_LINE`; '' for a run without ILO."""
  block = _block(report, "ilo")
  if block is None:
    return ""
  layers = block.get("layers") if isinstance(block.get("layers"), list) else []
  head = (f"<b>ILO</b> {_e(','.join(map(str, layers)))} ({_fmt(block.get('steps_per_layer'), 'g')}"
          f" steps each, l1 radius {_percent(block.get('radius'))})")
  kept = [k for k in (block.get("kept") if isinstance(block.get("kept"), list) else [])
          if isinstance(k, dict) and isinstance(k.get("moved"), dict)]
  if not kept or not any(k["moved"] for k in kept):
    return (f'<p class="ilo">{head}: no cut point was entered (the search ended first); the '
            "images are in the generator's range.</p>")
  moves = "; ".join(
      f"#{_fmt(k.get('rank') + 1 if _is_num(k.get('rank')) else None, 'g')} "
      + ", ".join(f"{_e(layer)} {_percent(v)}" for layer, v in k["moved"].items())
      for k in kept)
  return (f'<p class="ilo">{head}: the activations moved (relative l1) {moves}; images '
          f"rendered from {_e(block.get('kept_layer'))}. {_e(ILO_LINE)}</p>")


def _restarts_table(report: dict, kept: set) -> str:
  rows = report.get("restarts")
  if not isinstance(rows, list) or not rows:
    return ""
  body = []
  for r in rows:
    if not isinstance(r, dict):
      continue
    mark = " (kept)" if str(r.get("restart")) in kept else ""
    body.append(f'<tr><td class="num">{_fmt(r.get("restart"), "g")}{mark}</td>'
                f'<td class="num">{_fmt(r.get("l2"), ".3e")}</td>'
                f'<td class="num">{_fmt(r.get("min_l2"), ".3e")}</td>'
                f'<td class="num">{_fmt(r.get("total"), ".4g")}</td>'
                f'<td class="num">{_fmt(r.get("best_step"), "g")}</td>'
                f'<td>{"yes" if r.get("within_eps") is True else "no"}</td></tr>')
  return (f"<details><summary>All {len(body)} restarts</summary><table><tr><th>restart</th>"
          "<th>L2 (saved iterate)</th><th>lowest L2 seen</th><th>loss</th><th>best step</th>"
          "<th>within eps</th></tr>" + "".join(body) + "</table></details>")


def _input_section(output_dir: str, index: int, entry: dict) -> str:
  stem = entry.get("stem")
  head_name = stem if isinstance(stem, str) else entry.get("input")
  out = [f'<section class="input" id="input-{index}" data-stem="{_e(head_name)}">']
  if not _safe_name(stem) or not os.path.isdir(os.path.join(output_dir, stem)):
    out.append(f"<h2>{_e(head_name)}</h2><p class=\"problem\">No result folder "
               f"{_e(stem)!s} in the output directory.</p></section>")
    return "".join(out)
  folder = os.path.join(output_dir, stem)
  report, err = _read_json(os.path.join(folder, REPORT))
  if not isinstance(report, dict):
    out.append(f'<h2>{_e(stem)}</h2><p class="problem">{_e(err or "report.json is not an object")}'
               "</p></section>")
    return "".join(out)
  within = report.get("within_eps")
  rows = report.get("restarts") if isinstance(report.get("restarts"), list) else []
  n_within, n_restarts = report.get("restarts_within_eps"), len(rows)
  kept = ' <span class="badge kept">kept</span>' if entry.get("kept") is True else ""
  out.append(f"<h2>{_e(stem)} {_badge(within)}{kept}</h2>")
  best = report.get("best") if isinstance(report.get("best"), dict) else {}
  out.append(f"<p>{_fmt(n_within, 'g')} of {n_restarts} restarts within eps "
             f"{_fmt(report.get('eps'), 'g')}; best L2 <b>{_fmt(best.get('l2'), '.3e')}</b> "
             f"(restart {_fmt(best.get('restart'), 'g')}).</p>")
  out.append(_timings_html(report.get("timings"), entry.get("kept") is True))
  out.append(_describe_input(report.get("input")))
  if within is not True:
    text = report.get("advice")
    if not isinstance(text, str) or not text:
      try:
        with open(os.path.join(folder, NOT_WITHIN_EPS), encoding="utf-8") as f:
          text = f.read().strip()
      except OSError:
        text = None
    if text:
      out.append(f'<p class="advice"><b>Not within eps.</b> {_e(text)}</p>')
  outputs_ = [o for o in (report.get("outputs") or []) if isinstance(o, dict)]
  outputs_.sort(key=lambda o: o.get("rank") if _is_num(o.get("rank")) else 1e9)
  colours = {}
  for k, o in enumerate(outputs_):
    colours.setdefault(str(o.get("restart")), PALETTE[k % len(PALETTE)])
  small_input = _input_small_html(output_dir, stem)
  out.append('<div class="row"><figure class="target">'
             + _input_image_html(output_dir, stem, report)
             + "<figcaption>input (enlarged, nearest neighbour)</figcaption></figure>")
  for o in outputs_:
    out.append(_candidate_html(output_dir, stem, o, colours[str(o.get("restart"))], small_input))
  out.append(_spread_html(output_dir, stem, report))
  out.append("</div>")
  out.append(_range_html(report))
  out.append(_ilo_html(report))
  if not outputs_:
    out.append('<p class="problem">report.json lists no kept outputs.</p>')
  if os.path.isfile(os.path.join(folder, GIF)):
    size = _image_size(os.path.join(folder, GIF))
    if size:
      out.append("<h3>Search progress (input | LR | HR, best so far)</h3>"
                 + _img(_url(stem, GIF), size, min(size[0], 3 * HR_PX), f"{stem} progress",
                        pixelated=False))
  out.append("<h3>Loss curves</h3>")
  out.append(_curves_html(folder, report, [o.get("restart") for o in outputs_], colours))
  out.append(_restarts_table(report, set(colours)))
  out.append("</section>")
  return "".join(out)


def _timings_html(t, kept: bool) -> str:
  """An input's own search time (its report's timings; a batch's time is shared by its
  inputs), and whether it was kept from an earlier run."""
  where = ('<span class="badge kept">kept from an earlier run</span> not searched again by '
           "this run; ") if kept else ""
  if not isinstance(t, dict):
    return f'<p class="timings">{where}no timings recorded.</p>' if kept else ""
  n = t.get("batch_images")
  batch = f" (a batch of {_fmt(n, 'g')} inputs)" if _is_num(n) and n > 1 else ""
  resumed = (f"; resumed from step {_fmt(t.get('resumed_from_step'), 'g')}"
             if _is_num(t.get("resumed_from_step")) and t.get("resumed_from_step") > 0 else "")
  return (f'<p class="timings">{where}searched in {_secs(t.get("batch_wall_s"))}{batch}: '
          f'compile {_secs(t.get("compile_s"))}, search {_secs(t.get("search_s"))}, '
          f'{_fmt(t.get("restart_steps_per_s"), ".1f")} restart-steps/s{resumed}.</p>')


def _summary_table(summary: dict | None, entries: list) -> str:
  if summary is None:
    searched = [e for e in entries if e.get("status") in SEARCHED]
    return (f'<p class="problem">{SUMMARY} is absent or unreadable (an interrupted run?): '
            f"showing the {len(searched)} result folder(s) found.</p>")
  s = summary
  settings = s.get("settings") if isinstance(s.get("settings"), dict) else {}
  weights = s.get("weights") if isinstance(s.get("weights"), dict) else {}
  versions = s.get("versions") if isinstance(s.get("versions"), dict) else {}
  device = s.get("device") if isinstance(s.get("device"), dict) else {}
  rate = s.get("success_rate")
  rows = [
      ("inputs", f"{_fmt(s.get('inputs'), 'g')} ({_fmt(s.get('searched'), 'g')} searched"
                 + (f" ({_fmt(s.get('kept'), 'g')} of them kept from an earlier run)"
                    if _is_num(s.get("kept")) and s.get("kept") > 0 else "")
                 + f", {_fmt(s.get('failed'), 'g')} failed, {_fmt(s.get('skipped'), 'g')} "
                 "skipped)"),
      ("within eps", f"{_fmt(s.get('within_eps'), 'g')} within eps, "
                     f"{_fmt(s.get('not_within_eps'), 'g')} not within eps"
                     + (f" (success rate {rate:.0%} of searched inputs)" if _is_num(rate) else "")),
      ("eps", _fmt(s.get("eps"), "g")),
      ("model", f"{_e(weights.get('name', '?'))} ({_e(weights.get('kind', '?'))}, "
                f"{_fmt(weights.get('resolution'), 'g')}x{_fmt(weights.get('resolution'), 'g')})"),
      ("restarts, steps", f"{_fmt(s.get('restarts'), 'g')} restarts x {_fmt(s.get('steps'), 'g')}"
                          f" steps; {_fmt(settings.get('duplicates'), 'g')} kept per input"),
      ("loss, optimiser", f"<code>{_e(settings.get('loss_str', '?'))}</code>; "
                          f"{_e(settings.get('opt_name', '?'))}, learning rate "
                          f"{_fmt(settings.get('learning_rate'), 'g')} "
                          f"({_e(settings.get('lr_schedule', '?'))}); seed "
                          f"{_fmt(settings.get('seed'), 'g')}"),
      ("timings", f"wall {_secs(s.get('wall_s'))}; compile {_secs(s.get('compile_s'))}, search "
                  f"{_secs(s.get('search_s'))}; {_secs(s.get('seconds_per_image'))} per image; "
                  f"{_fmt(s.get('restart_steps_per_s'), '.1f')} restart-steps/s"
                  + (f" (this run; {_fmt(s.get('kept'), 'g')} input(s) kept from an earlier "
                     "run, not searched again: their own timings are shown with each input)"
                     if _is_num(s.get("kept")) and s.get("kept") > 0 else "")),
      ("device", f"{_e(device.get('backend', '?'))} x {_fmt(device.get('device_count'), 'g')} "
                 f"({_e(', '.join(map(str, device.get('device_kinds') or [])))})"),
      ("versions", ", ".join(f"{_e(k)} {_e(versions[k])}" for k in ("pulse-jax", "jax", "flax")
                             if versions.get(k) is not None) or "&ndash;"),
  ]
  return ('<table class="summary">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>"
                                              for k, v in rows) + "</table>")


def _failed_section(entries: list) -> str:
  bad = [e for e in entries if e.get("status") in NOT_SEARCHED]
  if not bad:
    return ""
  items = "".join(
      f'<li class="{_e(e.get("status"))}"><span class="badge {_e(e.get("status"))}">'
      f'{_e(e.get("status"))}</span> <span class="path">{_e(e.get("input"))}</span>'
      f'<br><span class="message">{_e(e.get("message") or "")}</span></li>' for e in bad)
  return (f'<section class="failed-inputs" id="failed"><h2>Failed, skipped and interrupted inputs '
          f"({len(bad)})</h2><ul>{items}</ul></section>")


def _entries(output_dir: str, summary: dict | None) -> list:
  """The summary's `files` (dicts), or one entry per <stem>/report.json found."""
  if summary is not None and isinstance(summary.get("files"), list):
    return [f for f in summary["files"] if isinstance(f, dict)]
  found = []
  for name in sorted(os.listdir(output_dir)):
    rep = os.path.join(output_dir, name, REPORT)
    if os.path.isfile(rep):
      doc, _ = _read_json(rep)
      status = doc.get("status") if isinstance(doc, dict) else None
      found.append({"stem": name, "input": name,
                    "status": status if status in SEARCHED else "not_within_eps"})
  return found


def render_gallery(output_dir: str) -> str:
  """The gallery page of the run in `output_dir`, as HTML text (see the module docstring)."""
  if not os.path.isdir(output_dir):
    raise FileNotFoundError(f"{output_dir}: no such directory")
  summary, err = _read_json(os.path.join(output_dir, SUMMARY))
  if not isinstance(summary, dict):
    summary = None
  entries = _entries(output_dir, summary)
  if summary is None and not entries:
    raise FileNotFoundError(f"{output_dir}: no {SUMMARY} ({err}) and no <stem>/{REPORT}: not the "
                            "output directory of a pulse_jax.run run")
  title = f"pulse_jax run: {os.path.basename(os.path.abspath(output_dir))}"
  searched = [(i, e) for i, e in enumerate(entries) if e.get("status") in SEARCHED]
  nav = "".join(f'<a href="#input-{i}">{_e(e.get("stem"))}</a>' for i, e in searched)
  if any(e.get("status") in NOT_SEARCHED for e in entries):
    nav += '<a href="#failed">failed / skipped / interrupted</a>'
  page = [
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
      f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
      '<meta name="referrer" content="no-referrer">',
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
      f"<h1>{_e(title)}</h1>",
      f'<aside class="responsible-use" role="note"><strong>{_e(responsible_use.TITLE)}</strong>'
      f"{_e(responsible_use.NOTICE)}</aside>",
      _summary_table(summary, entries),
      f"<nav>{nav}</nav>" if nav else "",
  ]
  for i, e in searched:
    page.append(_input_section(output_dir, i, e))
  page.append(_failed_section(entries))
  page.append('<p class="note">Built by <code>python -m pulse_jax.gallery</code> from the files '
              "of this folder; rebuild it after changing them.</p></body></html>\n")
  return "\n".join(p for p in page if p)


def write_gallery(output_dir: str) -> str:
  """Writes OUTPUT_DIR/index.html (atomically) and returns its path."""
  text = render_gallery(output_dir)
  path = os.path.join(output_dir, INDEX)
  tmp = os.path.join(output_dir, f".{INDEX}.tmp-{os.getpid()}")
  if os.path.lexists(tmp):  # never written through a link
    os.remove(tmp)
  try:
    with open(tmp, "x", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  finally:
    if os.path.lexists(tmp):
      os.remove(tmp)
  return path
