"""A `phase: quality` scenario end to end: train and evaluate (train.run_quality), price each k with the
cost model, write the run directory and its report.

Run directory (results/<scenario>/<run-id>/): run.json (scenario, environment, status),
quality_steps.csv (KL loss per step), quality_evals.csv (recall / overlap / output error per
evaluation step, method and k), quality_summary.csv (the last evaluation with each k's cost),
quality.png and summary.json. The report (the run directory's report/index.html) shows the plot and
the tables.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from dsa_bench.quality.config import QualityConfig
from dsa_bench.safe_io import building_dir, write_json


def equivalent_topk(k: int, cfg: QualityConfig, max_position: int) -> int:
    """The real-model k that selects the same share of the context as k does of the synthetic sequence
    (k = 32 of 256 tokens -> 16384 of 128K): how a quality point is priced."""
    return max(1, round(k / cfg.source.seq_len * max_position))


def cost_by_k(scenario: Any) -> dict[int, float]:
    """USD per million decode tokens of DSA at cost.max_position for each evaluated k (scaled by
    equivalent_topk), from the scenario's cost model (roofline unless it names measured runs)."""
    from dsa_bench.costmodel import as_cost_config, cost_curves

    cfg = as_cost_config(scenario.cost)
    out = {}
    for k in scenario.quality.topk:
        kk = equivalent_topk(k, scenario.quality, cfg.max_position)
        c = cfg.model_copy(update={"topk": kk, "phases": ["decode"], "curves": False})
        df = cost_curves(scenario.model, c, None if c.source == "roofline" else _measured(c))
        row = df[(df["family"] == "dsa") & (df["position_tokens"] == df["position_tokens"].max())]
        out[k] = float(row["usd_per_million_tokens"].iloc[0])
    return out


def _measured(cfg):
    from dsa_bench.costmodel import load_measured

    return load_measured(cfg.measured_run) if cfg.measured_run else None


