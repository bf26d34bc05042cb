"""OUTPUT_DIR/index.html of a quality evaluation (`pulse_jax.evaluate`): a self-contained page.

`write_page(output_dir, evaluation) -> path` draws what evaluation.json holds
(`pulse_jax.job.evaluation`): the table (rows: the ground truth's NIQE, nearest, bicubic, each
configuration; columns: success rate, median best L2, PSNR, SSIM, NIQE, restart-steps, s per
image), one inline-SVG bar chart per figure, and a picture sheet (per image: ground truth | LR |
nearest | bicubic | each configuration's best candidate hr_0, with its PSNR and SSIM). Like
the run gallery (`pulse_jax.io.gallery`, whose style sheet and Content-Security-Policy it uses):
no script, nothing loaded over the network, images as percent-encoded relative links inside
OUTPUT_DIR, every string from the files HTML-escaped.
"""
from __future__ import annotations

import html
import math
import os
import urllib.parse

from pulse_jax.io import responsible_use
from pulse_jax.io.gallery import CSP, CSS, PALETTE
from pulse_jax.io.run_files import INDEX

IMAGE_PX = 128            # displayed side of each picture in the sheet
CHART_W, BAR_H = 360, 18  # an SVG bar chart's width and one bar's height
BASELINE_COLOUR = "#9a9a9a"
# (key in a method's aggregate, title, number format, which way is better)
CHARTS = (("success_rate", "Success rate (within eps)", ".0%", "higher"),
          ("median_l2", "Median best L2", ".3g", "lower"),
          ("psnr", "PSNR (dB) against the ground truth", ".2f", "higher"),
          ("ssim", "SSIM against the ground truth", ".3f", "higher"),
          ("niqe", "NIQE", ".2f", "lower"),
          ("restart_steps", "Restart-steps per image", ".0f", "lower"),
          ("s_per_image", "Wall seconds per image", ".2f", "lower"))
EXTRA_CSS = """
.charts{display:flex;flex-wrap:wrap;gap:14px}
svg.bars{display:block;border:1px solid #ddd;background:#fff}
table.sheet td{text-align:center;font-size:12px}
"""


def _e(v) -> str:
  return html.escape(str(v), quote=True)


def _num(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v, spec: str) -> str:
  return _e(format(v, spec)) if _num(v) else "&ndash;"


def _url(relative: str) -> str:
  """A relative link to OUTPUT_DIR/relative ('/'-separated), each part percent-encoded; ''
  for a path that would leave OUTPUT_DIR."""
  parts = str(relative).split("/")
  if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
    return ""
  return "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _colour(i: int, method: str, baselines) -> str:
  return BASELINE_COLOUR if method in baselines else PALETTE[i % len(PALETTE)]


def bar_chart(title: str, values: dict, spec: str, better: str, colours: dict) -> str:
  """An inline SVG: one horizontal bar per method (`values`: method -> number or None; None
  is drawn as '-'), scaled to the largest value; the title says which way is better."""
  label_w, pad = 90, 6
  nums = [v for v in values.values() if _num(v)]
  top = max([abs(v) for v in nums] + [0.0]) or 1.0
  h = pad * 2 + 18 + len(values) * (BAR_H + 4)
  out = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" '
         f'height="{h}" role="img" aria-label="{_e(title)}">',
         f'<text x="{pad}" y="{pad + 11}" font-size="12" font-weight="600">{_e(title)} '
         f'({_e(better)} is better)</text>']
  y = pad + 18
  span = CHART_W - label_w - pad * 2 - 50
  for method, v in values.items():
    out.append(f'<text x="{pad}" y="{y + BAR_H - 5}" font-size="11">{_e(method)}</text>')
    if _num(v):
      w = max(1.0, span * abs(v) / top)
      out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                 f'fill="{colours[method]}"/>')
      out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + BAR_H - 5}" font-size="11">'
                 f'{_fmt(v, spec)}</text>')
    else:
      out.append(f'<text x="{label_w}" y="{y + BAR_H - 5}" font-size="11" fill="#777">'
                 '&ndash;</text>')
    y += BAR_H + 4
  out.append("</svg>")
  return "".join(out)


