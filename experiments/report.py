"""Tables and summaries of a benchmark run (pure functions of the results dict)."""
from __future__ import annotations

import os
import re

from experiments import measure

GIB = 2.0**30
SUMMARY_START = "<!-- benchmark-summary:start -->"
SUMMARY_END = "<!-- benchmark-summary:end -->"
GPU_TABLE_START = "<!-- gpu-table:start -->"  # the GPU block of the top-level README.md
GPU_TABLE_END = "<!-- gpu-table:end -->"
# Roofline targets from the issue (restart-steps/s at 1024, TF32 and bf16, SXM parts; about
# 130.6 GFLOP per restart-step).
ROOFLINE = {"H100": (1920, 3840), "H200": (2400, 4800)}
GFLOP_PER_STEP_1024 = 130.6
NO_GPU = "not measured (no GPU in this session)"


def variant_name(key) -> str:
  if key == "reference":
    return "reference"
  dtype, remat = key
  return f"pulse-jax {'f32' if dtype == 'float32' else 'bf16'}{' remat' if remat else ''}"


def platform_name(results: dict) -> str:
  devs = [r.get("device", "") for r in results["runs"] if r.get("side") == "pulse-jax"]
  dev = devs[0] if devs else "cpu:cpu"
  if dev.startswith("cpu"):
    return "cpu"
  return "gpu-" + re.sub(r"[^A-Za-z0-9]+", "-", dev.split(":", 1)[1]).strip("-").lower()


def _f(x, fmt=".3g"):
  return "-" if x is None else format(x, fmt)


def _gib(b):
  return None if b is None else b / GIB


def progress_line(r: dict) -> str:
  head = f"[{r['resolution']:>4} x{r['restarts']:<3}] {r['variant']:<24}"
  if "error" in r:
    return f"{head} FAILED: {r['error']}"
  return (f"{head} {r['restart_steps_per_s']:.4g} restart-steps/s  (median step "
          f"{r['median_step_s']:.3g} s, {r['cpu_s_per_restart_step']:.3g} CPU s/restart-step, "
          f"compile {r.get('compile_s', 0):.1f} s, peak RSS {r['peak_rss_bytes'] / GIB:.2f} GiB)")


def _by_key(results: dict) -> dict:
  return {(r["resolution"], r["restarts"], r["variant"]): r for r in results["runs"]
          if "error" not in r}


def ratios(results: dict) -> list[dict]:
  """pulse-jax / reference, per (resolution, restarts, variant): wall and CPU-time based."""
  by = _by_key(results)
  out = []
  for (res, n, var), r in by.items():
    ref = by.get((res, n, "reference"))
    if var == "reference" or ref is None:
      continue
    out.append({"resolution": res, "restarts": n, "variant": var,
                "jax": r["restart_steps_per_s"], "reference": ref["restart_steps_per_s"],
                "speedup_wall": r["restart_steps_per_s"] / ref["restart_steps_per_s"],
                "speedup_cpu_time": ref["cpu_s_per_restart_step"] / r["cpu_s_per_restart_step"]})
  return out


def ratio_lines(results: dict) -> str:
  rows = ratios(results)
  if not rows:
    return "no reference measurements: no ratios."
  return "\n".join(
      f"[{x['resolution']:>4} x{x['restarts']:<3}] {x['variant']:<24} vs reference: "
      f"{x['speedup_wall']:.2f}x restart-steps/s (wall), {x['speedup_cpu_time']:.2f}x per CPU-second"
      for x in rows)


def parity_lines(p: dict | None) -> str:
  if not p:
    return "parity: not run"
  if "error" in p:
    return f"parity: FAILED: {p['error']}"
  fw, s = p["forward"], p["search"]
  lines = [f"parity forward {p['resolution']} (fmap_base {p['fmap_base']}): max |jax - ref| = "
           f"{fw['max_abs_diff']:.3g} (image max |ref| {fw['max_abs_reference']:.3g})",
           f"parity search, {s['steps']} steps from identical starts: max relative diff of the "
           f"loss traces {s['max_rel_diff']:.3g}"]
  for name, t in s["traces"].items():
    lines.append(f"  {name:<9} jax {[float(f'{v:.6g}') for v in t['pulse_jax']]}")
    lines.append(f"  {'':<9} ref {[float(f'{v:.6g}') for v in t['reference']]}  "
                 f"(max rel {t['max_rel_diff']:.2g})")
  return "\n".join(lines)


