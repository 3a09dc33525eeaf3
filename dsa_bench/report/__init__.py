"""Reports of runs: an HTML page with plots, scaling fits and the crossover; and run-to-run comparison.

Entry points:
  build_report(run_dir, out_root=None) -> Path of RUN_DIR/report/index.html (OUT_ROOT/<scenario>/<run-id>/ if given)
  compare_runs(run_a, run_b) -> DataFrame, one row per matching point with ratio and verdict
  compare_html(df, path) -> Path of an HTML page of that comparison

The report directory holds index.html and one PNG per plot beside it (relative links), plus the
fit and crossover tables as CSV; it needs no JavaScript and nothing from the network.
"""
from __future__ import annotations

import json
import math
import shutil
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dsa_bench.crossover import fmt_context
from dsa_bench.report.compare import VERDICT_RULE, compare_runs, display_rows, regressions
from dsa_bench.report.load import STAGE_LABELS, STAGES, Run, check_report_target, load_run, topk_label
from dsa_bench.safe_io import building_dir, write_json, write_text

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

__all__ = ["build_report", "compare_runs", "compare_html", "report_dir_for"]


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=False, lstrip_blocks=False)


# A report's default place: beside the run's files, wherever the run is.
REPORT_SUBDIR = "report"


def report_dir_for(run: Run, out_root: Optional[Path]) -> Path:
    """OUT_ROOT/<scenario>/<run-id>/ (how the committed reports/ tree is laid out), or, without an
    OUT_ROOT, the run directory's report/."""
    if out_root is None:
        return run.dir / REPORT_SUBDIR
    return Path(out_root) / run.scenario_name / run.run_id


def build_report(run_dir: Path, out_root: Optional[Path] = None) -> Path:
    """Write the report (index.html and its PNGs) into report_dir_for(run, out_root); return index.html."""
    run = load_run(Path(run_dir))
    final = check_report_target(report_dir_for(run, out_root), run.dir)
    # Built in a temporary folder beside the final one and renamed: an error (or a kill) never leaves a
    # half report, and a re-made report keeps no old plot the run no longer supports.
    with building_dir(final) as out:
        _write_report(run, out)
    return final / "index.html"


