"""Token-cost model: USD per million tokens of the token at position t, dense MLA vs DSA.

Entry points for the runner and the CLI:
- write_cost_outputs(scenario, run_dir, measured) -> [paths]: cost_curves.csv, cost_curves.png and
  cost_calibration.json in the run directory when `cost.curves` is true;
- apply_overrides(cfg, gpu, usd_per_hour) -> CostConfig: the CLI's --gpu / --price.
The model itself is in model.py, the calibration in calibrate.py, the curves in curves.py; docs/COST_MODEL.md
explains both.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

# Light imports only (pydantic): scenario.py imports CostConfig at startup. pandas, numpy and the
# model load on first use (see __getattr__ below).
from dsa_bench.costmodel.config import CostConfig
from dsa_bench.costmodel.gpus import GPUS, get_gpu

if TYPE_CHECKING:
    import pandas as pd

_LAZY = {
    "COMPONENT_COLUMNS": "model", "CURVE_COLUMNS": "model", "compare_to_paper": "model", "cost_curves": "curves",
    "curve_crossovers": "model", "tail_line_crossovers": "model",
    "PAPER_CSV": "calibrate", "calibrate": "calibrate", "load_paper_points": "calibrate",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"dsa_bench.costmodel.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dsa_bench.costmodel' has no attribute {name!r}")


REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def apply_overrides(cfg: Any, gpu: Optional[str] = None, usd_per_hour: Optional[float] = None) -> CostConfig:
    """The config with the CLI's --gpu / --price applied (None leaves a value as it is).

    Only what is priced changes: the calibration stays on the paper's GPU and price, so the answer is
    "this deployment, on my GPU, at my price".
    """
    cfg = as_cost_config(cfg)
    update: dict[str, Any] = {}
    if gpu is not None:
        update["gpu"] = get_gpu(gpu).name
    if usd_per_hour is not None:
        import math

        from dsa_bench.costmodel.config import MAX_GPU_HOUR_USD

        if not (math.isfinite(usd_per_hour) and 0 < usd_per_hour <= MAX_GPU_HOUR_USD):
            raise ValueError(f"--price: must be a positive, finite number of USD per GPU hour, at most "
                             f"{MAX_GPU_HOUR_USD:g}; got {usd_per_hour!r}")
        update["gpu_hour_usd"] = float(usd_per_hour)
    # model_copy keeps model_fields_set: whether the scenario itself named a GPU stays known (a run is
    # priced on its own GPU unless a GPU is asked for: api.cost_scenario)
    return cfg.model_copy(update=update) if update else cfg


def as_cost_config(cost: Any) -> CostConfig:
    """A CostConfig from a CostConfig, a pydantic model with CostConfig's fields (the old Cost), or a dict."""
    if isinstance(cost, CostConfig):
        return cost
    if cost is None:
        return CostConfig()
    if hasattr(cost, "model_dump"):
        cost = cost.model_dump()
    return CostConfig.model_validate(cost)