def _table(ev: dict, columns) -> str:
  heads = "".join(f"<th>{_e(h)}</th>" for _, h, _ in columns)
  rows = [f"<tr><th>method</th>{heads}</tr>"]
  gt = ev.get("ground_truth", {})
  cells = "".join("<td>&ndash;</td>" if k != "niqe" else
                  f'<td class="num">{_fmt(gt.get("niqe"), ".2f")}</td>' for k, _, _ in columns)
  rows.append(f"<tr><td>ground truth</td>{cells}</tr>")
  for m in ev["methods"]:
    a = ev["aggregate"][m]
    cells = "".join(f'<td class="num">{_fmt(a.get(k), spec)}</td>' for k, _, spec in columns)
    rows.append(f"<tr><td>{_e(m)}</td>{cells}</tr>")
  return '<table class="summary">' + "".join(rows) + "</table>"


def _picture(src: str | None, caption: str, pixelated: bool = False) -> str:
  link = _url(src) if src else ""
  if not link:
    return f'<td><div class="problem">no image</div>{caption}</td>'
  cls = ' class="px"' if pixelated else ""
  return (f'<td><a href="{_e(link)}"><img{cls} src="{_e(link)}" width="{IMAGE_PX}" '
          f'height="{IMAGE_PX}" alt="{_e(src)}"></a>{caption}</td>')


def _sheet(ev: dict) -> str:
  methods = ev["methods"]
  heads = "".join(f"<th>{_e(h)}</th>" for h in ("ground truth", "LR input", *methods))
  rows = [f"<tr>{heads}</tr>"]
  for im in ev["images"]:
    cells = [_picture(im["gt"], f"<div>{_e(im['stem'])}</div>"),
             _picture(im["lr"], f"<div>{_e(ev['lr_size'])} px</div>", pixelated=True)]
    for m in methods:
      f = im["methods"][m]
      badge = ("" if f.get("status") == "baseline" else
               " within eps" if f.get("within_eps") else " not within eps"
               if f.get("status") != "failed" else " failed")
      cap = (f"<div>PSNR {_fmt(f.get('psnr'), '.2f')} SSIM {_fmt(f.get('ssim'), '.3f')}"
             f"{_e(badge)}</div>")
      cells.append(_picture(f.get("image"), cap, pixelated=m == "nearest"))
    rows.append("<tr>" + "".join(cells) + "</tr>")
  return '<table class="sheet">' + "".join(rows) + "</table>"


def render_page(evaluation: dict) -> str:
  """The page's HTML of an evaluation (what evaluation.json holds)."""
  ev = evaluation
  g = ev["generator"]
  baselines = ("nearest", "bicubic")
  colours, k = {}, 0
  for m in ev["methods"]:
    colours[m] = _colour(k, m, baselines)
    k += m not in baselines
  columns = [(key, title.split(" (")[0].split(" against")[0], spec)
             for key, title, spec, _ in CHARTS]
  charts = "".join(
      bar_chart(title, {m: ev["aggregate"][m].get(key) for m in ev["methods"]}, spec, better,
                colours) for key, title, spec, better in CHARTS)
  configs = "".join(
      f'<li><a href="{_e(_url(c["output_dir"] + "/" + INDEX))}">{_e(c["name"])}</a>: '
      f'{_e("; ".join(f"--{n}={v}" for n, v in c["options"].items()) or "the common options")}'
      "</li>" for c in ev["configs"])
  title = (f"Evaluation: {len(ev['images'])} image(s), {ev['lr_size']} px -> "
           f"{g['resolution']} px (factor {ev['factor']})")
  return "".join([
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
      f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
      f"<title>{_e(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>",
      f"<h1>{_e(title)}</h1>",
      f'<div class="responsible-use"><strong>{_e(responsible_use.TITLE)}</strong>'
      f"{_e(responsible_use.NOTICE)}</div>",
      f"<p>Model {_e(g['name'])} ({_e(g.get('kind', ''))}); forward model "
      f"{_e(', '.join(ev['forward'].get('operators') or []) or 'identity')}; eps "
      f"{_fmt(ev.get('eps'), 'g')}. Best L2: the best candidate's against the LR input (the "
      "baselines: of D(up-sampled) against it); PSNR, SSIM: against the ground truth; NIQE "
      f"only at {_e(ev.get('niqe_min_side', 192))} px and more.</p>",
      f"<h2>Figures</h2>{_table(ev, columns)}",
      f"<h3>Configurations (their run galleries)</h3><ul>{configs}</ul>",
      f'<h2>Charts</h2><div class="charts">{charts}</div>',
      f"<h2>Pictures</h2>{_sheet(ev)}",
      "</body></html>\n"])


def write_page(output_dir: str, evaluation: dict) -> str:
  """Writes OUTPUT_DIR/index.html (`render_page`); returns its path."""
  path = os.path.join(os.fspath(output_dir), INDEX)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(render_page(evaluation))
  os.replace(tmp, path)
  return path