def memory_lines(m: dict) -> str:
  if "error" in m:
    return f"compiled memory: FAILED: {m['error']}"
  return "\n".join(
      f"[{m['resolution']:>4} x{r['restarts']:<3}] {variant_name((r['dtype'], r['remat'])):<24} "
      f"{_groups(r):<17}compiled (XLA buffer assignment): "
      f"temp {r['temp_size_in_bytes'] / GIB:.1f} GiB + "
      f"arguments {r['argument_size_in_bytes'] / GIB:.2f} GiB" for r in m["rows"])


def _groups(r: dict) -> str:
  g = r.get("micro_batches", 1)
  return f"{g} micro-batches" if g > 1 else "one batch"


def _groups_suffix(r: dict) -> str:
  """' (G micro-batches)' for a measurement in micro-batches, else ''."""
  return f" ({_groups(r)})" if r.get("micro_batches", 1) > 1 else ""


def _memory_md(results: dict) -> list[str]:
  rows = ["| res | restarts | what | micro-batches | temp GiB | arguments GiB | "
          "temp per restart GiB |", "|---|---|---|---|---|---|---|"]
  for m in results.get("memory") or []:
    if "error" in m:
      rows.append(f"| - | - | failed: {m['error'][:80]} | | | | |")
      continue
    for r in m["rows"]:
      rows.append(f"| {m['resolution']} | {r['restarts']} | {variant_name((r['dtype'], r['remat']))}"
                  f" | {r.get('micro_batches', 1)} | {r['temp_size_in_bytes'] / GIB:.1f}"
                  f" | {r['argument_size_in_bytes'] / GIB:.2f}"
                  f" | {r['temp_size_in_bytes'] / GIB / r['restarts']:.2f} |")
  return rows if len(rows) > 2 else []