def run_quality_scenario(scenario: Any, *, out: str | Path = "dsa-bench-runs", device: str = "cpu",
                         progress: Optional[Callable] = None, scenario_file: Optional[str] = None) -> Path:
    """Train, evaluate, price and write the run directory; returns it."""
    import torch

    from dsa_bench import environment
    from dsa_bench.store import new_run_id

    dev = torch.device(device)
    run_id = new_run_id(dev.type)
    run_dir = Path(out) / scenario.name / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    meta = {"run_id": run_id, "scenario_name": scenario.name, "scenario_file": scenario_file,
            "scenario": scenario.model_dump(mode="json"), "device": dev.type, "phase": "quality",
            "status": "running", "start_time": _now(), "environment": environment.capture(dev)}
    write_json(run_dir / "run.json", meta)
    try:
        _train_and_write(scenario, run_dir, progress, dev)
    except BaseException as exc:  # run.json ends interrupted or failed, never `running`
        meta.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", end_time=_now())
        if not isinstance(exc, KeyboardInterrupt):
            meta["failure"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        try:
            write_json(run_dir / "run.json", meta)
        except OSError:
            pass  # the original error says more than this one
        raise
    meta.update(status="complete", end_time=_now())
    write_json(run_dir / "run.json", meta)
    return run_dir


def _train_and_write(scenario: Any, run_dir: Path, progress: Optional[Callable], dev) -> None:
    from dsa_bench.quality.plot import plot_quality
    from dsa_bench.quality.train import run_quality

    res = run_quality(scenario.quality, progress=progress, device=dev)
    costs = cost_by_k(scenario)
    cfg_cost = scenario.cost
    summary = res["summary"].copy()
    summary["model_topk"] = [equivalent_topk(int(k), scenario.quality, cfg_cost.max_position) for k in summary["k"]]
    summary["usd_per_million_tokens"] = [costs.get(int(k)) for k in summary["k"]]
    res["steps"].to_csv(run_dir / "quality_steps.csv", index=False)
    res["evals"].to_csv(run_dir / "quality_evals.csv", index=False)
    summary.to_csv(run_dir / "quality_summary.csv", index=False)
    label = f"DSA decode USD / M tokens at {cfg_cost.max_position // 1024}K, {cfg_cost.gpu} (k scaled to the same share)"
    plot_quality(res["evals"], costs, run_dir / "quality.png", cost_label=label)
    write_json(run_dir / "summary.json", quality_headline(res, scenario.quality))


def quality_headline(res: dict[str, pd.DataFrame], cfg: QualityConfig) -> dict[str, Any]:
    """Loss at the start and end of each stage, and recall / output error per method at the sparse k."""
    steps = res["steps"]
    out: dict[str, Any] = {"kl_loss": {}}
    for stage, g in steps.groupby("stage", sort=False):
        n = max(1, min(10, len(g) // 5))
        out["kl_loss"][stage] = {"first": float(g["kl_loss"].head(n).mean()), "last": float(g["kl_loss"].tail(n).mean())}
    s = res["summary"]
    at = s[s["k"] == cfg.sparse_topk]
    out["at_sparse_topk"] = {"k": cfg.sparse_topk, **{
        r["method"]: {"recall": float(r["recall"]), "overlap": float(r["overlap"]),
                      "output_rel_err": float(r["output_rel_err"])} for r in at.to_dict("records")}}
    return out


def write_quality_report(run_dir: Path, out_root: Optional[Path] = None) -> Path:
    """index.html (the headline, the plot and the tables) in OUT_ROOT/<scenario>/<run-id>/, or the run
    directory's report/ without an OUT_ROOT (as for timing runs: dsa_bench.report.report_dir_for)."""
    from jinja2 import Environment, select_autoescape

    from dsa_bench.report import REPORT_SUBDIR
    from dsa_bench.report.load import check_report_target, read_run_json, safe_name

    run_dir = Path(run_dir)
    meta = read_run_json(run_dir / "run.json")
    final = check_report_target(run_dir / REPORT_SUBDIR if out_root is None else
                                Path(out_root) / safe_name(str(meta.get("scenario_name")), "scenario name")
                                / safe_name(str(meta.get("run_id")), "run id"), run_dir)
    with building_dir(final) as dest:  # renamed into place whole: never a half report
        shutil.copy(run_dir / "quality.png", dest / "quality.png")
        head = json.loads((run_dir / "summary.json").read_text())
        summary = pd.read_csv(run_dir / "quality_summary.csv")
        html = Environment(autoescape=select_autoescape(default=True)).from_string(_TEMPLATE).render(
            meta=meta, head=head, summary=summary.round(4).to_dict("records"), columns=list(summary.columns))
        (dest / "index.html").write_text(html)
    return final / "index.html"


_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ meta.scenario_name }}: indexer quality</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 8px;text-align:right}
.box{background:#f4f6fa;border:1px solid #ccd;padding:0.6em 1em}</style></head><body>
<h1>{{ meta.scenario_name }}: indexer quality</h1>
<div class="box"><b>Answer.</b> At the sparse stage's k = {{ head.at_sparse_topk.k }}:
{% for m, v in head.at_sparse_topk.items() if m != 'k' %}{{ m }} recall {{ '%.3f' % v.recall }}, output error {{ '%.3f' % v.output_rel_err }}{% if not loop.last %}; {% endif %}{% endfor %}.
KL loss {% for st, v in head.kl_loss.items() %}{{ st }} {{ '%.3g' % v.first }} &rarr; {{ '%.3g' % v.last }}{% if not loop.last %}, {% endif %}{% endfor %}.</div>
<p>Run {{ meta.run_id }} on {{ meta.device }} ({{ meta.environment.get('gpu_name') or 'CPU' }}),
commit {{ (meta.environment.get('git') or {}).get('commit') }}. Synthetic attention source (scenario's <code>quality.source</code>);
costs are the cost model's DSA decode cost with k scaled to the same share of a 128K context.</p>
<img src="quality.png" style="max-width:100%">
<h2>Last evaluation</h2><table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in summary %}<tr>{% for c in columns %}<td>{{ r[c] }}</td>{% endfor %}</tr>{% endfor %}</table>
</body></html>
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