def _results_path(run_dir: str | Path) -> Path:
    """results.csv of a run directory, or of the latest finished run in a scenario's results folder
    (relative paths: from the working directory, then the repo root)."""
    p = Path(run_dir)
    if not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    if p.is_file():
        return p
    if (p / "results.csv").exists():
        return p / "results.csv"
    runs = sorted(d for d in p.glob("*/") if (d / "results.csv").exists() and _finished(d)) if p.is_dir() else []
    if not runs:
        from dsa_bench.errors import InputError

        raise InputError(f"cost.measured_run: no results.csv at {p} (nor a finished run inside it)",
                         hint="point cost.measured_run at a run directory timed on a GPU (results/<scenario>/<run-id>), "
                              "or use cost.source: roofline")
    return runs[-1] / "results.csv"  # run ids start with a UTC timestamp: the last sorts latest


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def _run_gpu(results_csv: Path) -> Optional[str]:
    """The GPU profile named by a run's run.json ('NVIDIA H200' -> 'H200'), if it is a known chip."""
    from dsa_bench.costmodel.gpus import profile_for_device

    try:
        name = str(json.loads((results_csv.parent / "run.json").read_text())["environment"]["gpu_name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    prof = profile_for_device(name)
    return None if prof is None else prof.name.split()[0]  # the chip: measured_gpu names a GPUS profile


def check_measured_runs(cfg: Any) -> None:
    """InputError now, before a run starts, when the cost section names measured runs that are not there."""
    cfg = as_cost_config(cfg)
    if cfg.source == "measured" and cfg.measured_run:
        for d in cfg.measured_run if isinstance(cfg.measured_run, list) else [cfg.measured_run]:
            _results_path(d)


def load_measured(run_dirs: "str | Path | list") -> "pd.DataFrame":
    """The joined results.csv rows of one or more run directories (see _results_path); df.attrs
    'sources' lists the files read and 'gpu' the GPU profile their run.json files name (None if they
    disagree or name none)."""
    import pandas as pd

    paths = [_results_path(d) for d in (run_dirs if isinstance(run_dirs, list) else [run_dirs])]
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    gpus = {_run_gpu(p) for p in paths}
    df.attrs["sources"] = [str(p) for p in paths]
    df.attrs["gpu"] = gpus.pop() if len(gpus) == 1 else None
    return df


def has_gpu_timings(df: Optional["pd.DataFrame"]) -> bool:
    if df is None or len(df) == 0 or not {"family", "status", "device"} <= set(df.columns):
        return False
    ok = df[(df["status"].astype(str) == "ok") & (df["device"].astype(str) != "cpu")]
    return {"dense", "dsa"} <= set(ok["family"].astype(str))


def _measured_for(cfg: CostConfig, measured: Optional["pd.DataFrame"]) -> Optional["pd.DataFrame"]:
    if cfg.source != "measured":
        return None
    if cfg.measured_run:
        return load_measured(cfg.measured_run)
    if has_gpu_timings(measured):
        return measured
    raise ValueError("cost.source is 'measured' but this run has no GPU timings of both dense and DSA "
                     "implementations; set cost.measured_run to a results run directory timed on a GPU "
                     "or use source: roofline")


def write_cost_outputs(scenario: Any, run_dir: Path, measured: Optional["pd.DataFrame"] = None) -> list[Path]:
    """Write cost_curves.csv, cost_curves.png and cost_calibration.json into run_dir when cost.curves is true.

    `scenario`: a Scenario (uses .model and .cost); `measured`: this run's results rows (or None).
    Returns the paths written ([] when cost.curves is false).
    """
    cfg = as_cost_config(getattr(scenario, "cost", None))
    if not cfg.curves:
        return []
    from dsa_bench.costmodel.calibrate import load_paper_points
    from dsa_bench.costmodel.curves import cost_curves
    from dsa_bench.costmodel.model import (compare_to_paper, curve_crossover_texts, curve_crossovers,
                                           tail_line_crossovers)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = scenario.model
    measured = _measured_for(cfg, measured)
    if measured is not None and cfg.measured_gpu is None:
        gpu = measured.attrs.get("gpu") or _run_gpu(run_dir / "results.csv")
        if gpu:  # the ratio's denominator must be the roofline of the GPU that was timed
            cfg = cfg.model_copy(update={"measured_gpu": gpu})
    df = cost_curves(model, cfg, measured)
    written = []
    csv_path = run_dir / "cost_curves.csv"
    df.to_csv(csv_path, index=False, float_format="%.6g")
    written.append(csv_path)

    paper = load_paper_points(cfg.calibration.paper_csv)
    cmp = compare_to_paper(df, paper)
    model_df = None
    if measured is not None:
        # The roofline model beside the measured curves, so a report shows paper, model and measurement.
        model_df = cost_curves(model, cfg.model_copy(update={"source": "roofline"}))
        model_path = run_dir / "cost_curves_model.csv"
        model_df.to_csv(model_path, index=False, float_format="%.6g")
        written.append(model_path)
    info = {
        "model": model.name,
        "gpu": cfg.gpu, "gpu_hour_usd": cfg.gpu_hour_usd, "source": cfg.source,
        "calibration": df.attrs["calibration"],
        "measured_fallbacks": df.attrs["measured_fallbacks"],
        "measured_notes": df.attrs["measured_notes"],
        "measured_sources": (measured.attrs.get("sources") or ["this run"]) if measured is not None else [],
        "measured_gpu": cfg.measured_gpu,
        "crossover_tokens": {
            "model": curve_crossovers(df),
            "paper_piecewise_linear": curve_crossovers(paper),
            "model_lines_fitted_32k_128k": tail_line_crossovers(df),
            "paper_lines_fitted_32k_128k": tail_line_crossovers(paper),
        },
        # Each curve crossover with its resolution: the positions it lies between (every
        # cost.position_step tokens) and, for measured curves, the context below which they are held.
        "crossover_resolution": curve_crossover_texts(df, df.attrs.get("held_below")),
        "vs_paper": cmp.to_dict("records") if cfg.gpu == "H800" and cfg.gpu_hour_usd == 2.0 else
        "not compared: the paper is priced on H800 at 2 USD/GPU-hour",
        "model_vs_paper": (compare_to_paper(model_df, paper).to_dict("records")
                           if model_df is not None and cfg.gpu == "H800" and cfg.gpu_hour_usd == 2.0 else None),
        "config": cfg.model_dump(mode="json"),
    }
    json_path = run_dir / "cost_calibration.json"
    from dsa_bench.safe_io import write_json

    write_json(json_path, info, indent=2)
    written.append(json_path)

    if cfg.plot:
        from dsa_bench.costmodel.plot import plot_cost_curves

        same_setting = cfg.gpu == cfg.calibration.gpu and cfg.gpu_hour_usd == cfg.calibration.gpu_hour_usd
        overlay = paper if (cfg.overlay_paper and same_setting) else None
        title = (f"{model.name}: USD per million tokens at each token position — {cfg.gpu} at "
                 f"{cfg.gpu_hour_usd:g} USD/GPU-hour, {cfg.source} attention timings; "
                 f"calibrated on {cfg.calibration.reference_model} only")
        written.append(plot_cost_curves(df, overlay, run_dir / "cost_curves.png", title=title, model_df=model_df,
                                        held_below=df.attrs.get("held_below")))
    return written


def cost_summary(df: "pd.DataFrame", positions=(32768, 65536, 98304, 131072)) -> str:
    """A few lines for the console: USD per million tokens of each curve at some positions, crossovers."""
    from dsa_bench.costmodel.model import curve_crossover_texts

    lines = []
    for (phase, name), g in df.groupby(["phase", "model"], sort=False):
        g = g.set_index("position_tokens")["usd_per_million_tokens"]
        vals = ", ".join(f"{p // 1024}K {g.get(p, float('nan')):.3f}" for p in positions)
        lines.append(f"{phase:7s} {name}: {vals}")
    for phase, c in curve_crossover_texts(df, df.attrs.get("held_below")).items():
        lines.append(f"crossover {phase}: {c['text']}")
    return "\n".join(lines)


__all__ = [
    "COMPONENT_COLUMNS", "CURVE_COLUMNS", "CostConfig", "GPUS", "PAPER_CSV", "apply_overrides", "as_cost_config",
    "calibrate", "compare_to_paper", "has_gpu_timings", "cost_curves", "cost_summary", "curve_crossovers", "get_gpu",
    "load_measured", "load_paper_points", "tail_line_crossovers", "write_cost_outputs",
]