def memory_slopes(results: dict) -> list[dict]:
  """XLA temp bytes per extra restart (least squares over the measured restart counts)."""
  groups: dict = {}
  for r in results["runs"]:
    if "error" in r or r.get("side") != "pulse-jax":
      continue
    t = (r.get("compiled_memory") or {}).get("temp_size_in_bytes")
    if t:
      groups.setdefault((r["resolution"], r["variant"]), []).append((r["restarts"], t))
  out = []
  for (res, var), pts in sorted(groups.items()):
    if len({n for n, _ in pts}) < 2:
      continue
    n0, t0 = min(pts)
    n1, t1 = max(pts)
    per = (t1 - t0) / (n1 - n0)
    fixed = t0 - per * n0
    out.append({"resolution": res, "variant": var, "temp_per_restart_gib": per / GIB,
                "temp_fixed_gib": fixed / GIB,
                "restarts_in_80gb_estimate": int((80e9 - max(fixed, 0)) // per) if per > 0 else None})
  return out


def _run_table(results: dict) -> list[str]:
  peak = measure.cpu_peak_gflops(results["machine"])
  rows = ["| res | restarts | what | compile s | step s (median) | restart-steps/s | "
          "CPU s / restart-step | vs ref (wall) | vs ref (CPU s) | peak RSS GiB | XLA temp GiB | "
          "GFLOP/s (HLO) |", "|" + "---|" * 12]
  rat = {(x["resolution"], x["restarts"], x["variant"]): x for x in ratios(results)}
  for r in results["runs"]:
    key = (r["resolution"], r["restarts"], r["variant"])
    if "error" in r:
      rows.append(f"| {key[0]} | {key[1]} | {key[2]} | failed: {r['error'][:80]} |" + " |" * 8)
      continue
    x = rat.get(key, {})
    temp = _gib((r.get("compiled_memory") or {}).get("temp_size_in_bytes"))
    fl = r.get("hlo_flops_per_restart_step")
    gfs = fl * r["restart_steps_per_s"] / 1e9 if fl else None
    gfs_s = "-" if gfs is None else (f"{gfs:.3g}" + (f" ({gfs / peak:.0%} of peak)" if peak else ""))
    compile_s = r.get("compile_s") if r["side"] == "pulse-jax" else None
    rows.append(
        f"| {key[0]} | {key[1]} | {key[2]}{_groups_suffix(r)} | {_f(compile_s, '.1f')} | "
        f"{r['median_step_s']:.3g} | {r['restart_steps_per_s']:.3g} | {r['cpu_s_per_restart_step']:.3g} | "
        f"{_f(x.get('speedup_wall'), '.2f')} | {_f(x.get('speedup_cpu_time'), '.2f')} | "
        f"{_gib(r['peak_rss_bytes']):.2f} | {_f(temp, '.3g')} | {gfs_s} |")
  return rows


def _targets(results: dict) -> list[str]:
  cpu = platform_name(results) == "cpu"
  rat = ratios(results)
  rows = ["| target | measured here | status |", "|---|---|---|"]
  for gpu, (tf32, bf16) in ROOFLINE.items():
    rows.append(f"| {gpu} roofline: ~{tf32:,} restart-steps/s TF32, ~{bf16:,} bf16 (1024) | "
                f"{NO_GPU if cpu else 'see the table above'} | {'-' if cpu else 'compare'} |")
  rows.append(f"| >= 10x the reference's best restart-steps/s on the same GPU | "
              f"{NO_GPU if cpu else 'see ratios'} | - |")
  big = [(m, r) for m in results.get("memory") or [] if "error" not in m and
         m["resolution"] == 1024 for r in m["rows"] if r["restarts"] >= 128]
  est = "; ".join(f"{variant_name((r['dtype'], r['remat']))} x{r['restarts']}{_groups_suffix(r)}: "
                  f"{(r['temp_size_in_bytes'] + r['argument_size_in_bytes']) / 1e9:.0f} GB"
                  for _, r in big)
  fits = [r for _, r in big if r["temp_size_in_bytes"] + r["argument_size_in_bytes"] <= 80e9]
  status = "-" if not big else (f"fits ({len(fits)} of {len(big)} variants) by XLA:{'CPU' if cpu else 'device'} "
                                "buffer assignment" if fits else
                                f"does NOT fit by XLA:{'CPU' if cpu else 'device'} buffer assignment")
  measured = "; ".join(x for x in (NO_GPU if cpu else "", est and "compiled program size: " + est) if x)
  rows.append(f"| >= 128 restarts at 1024 on 80 GB | {measured or '-'} | {status} |")
  comp = [r for r in results["runs"] if "error" not in r and r.get("side") == "pulse-jax"
          and r["resolution"] == 1024]
  if comp:
    worst = max(r["compile_s"] for r in comp)
    rows.append(f"| compile < 60 s at 1024 | {'CPU: ' if cpu else ''}max {worst:.1f} s over "
                f"{len(comp)} programs{'; GPU ' + NO_GPU if cpu else ''} | "
                f"{'met on CPU' if worst < 60 else 'NOT met'} |")
  for res in sorted({x["resolution"] for x in rat}, reverse=True):
    xs = [x for x in rat if x["resolution"] == res and x["variant"] == "pulse-jax f32"]
    if not xs:
      continue
    desc = ", ".join(f"x{x['restarts']}: {x['speedup_wall']:.2f}x wall / "
                     f"{x['speedup_cpu_time']:.2f}x CPU-time" for x in xs)
    ok = all(x["speedup_wall"] >= 1 for x in xs)
    rows.append(f"| {'CPU' if cpu else 'device'}: at least as fast per restart-step as the "
                f"reference at {res} (f32) | {desc} | {'met' if ok else 'NOT met'} |")
  return rows


def _parity_md(p: dict | None) -> list[str]:
  if not p:
    return ["Not run (needs torch and `--reference_dir`)."]
  if "error" in p:
    return [f"Failed: {p['error']}"]
  fw, s = p["forward"], p["search"]
  rows = [f"- Forward at {p['resolution']} (fmap_base {p['fmap_base']}, fmap_max {p['fmap_max']},"
          f" same random weights via `weights_convert`): max abs diff **{fw['max_abs_diff']:.3g}**"
          f" (mean {fw['mean_abs_diff']:.3g}; image max |ref| {fw['max_abs_reference']:.3g}).",
          f"- Search, {s['steps']} steps from the reference's own starting latent and noise "
          f"(batch 1, reference defaults, LR {s['lr_size']}x{s['lr_size']}): max relative "
          f"difference of the loss traces **{s['max_rel_diff']:.3g}**.", "",
          "| step | " + " | ".join(f"{n} jax | {n} ref" for n in s["traces"]) + " |",
          "|---|" + "---|---|" * len(s["traces"])]
  for i in range(s["steps"]):
    rows.append(f"| {i + 1} | " + " | ".join(
        f"{t['pulse_jax'][i]:.6g} | {t['reference'][i]:.6g}" for t in s["traces"].values()) + " |")
  return rows


def markdown(results: dict) -> str:
  m, v = results["machine"], results["versions"]
  peak = measure.cpu_peak_gflops(m)
  lines = [f"# Benchmark: pulse-jax vs the PyTorch reference ({platform_name(results)}, "
           f"{results['started_utc'][:10]})", "",
           "Command:", "", "```", results["command"], "```", "",
           f"Machine: {m.get('cpu_model')} ({m.get('cpu_affinity')} cores usable, "
           f"{m.get('mem_total_gib')} GiB), load average at start {m.get('load_avg')}"
           + (f"; fp32 peak estimate {peak:.0f} GFLOP/s (AVX2 FMA)" if peak else "") + ".",
           *([f"**pulse-jax was patched in memory by `{results['flags']['jax_patch']}` "
              "(`--jax_patch`): these are not the numbers of the library as committed.**"]
             if results["flags"].get("jax_patch") else []),
           "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
           f"Reference: {results.get('reference_status')}"
           + (f" (files sha256 {results['reference']['files_sha256'][:12]}, commit "
              f"{results['reference'].get('git_commit') or 'unknown'})"
              if results.get("reference") else "") + ".", "",
           "A restart-step is one search step of one restart (forward + backward to the latent "
           "and noise + update). Timed after compiling and a warm-up chunk; each configuration "
           "in a fresh process (peak RSS is that process's, weights and compiler included). "
           "`vs ref (CPU s)` compares CPU-seconds per restart-step, which is less sensitive than "
           "wall time to other load on a shared machine. GFLOP/s uses XLA's HLO flop count.", "",
           "## Throughput and memory", ""]
  lines += _run_table(results)
  mem = _memory_md(results)
  if mem:
    lines += ["", "## Compiled memory for many restarts (compile only)", "",
              "XLA's buffer assignment of the search program (`memory_analysis()`), on this "
              "machine's backend; nothing that large is allocated.", ""] + mem
  lines += ["", "## Parity (same random weights)", ""] + _parity_md(results.get("parity"))
  lines += ["", "## Targets", ""] + _targets(results)
  slopes = memory_slopes(results)
  if slopes:
    lines += ["", "XLA temp memory per restart (from the restart sweep):", ""]
    lines += [f"- {s['resolution']} {s['variant']}: {s['temp_per_restart_gib']:.2f} GiB per "
              f"restart + {s['temp_fixed_gib']:.2f} GiB fixed" for s in slopes]
  return "\n".join(lines) + "\n"


def summary(results: dict, md_relpath: str) -> str:
  """The README-ready block: headline ratios, parity, targets."""
  lines = [f"Measured {results['started_utc'][:10]} on {results['machine'].get('cpu_model')} "
           f"({results['machine'].get('cpu_affinity')} cores), details and command in "
           f"[{md_relpath}]({md_relpath}).", "",
           "| res | restarts | reference restart-steps/s | pulse-jax f32 restart-steps/s | "
           "speed-up (wall) | speed-up (CPU time) | pulse-jax compile s |", "|---|---|---|---|---|---|---|"]
  by = _by_key(results)
  for x in ratios(results):
    if x["variant"] != "pulse-jax f32":
      continue
    r = by[(x["resolution"], x["restarts"], x["variant"])]
    lines.append(f"| {x['resolution']} | {x['restarts']} | {x['reference']:.3g} | {x['jax']:.3g} | "
                 f"{x['speedup_wall']:.2f}x | {x['speedup_cpu_time']:.2f}x | {r['compile_s']:.1f} |")
  p = results.get("parity")
  if p and "error" not in p:
    lines += ["", f"Parity on the same random weights at {p['resolution']}: forward max abs diff "
              f"{p['forward']['max_abs_diff']:.3g}; {p['search']['steps']}-step search from "
              f"identical starts, loss traces within {p['search']['max_rel_diff']:.2g} relative."]
  lines += ["", "Targets:", ""] + _targets(results)
  return "\n".join(lines)


def roofline(device_kind: str | None, dtype: str, resolution: int,
             flops_per_restart_step: float | None = None,
             machine: dict | None = None) -> tuple[float, str] | None:
  """(restart-steps/s at the hardware limit, what it rests on), or None where unknown.

  H100 / H200 at 1024: the issue's numbers (TF32 for float32, bf16). A CPU: the fp32 peak
  estimate of `measure.cpu_peak_gflops` over the given flop count per restart-step (XLA's).
  """
  kind = (device_kind or "").upper()
  for gpu, (tf32, bf16) in ROOFLINE.items():
    if gpu in kind and resolution == 1024:
      unit = "bf16" if dtype == "bfloat16" else "TF32"
      return (bf16 if dtype == "bfloat16" else tf32), (
          f"{gpu} {unit}: {bf16 if dtype == 'bfloat16' else tf32:,} restart-steps/s at "
          f"~{GFLOP_PER_STEP_1024} GFLOP per restart-step")
  peak = measure.cpu_peak_gflops(machine) if machine and kind.startswith("CPU") else None
  if peak and flops_per_restart_step:
    return peak * 1e9 / flops_per_restart_step, (
        f"CPU fp32 peak estimate {peak:.0f} GFLOP/s over XLA's flop count per restart-step")
  return None


def update_readme(path: str, block: str, start: str = SUMMARY_START, end: str = SUMMARY_END,
                  heading: str = "## Latest results") -> None:
  """Replaces the text between the `start` and `end` markers of `path` by `block` (appended
  under `heading` when the markers are missing); the rest of the file is left as it is."""
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
  new = f"{start}\n{block}\n{end}"
  if start in text and end in text:
    a = text.index(start)
    b = text.index(end) + len(end)
    text = text[:a] + new + text[b:]
  else:
    text = text.rstrip("\n") + f"\n\n{heading}\n\n" + new + "\n"
  with open(path, "w") as f:
    f.write(text)


# ------------------------------------------------------------- gpu_check: one GPU session's run

TARGET_ROOFLINE_FRACTION = 0.5
TARGET_SPEEDUP = 10.0
TARGET_RESTARTS = 256
TARGET_COMPILE_S = 60.0
TINY_STATUS = "not measured (tiny CPU configuration; the targets are for a GPU at 1024)"


def _ok(results: dict, side: str) -> list[dict]:
  return [r for r in results["runs"] if "error" not in r and r.get("side") == side]


def _peak_device(r: dict) -> float | None:
  return _gib((r.get("device_memory") or {}).get("peak_bytes_in_use"))


def _best(rows: list[dict]) -> dict | None:
  return max(rows, key=lambda r: r["restart_steps_per_s"]) if rows else None


def _where(r: dict) -> str:
  g = r.get("micro_batches") or 1
  return f"x{r['restarts']}" + (f" in {g} micro-batches" if g > 1 else "")


def _not_measured(results: dict, what: str) -> str:
  """'not measured' with the reasons the results give (skips, errors, missing reference)."""
  why = [s["reason"] for s in results.get("skipped") or [] if what in s["what"]]
  why += [f"failed: {r['error'][:60]}" for r in results["runs"]
          if "error" in r and what in r.get("variant", "")]
  return "not measured" + (f" ({'; '.join(sorted(set(why))[:3])})" if why else "")


def gpu_targets(results: dict) -> list[dict]:
  """The issue's GPU targets: [{'target', 'measured', 'status'}], status met / not met / not
  measured (a tiny CPU run measures the numbers but marks every target not measured)."""
  jax_rows, refs = _ok(results, "pulse-jax"), _ok(results, "reference")
  dtypes = sorted({r["dtype"] for r in jax_rows}, key=lambda d: d != "float32")
  best = {d: _best([r for r in jax_rows if r["dtype"] == d]) for d in dtypes}
  out = []

  roof = {d: _best([r for r in jax_rows if r["dtype"] == d and r.get("pct_of_roofline")])
          for d in dtypes}
  roof = {d: r for d, r in roof.items() if r}
  if roof:
    measured = "; ".join(
        f"{d}: {r['restart_steps_per_s']:.4g} restart-steps/s ({_where(r)}) = "
        f"{_pct(r['pct_of_roofline'])} of {r['roofline_basis']}" for d, r in roof.items())
    top = max(r["pct_of_roofline"] for r in roof.values())
    status = "met" if top >= TARGET_ROOFLINE_FRACTION else "not met"
  else:
    kind = (results.get("device") or {}).get("device_kind")
    measured = (f"no roofline known for {kind!r} at this resolution" if jax_rows
                else "no pulse-jax run")
    status = "not measured" if jax_rows else _not_measured(results, "pulse-jax")
  out.append({"target": f"pulse-jax at >= {TARGET_ROOFLINE_FRACTION:.0%} of the roofline",
              "measured": measured, "status": status})

  ref = _best(refs)
  if ref and best:
    measured = f"reference best {ref['restart_steps_per_s']:.4g} restart-steps/s (batch " \
               f"{ref['restarts']}); " + "; ".join(
                   f"pulse-jax {d} best {r['restart_steps_per_s']:.4g} ({_where(r)}): "
                   f"{r['restart_steps_per_s'] / ref['restart_steps_per_s']:.1f}x"
                   for d, r in best.items())
    top = max(r["restart_steps_per_s"] for r in best.values()) / ref["restart_steps_per_s"]
    status = "met" if top >= TARGET_SPEEDUP else "not met"
  else:
    measured = "-" if ref or best else "neither side measured"
    status = (_not_measured(results, "reference") if not ref else
              _not_measured(results, "pulse-jax"))
    if not ref and results.get("reference_status") and not results.get("reference"):
      status = f"not measured ({results['reference_status']})"
  out.append({"target": f">= {TARGET_SPEEDUP:.0f}x the reference's best batch on the same device",
              "measured": measured, "status": status})

  big = [r for r in jax_rows if r["restarts"] >= TARGET_RESTARTS]
  failed = [r for r in results["runs"] if "error" in r and r.get("side") == "pulse-jax"
            and r.get("restarts", 0) >= TARGET_RESTARTS]
  parts = [f"{r['dtype']} {_where(r)}: {r['restart_steps_per_s']:.4g} restart-steps/s"
           + (f", peak {_peak_device(r):.1f} GiB" if _peak_device(r) is not None else "")
           + ("" if r.get("finite", True) else ", NON-FINITE loss") for r in big]
  parts += [f"{r['dtype']} x{r['restarts']}: failed: {r['error'][:80]}" for r in failed]
  if big:
    status = "met"
  elif failed:
    status = "not met"
  else:
    most = max((r["restarts"] for r in jax_rows), default=None)
    parts = [f"largest measured: x{most}"] if most else []
    status = _not_measured(results, f"x{TARGET_RESTARTS}")
  out.append({"target": f"{TARGET_RESTARTS} restarts per device (1024)",
              "measured": "; ".join(parts) or "-", "status": status})

  if jax_rows:
    worst = max(jax_rows, key=lambda r: r["compile_s"])
    choice = [r["micro_batches_choice_s"] for r in jax_rows if r.get("program") == "driver chunk"]
    measured = (f"max {worst['compile_s']:.1f} s over {len(jax_rows)} programs ({worst['dtype']} "
                f"{_where(worst)})" + (f"; the automatic micro-batch choice took up to "
                                       f"{max(choice):.1f} s (its compiles included)"
                                       if choice else ""))
    status = "met" if worst["compile_s"] < TARGET_COMPILE_S else "not met"
  else:
    measured, status = "-", _not_measured(results, "pulse-jax")
  out.append({"target": f"compile < {TARGET_COMPILE_S:.0f} s (1024)", "measured": measured,
              "status": status})
  if results.get("tiny"):
    for t in out:
      t["status"] = TINY_STATUS
  return out


def _pct(p: float | None) -> str:
  return "-" if p is None else f"{p:.1%}" if p >= 0.001 else f"{100 * p:.2g}%"


def gpu_table(results: dict) -> list[str]:
  """One row per measured or failed configuration, with the '% of roofline' column."""
  refs = _ok(results, "reference")
  ref_best = max((r["restart_steps_per_s"] for r in refs), default=None)
  rows = ["| what | restarts (batch) | micro-batches | restart-steps/s | % of roofline | "
          "step s (median) | compile s | peak device GiB | vs reference best |",
          "|" + "---|" * 9]
  order = lambda r: ((0, "") if r.get("side") == "reference" else
                     (1, r.get("dtype") != "float32", r.get("dtype", "")), r.get("restarts", 0))
  for r in sorted(results["runs"], key=order):
    head = f"| {r.get('variant', '?')} | {r.get('restarts', '-')} |"
    if "error" in r:
      rows.append(f"{head} failed: {r['error'][:100]} |" + " |" * 6)
      continue
    jax_side = r["side"] == "pulse-jax"
    pct = r.get("pct_of_roofline")
    rows.append(
        f"{head} {r.get('micro_batches', 1) if jax_side else '-'} | "
        f"{r['restart_steps_per_s']:.4g}{'' if r.get('finite', True) else ' (non-finite!)'} | "
        f"{_pct(pct)} | {r['median_step_s']:.3g} | "
        f"{_f(r.get('compile_s') if jax_side else None, '.1f')} | {_f(_peak_device(r), '.2f')} | "
        f"{_f(r['restart_steps_per_s'] / ref_best if ref_best else None, '.2f')} |")
  return rows


def _gpu_device_line(results: dict) -> str:
  d = results.get("device") or {}
  tf32 = d.get("tf32_in_use")
  limit = _gib(d.get("bytes_limit"))
  return (f"Device: {d.get('platform')}:{d.get('device_kind')} (x{d.get('device_count')}, "
          + (f"memory limit {limit:.1f} GiB" if limit else "no memory limit reported")
          + f"); jax_default_matmul_precision="
          f"{d.get('jax_default_matmul_precision')!r}: float32 matmuls and convolutions "
          f"{'use TF32' if tf32 else 'are full float32' if tf32 is not None else 'not probed'}"
          f" (default vs highest precision, relative difference: matmul "
          f"{_f(d.get('matmul_rel_diff'), '.2g')}, conv {_f(d.get('conv_rel_diff'), '.2g')}).")


def _gpu_parity_line(p: dict | None) -> str:
  if not p:
    return "Parity: not run."
  if "error" in p:
    return f"Parity: failed: {p['error'][:200]}"
  fw = p["forward"]
  rng = fw.get("range_reference") or 2 * fw["max_abs_reference"]
  line = (f"Parity of one forward at {p['resolution']} (same weights and inputs, reference on "
          f"{p.get('reference_device')}): max abs diff {fw['max_abs_diff']:.3g} over an output "
          f"range of {rng:.3g} ({fw['max_abs_diff'] / rng:.2g} of the range).")
  if p.get("search"):
    line += (f" {p['search']['steps']}-step search from identical starts: loss traces within "
             f"{p['search']['max_rel_diff']:.2g} relative.")
  return line


def _gpu_targets_md(results: dict) -> list[str]:
  return ["| target | measured | status |", "|---|---|---|"] + [
      f"| {t['target']} | {t['measured']} | {t['status']} |" for t in gpu_targets(results)]


def gpu_markdown(results: dict) -> str:
  s, v = results["settings"], results["versions"]
  lines = [f"# GPU check: pulse-jax vs the PyTorch reference ({results['device_name']}, "
           f"{results['started_utc'][:10]})", ""]
  if results.get("tiny"):
    lines += ["**Tiny configuration (a CPU run for tests): not the GPU measurement.**", ""]
  lines += ["Command:", "", "```", results["command"], "```", "", _gpu_device_line(results),
            f"Network: resolution {s['resolution']}, fmap_base {s['fmap_base']}, fmap_max "
            f"{s['fmap_max']}, random weights (the same on both sides), LR target "
            f"{s['lr_size']}x{s['lr_size']}; {s['chunk_size']} steps per chunk, "
            f"{s['warmup_chunks']} warm-up chunk(s), {s['timed_steps']} timed steps.",
            "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
            f"Reference: {results.get('reference_status')}"
            + (f" (files sha256 {results['reference']['files_sha256'][:12]}, commit "
               f"{results['reference'].get('git_commit') or 'unknown'})"
               if results.get("reference") else "") + ".",
            f"Time budget: {results['budget']['budget_s']:.0f} s, used "
            f"{results['budget'].get('used_s', 0):.0f} s.", "",
            "A restart-step is one search step of one restart (forward, backward to the latent "
            "and noise, update). pulse-jax: each configuration in a fresh process, compiled ahead "
            "of time (the compile time apart), micro-batches chosen from the device's memory; "
            "peak device memory is `memory_stats()['peak_bytes_in_use']` (torch's "
            "`max_memory_allocated` for the reference). % of roofline: restart-steps/s over "
            "the roofline's restart-steps/s (" + "; ".join(sorted({
                r["roofline_basis"] for r in results["runs"] if r.get("roofline_basis")}) or
                ["none known for this device"]) + ").", "", "## Throughput and memory", ""]
  lines += gpu_table(results)
  if results.get("skipped"):
    lines += ["", "Skipped: " + "; ".join(f"{x['what']} ({x['reason']})"
                                          for x in results["skipped"]) + "."]
  lines += ["", "## Parity", "", _gpu_parity_line(results.get("parity")), "", "## Targets", ""]
  lines += _gpu_targets_md(results)
  return "\n".join(lines) + "\n"


def gpu_summary(results: dict, md_relpath: str) -> str:
  """The block between the gpu-table markers of the top-level README.md."""
  d = results.get("device") or {}
  lines = [f"GPU check {results['started_utc'][:10]} on {d.get('device_kind')} "
           f"(`experiments/gpu_check.sh`{', tiny configuration' if results.get('tiny') else ''};"
           f" details: [{os.path.basename(md_relpath)}]({md_relpath})). "
           f"jax_default_matmul_precision={d.get('jax_default_matmul_precision')!r}, TF32 in "
           f"use: {'yes' if d.get('tf32_in_use') else 'no'}.", ""]
  lines += gpu_table(results)
  if results.get("skipped"):
    lines += ["", f"Skipped for the time budget or after a failure: "
              f"{', '.join(x['what'] for x in results['skipped'])}."]
  lines += ["", _gpu_parity_line(results.get("parity")), ""] + _gpu_targets_md(results)
  return "\n".join(lines)