def _write_report(run: Run, out: Path) -> None:
    from dsa_bench.report import ceilings, plots
    from dsa_bench.report.crossover import METHOD as crossover_method
    from dsa_bench.report.crossover import crossover_table
    from dsa_bench.report.fit import RULE, fit_table

    plot_entries = []
    for name, (fn, title, question) in plots.PLOTS.items():
        notes: list[str] = []
        try:
            path = fn(run, out, notes)
        except Exception as exc:  # noqa: BLE001 - one broken plot must not cost the whole report
            path = None
            notes.append(f"the plot could not be drawn ({type(exc).__name__}: {exc})")
        entry = {"name": name, "title": title, "question": question, "notes": notes, "file": None}
        if path is not None:
            w, h = _png_size(path)
            entry.update(file=path.name, width=w, height=h)
        plot_entries.append(entry)

    from dsa_bench.report.answer import TOKENS_NOTE, answer_sentences, pricing_text
    from dsa_bench.report.headline import CALL_LATENCY_LABEL, summary_json

    # A cost-model-only run (paper Figure 3) timed nothing: open with its cost figure, leave out
    # the sections that would only say "not available", and no "not GPU timings" banner.
    cost_only = run.results.empty and run.cost_curves is not None
    if cost_only:
        plot_entries = sorted((e for e in plot_entries if e["file"]), key=lambda e: e["name"] != "cost_vs_position")

    summary = summary_json(run)
    write_json(out / "summary.json", summary)
    ok_all = run.results[(run.results["status"] == "ok") & run.results["latency_ms"].gt(0)]
    fits = fit_table(ok_all)
    cross = crossover_table(run.ok("total"))
    _write_csv(fits.drop(columns=["fit"], errors="ignore"), out / "scaling_fits.csv")
    _write_csv(cross, out / "crossover.csv")
    cost_png = None
    if (run.dir / "cost_curves.png").exists():
        shutil.copyfile(run.dir / "cost_curves.png", out / "cost_model_curves.png")
        cost_png = "cost_model_curves.png"

    from dsa_bench import __version__

    html = _env().get_template("report.html.j2").render(
        scenario_name=run.scenario_name, run_id=run.run_id,
        subtitle=subtitle(run),
        is_gpu=run.is_gpu, timing_note=run.meta.get("timing_note") or "", cost_only=cost_only,
        load_notes=run.notes + _gpu_kind_notes(run), findings=_findings(run, fits, cross),
        headlines=answer_sentences(summary), has_latency=bool(summary["headlines"]), tokens_note=TOKENS_NOTE,
        call_latency_label=CALL_LATENCY_LABEL,
        cost_pricing=pricing_text(summary["full_model_cost"]) if summary.get("full_model_cost") else "",
        scenario_rows=_scenario_rows(run), model_rows=_model_rows(run), env_rows=_env_rows(run),
        plots=plot_entries, ceilings_text=ceilings.explain(run.env.get("gpu_name"), run.device),
        cost_png=cost_png, **_paper_table(run),
        crossover_method=crossover_method,
        crossover_rows=_crossover_rows(cross), fit_rule=RULE, fit_rows=_fit_rows(fits),
        result_cols=RESULT_DISPLAY_COLS,
        total_cols=[c for c in RESULT_DISPLAY_COLS if c != "stage"],
        total_rows=_result_rows(run.results[run.results["stage"] == "total"], drop=("stage",)),
        stage_rows=_result_rows(run.results[run.results["stage"].isin(STAGES)]),
        run_dir=str(run.dir), version=__version__,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    (out / "index.html").write_text(html, encoding="utf-8")


def compare_html(df: pd.DataFrame, path: Path, fail_on_regression: Optional[float] = None) -> Path:
    """Write the comparison (from compare_runs) as a self-contained HTML page."""
    path = Path(path)
    rows = display_rows(df)
    failing = set(regressions(df, fail_on_regression).index) if fail_on_regression is not None else set()
    for i, r in zip(df.index, rows):
        r["fail"] = i in failing
    counts = [(v, int(n)) for v, n in df["verdict"].value_counts().items()] if len(df) else []
    blank = {k: "-" for k in ("scenario", "run_id", "device", "gpu", "commit", "torch", "triton", "start")}
    html = _env().get_template("compare.html.j2").render(
        a=df.attrs.get("meta_a", blank), b=df.attrs.get("meta_b", blank), run_a=df.attrs.get("run_a", "?"),
        run_b=df.attrs.get("run_b", "?"), notes=df.attrs.get("notes", []), counts=counts, rows=rows,
        threshold=fail_on_regression, n_fail=len(failing), rule=VERDICT_RULE,
        crossovers=df.attrs.get("crossovers") or [],
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, html)  # whole or not at all


# --- helpers --------------------------------------------------------------------------------------

def _paper_table(run: Run) -> dict[str, Any]:
    """The cost curves against the paper's points (cost_calibration.json): the run's curves and, for a
    measured run, the roofline model beside them, each with its relative error."""
    path = run.dir / "cost_calibration.json"
    if not path.exists():
        return {"paper_rows": [], "paper_cols": [], "paper_note": ""}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"paper_rows": [], "paper_cols": [], "paper_note": ""}
    main, model = info.get("vs_paper"), info.get("model_vs_paper")
    if not isinstance(main, list):
        return {"paper_rows": [], "paper_cols": [], "paper_note": str(main or "")}
    src = info.get("source", "roofline")
    cols = [src] + (["roofline model"] if isinstance(model, list) else [])
    rows = []
    for i, r in enumerate(main):
        vals = [(f"{r['model_usd']:.4g}", f"{r['rel_err']:+.0%}")]
        if isinstance(model, list) and i < len(model):
            vals.append((f"{model[i]['model_usd']:.4g}", f"{model[i]['rel_err']:+.0%}"))
        rows.append({"phase": r["phase"], "model": r["model"], "position": fmt_context(r["position_tokens"]) if r["position_tokens"] else "0",
                     "paper": f"{r['paper']:.4g}", "vals": vals})
    note = (f"USD per million tokens on {info.get('gpu')} at {info.get('gpu_hour_usd')} USD/GPU-hour; error = "
            "curve / paper - 1. The dense (V3.1-Terminus) curve is calibrated to the paper, so only the DSA "
            "(V3.2-Exp) rows test the model.")
    return {"paper_rows": rows, "paper_cols": cols, "paper_note": note}


