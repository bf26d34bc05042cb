"""Tables and summaries of a benchmark run (pure functions of the results dict)."""
from __future__ import annotations

import os
import re

from experiments import measure

GIB = 2.0**30
SUMMARY_START = "<!-- benchmark-summary:start -->"
SUMMARY_END = "<!-- benchmark-summary:end -->"
# Roofline targets from the issue (restart-steps/s at 1024; ~129 GFLOP per restart-step).
ROOFLINE = {"H100": (1920, 3840), "H200": (2400, 4800)}
GFLOP_PER_STEP_1024 = 129.0
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


def update_readme(path: str, block: str) -> None:
  text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
  new = f"{SUMMARY_START}\n{block}\n{SUMMARY_END}"
  if SUMMARY_START in text and SUMMARY_END in text:
    a = text.index(SUMMARY_START)
    b = text.index(SUMMARY_END) + len(SUMMARY_END)
    text = text[:a] + new + text[b:]
  else:
    text = text.rstrip("\n") + "\n\n## Latest results\n\n" + new + "\n"
  with open(path, "w") as f:
    f.write(text)