def _png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.6g")


def _num(v: Any, fmt: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(f) else format(f, fmt)


def _tokens(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return fmt_context(f) if math.isfinite(f) else "-"


def _range_text(r: str) -> str:
    """'8192-65536' (the CSV files' machine form) -> '8K-64K' (the page's notation)."""
    try:
        return "-".join(fmt_context(float(x)) for x in str(r).split("-"))
    except ValueError:
        return str(r)


def subtitle(run: Run) -> str:
    """What this run measured, from its resolved scenario (a CPU run's own sweep, not the GPU one its
    scenario's description talks about)."""
    s = run.meta.get("scenario") or {}
    sw = s.get("sweep") or {}
    model = s.get("model") or {}
    name = model.get("name", "?") if isinstance(model, dict) else str(model)
    if run.results.empty and run.cost_curves is not None:
        return f"cost model only (nothing timed), {name}"
    ctx = sorted(int(c) for c in sw.get("context") or [])
    parts = [str(s.get("phase", "?"))]
    if ctx:
        parts.append("context " + (fmt_context(ctx[0]) if len(ctx) == 1 else f"{fmt_context(ctx[0])}-{fmt_context(ctx[-1])}"))
    if sw.get("topk") and any(f == "dsa" for f in run.results.get("family", [])):
        parts.append("k = " + ", ".join(map(str, sw["topk"])))
    if sw.get("batch"):
        parts.append("batch " + ", ".join(map(str, sw["batch"])))
    parts.append(f"{name} model")
    parts.append(f"on {run.env.get('gpu_name')}" if run.is_gpu else "on the CPU (the scenario's cpu: section)")
    return ", ".join(parts)


def _bytes(v: Any) -> str:
    from dsa_bench.report.plots import fmt_bytes

    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return fmt_bytes(f) if math.isfinite(f) and f > 0 else "-"


def _findings(run: Run, fits: pd.DataFrame, cross: pd.DataFrame) -> list[str]:
    out = []
    for _, c in cross.iterrows():
        out.append(f"{c['dsa_impl']} vs best dense ({c['dense_impls']}), {c['phase']}, batch {c['batch']}, "
                   f"k={c['topk']}: {c['message']}.")
    if len(fits):
        refs = set(run.results.loc[run.results["is_reference"], "implementation"])
        tot = fits[(fits["stage"] == "total") & ~fits["implementation"].isin(refs)]
        for _, f in tot.iterrows():
            k = f" k={topk_label(f['topk'])}" if pd.notna(f["topk"]) else ""
            se = (" (uncertainty unknown)" if not math.isfinite(f["stderr"]) else
                  f" ± {f['stderr']:.2f}" if f["stderr"] >= 0.005 else " ± <0.01")
            out.append(f"{f['implementation']}{k} ({f['phase']}, batch {int(f['batch'])}): latency ∝ "
                       f"L^{f['exponent']:.2f}{se} over contexts {_range_text(f['context_range'])}.")
    r = run.results
    bad = r[(r["stage"] == "total") & r["status"].isin(["oom", "wrong", "error"])]
    if len(bad):
        out.append(f"{len(bad)} point(s) failed ({', '.join(f'{n} {s}' for s, n in bad['status'].value_counts().items())}); "
                   "see the results table for reasons.")
    return out


def _scenario_rows(run: Run) -> list[tuple[str, str]]:
    s = run.meta.get("scenario") or {}
    sw = s.get("sweep") or {}
    m = s.get("measure") or {}
    rows = [
        ("name", s.get("name", run.scenario_name)), ("description (as written)", s.get("description") or "-"),
        ("file", run.meta.get("scenario_file") or "-"),
        ("phase", s.get("phase", "-")), ("decode tokens", s.get("decode_tokens", "-")),
        ("implementations", ", ".join(s.get("implementations", []))),
        ("context", ", ".join(map(fmt_context, sw.get("context", [])))), ("top-k", ", ".join(map(str, sw.get("topk", [])))),
        ("batch", ", ".join(map(str, sw.get("batch", [])))),
    ]
    if sw.get("zip"):
        rows.append(("zipped axes", "; ".join(" + ".join(g) for g in sw["zip"])))
    if m:
        rows.append(("dtype / indexer dtype", f"{m.get('dtype', '-')} / {m.get('indexer_dtype', '-')}"))
        rows.append(("samples", f"{m.get('min_samples', '-')}-{m.get('max_samples', '-')}, "
                                f"{m.get('min_time_ms', '-')}-{m.get('max_time_ms', '-')} ms, warm-up {m.get('warmup_ms', '-')} ms"))
        rows.append(("L2 flushed / checked / stages", f"{m.get('flush_l2')} / {m.get('check')} / {m.get('stages')}"))
    if run.gpu_hour_usd is not None:
        rows.append(("GPU price", f"${run.gpu_hour_usd:g} per GPU hour"))
    rows += [("status", run.meta.get("status", "-")), ("start", run.meta.get("start_time") or "-"),
             ("end", run.meta.get("end_time") or "-")]
    return [(k, str(v)) for k, v in rows]


def _model_rows(run: Run) -> list[tuple[str, str]]:
    m = (run.meta.get("scenario") or {}).get("model") or {}
    if isinstance(m, str):  # a preset's name (a run.json written by hand or by an older version)
        return [("preset", m)]
    return [(k, str(v)) for k, v in m.items()]


def _clocks(c: Any) -> str:
    if not c:
        return "-"
    if isinstance(c, dict):
        parts = []
        if "sm_mhz" in c:
            parts.append(f"SM {c['sm_mhz']} MHz" + (f" (max {c['sm_max_mhz']})" if c.get("sm_max_mhz") else ""))
        if "mem_mhz" in c:
            parts.append(f"memory {c['mem_mhz']} MHz" + (f" (max {c['mem_max_mhz']})" if c.get("mem_max_mhz") else ""))
        return ", ".join(parts) or str(c)
    return str(c)


def _env_rows(run: Run) -> list[tuple[str, str]]:
    e = run.env
    git = e.get("git") or {}
    commit = git.get("commit") or "-"
    if git.get("dirty"):
        commit += " (uncommitted changes)"
    rows = [
        ("device", run.device),
        ("GPU", e.get("gpu_name") or "none (CPU run)"),
    ]
    if e.get("gpu_name"):
        rows += [
            ("SM count", e.get("sm_count", "-")), ("compute capability", e.get("compute_capability", "-")),
            ("GPU memory", _bytes(e.get("gpu_memory_bytes"))), ("L2 cache", _bytes(e.get("l2_cache_bytes"))),
            ("clocks (start of run)", _clocks(e.get("clocks") or run.meta.get("clocks_start"))),
            ("clocks (end of run)", _clocks(run.meta.get("clocks_end"))),
            ("power limit", f"{e['power_limit_w']:g} W" if e.get("power_limit_w") else "-"),
            ("temperature at start", f"{e['temperature_c']} °C" if e.get("temperature_c") is not None else "-"),
            ("driver / CUDA", f"{e.get('driver_version', '-')} / {e.get('cuda_version', '-')}"),
        ]
        if e.get("nvml_error"):
            rows.append(("NVML", e["nvml_error"]))
    rows += [
        ("torch", e.get("torch", "-")), ("triton", e.get("triton", "-")), ("python", e.get("python", "-")),
        ("Triton interpreter", "yes" if e.get("triton_interpret") else "no"),
        ("git commit", commit), ("host", e.get("host", "-")), ("platform", e.get("platform", "-")),
        ("CPU", f"{e.get('cpu', '-')} ({e.get('cpu_count', '?')} cores)"),
        ("command", " ".join(e.get("argv") or []) or "-"),
    ]
    return [(k, str(v)) for k, v in rows]


def _crossover_rows(cross: pd.DataFrame) -> list[dict[str, str]]:
    from dsa_bench.crossover import fmt_context

    out = []
    for _, c in cross.iterrows():
        bracket = "-"
        if math.isfinite(c["bracket_low"]):
            bracket = f"{fmt_context(c['bracket_low'])}-{fmt_context(c['bracket_high'])}"
            if c["refinement_points"]:
                bracket += f" ({c['refinement_points']} refinement point{'s' if c['refinement_points'] > 1 else ''})"
        out.append({"dsa_impl": c["dsa_impl"], "dense_impls": c["dense_impls"], "phase": c["phase"],
                    "batch": str(c["batch"]), "topk": c["topk"],
                    "crossover": f"~{fmt_context(c['crossover_context'])} (log-log interpolation)"
                    if math.isfinite(c["crossover_context"]) else "none in range",
                    "bracket": bracket, "message": c["message"]})
    return out


def _fit_rows(fits: pd.DataFrame) -> list[dict[str, str]]:
    out = []
    for _, f in fits.iterrows():
        out.append({"implementation": f["implementation"], "stage": f["stage"], "phase": f["phase"],
                    "batch": str(int(f["batch"])), "topk": topk_label(f["topk"]),
                    "exponent": f"{f['exponent']:.3f}",
                    "stderr": f"{f['stderr']:.3f}" if math.isfinite(f["stderr"]) else "unknown (2 points)",
                    "n": f"{f['n_used']} / {f['n_total']}", "range": _range_text(f["context_range"]), "flag": f["flag"] or ""})
    return out


RESULT_DISPLAY_COLS = ["implementation", "stage", "phase", "batch", "context", "top-k", "status", "median ms",
                       "IQR ms", "samples", "TFLOP/s", "GB/s", "$ / M tokens", "peak memory", "KV cache",
                       "check, rel. err.", "reason"]


def _gpu_kinds(df: pd.DataFrame) -> list[str]:
    """GPU kinds that measured the rows (Ray runs record `host/gpu` in the worker column)."""
    if "worker" not in df:
        return []
    w = df["worker"].astype(str)
    return sorted({x.split("/", 1)[-1] for x in w if x and x != "nan"})


def _gpu_kind_notes(run: Run) -> list[str]:
    kinds = _gpu_kinds(run.results)
    if len(kinds) <= 1:
        return []
    return [f"Rows of this run were measured on {len(kinds)} GPU kinds ({', '.join(kinds)}): compare points "
            "within one kind; the results table groups rows by the GPU that measured them."]


def _result_rows(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The results table's rows: one list of (text, is_number) cells per row, in RESULT_DISPLAY_COLS order
    less the columns in `drop`."""
    rows = []
    multi = len(_gpu_kinds(df)) > 1
    keys = ["phase", "batch", "context", "implementation", "topk"]
    if multi:  # group by the GPU kind that measured each row
        df = df.assign(_gpu=df["worker"].astype(str).str.split("/", n=1).str[-1])
        keys = ["_gpu"] + keys
    df = df.sort_values(keys, na_position="first", kind="stable")
    for _, r in df.iterrows():
        iqr = (f"{_num(r['latency_ms_q1'], '.4g')}–{_num(r['latency_ms_q3'], '.4g')}"
               if pd.notna(r["latency_ms_q1"]) else "-")
        check = r["check"] or "-"
        if pd.notna(r["rel_err"]):
            check += f" {r['rel_err']:.1e}"
        ref = " (reference)" if r["is_reference"] else ""
        form = r.get("attention_mode")
        if isinstance(form, str) and form and form != "nan":  # DSA's attention form: sparse MLA or masked MHA
            ref += f" [{STAGE_LABELS.get(form, form)}]"
        if multi:
            ref += f" [{r['_gpu']}]"
        if str(r.get("refinement", "")).strip() not in ("", "nan"):  # added by --refine-crossover
            ref += f" [refinement round {r['refinement']}]"
        cells = [
            (r["implementation"] + ref, False), (r["stage"], False), (r["phase"], False),
            (_num(r["batch"], ".0f"), True), (_tokens(r["context"]), True), (topk_label(r["topk"]), True),
            (r["status"] + (" (throttled)" if str(r.get("throttled", "")).lower() == "true" else ""), False),
            (_num(r["latency_ms"], ".4g"), True), (iqr, True), (_num(r["samples"], ".0f"), True),
            (_num(r["tflops"], ".3g"), True), (_num(r["gbps"], ".4g"), True),
            (_num(r["usd_per_million_tokens"], ".3g"), True), (_bytes(r["peak_mem_bytes"]), True),
            (_bytes(r["kv_cache_bytes"]), True), (check, False), (r["reason"] or "", False),
        ]
        cells = [c for name, c in zip(RESULT_DISPLAY_COLS, cells) if name not in drop]
        css = "bad" if r["status"] in ("oom", "wrong", "error") else ("skip" if r["status"] == "skipped" else "")
        rows.append({"cells": cells, "css": css})
    return rows
