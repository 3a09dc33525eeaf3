"""USD per million tokens at each position: the model (model.py) scaled by the calibration (calibrate.py).

Its own module so that model.py and calibrate.py do not import each other: calibrate uses the model's
raw seconds, and the curves use both.
"""
from __future__ import annotations

import pandas as pd

from dsa_bench.costmodel.calibrate import calibrate
from dsa_bench.costmodel.config import CostConfig
from dsa_bench.costmodel.gpus import get_gpu
from dsa_bench.costmodel.model import (
    COMPONENTS,
    CURVE_COLUMNS,
    FAMILIES,
    measured_ratios,
    positions,
    raw_seconds,
    usd_per_million,
)
from dsa_bench.models import ModelShape


def cost_curves(model: ModelShape, cfg: CostConfig, measured: pd.DataFrame | None = None,
                calibration=None) -> pd.DataFrame:
    """USD per million tokens of the token at each position, per phase and model, with one column per component.

    `measured`: results.csv rows (any run with dense and DSA timings on a GPU); used when
    cfg.source == 'measured'. `calibration`: a calibrate.Calibrated to reuse (default: fitted here,
    on the paper's dense V3.1-Terminus points only). df.attrs holds the calibration and notes.
    """
    ratios = None
    if cfg.source == "measured":
        if measured is None:
            raise ValueError("cost.source is 'measured' but no measured results were given "
                             "(set cost.measured_run to a results run directory timed on a GPU)")
        ratios = measured_ratios(measured, model, cfg)
    cal = calibration if calibration is not None else calibrate(model, cfg, ratios)
    gpu = get_gpu(cfg.gpu)
    t = positions(cfg)
    frames = []
    fallbacks = []
    for phase in cfg.phases:
        eta_rest, eta_attn = cal.eta_rest[phase], cal.eta_attn[phase]
        for family in FAMILIES:
            comp, info = raw_seconds(model, cfg, phase, family, t, gpu, ratios)
            fallbacks += [f"{phase}/{k}" for k, s in info["sources"].items() if s == "roofline-fallback"]
            cols = {}
            for c in COMPONENTS:
                eta = eta_rest if c in ("rest", "indexer_proj") else eta_attn
                cols[f"usd_{c}"] = usd_per_million(comp[c] / eta, cfg.gpu_hour_usd)
            total = sum(cols.values())
            frame = pd.DataFrame({
                "phase": phase, "model": cfg.labels[family], "position_tokens": t,
                "usd_per_million_tokens": total, **cols, "family": family,
                "dsa_attention_mode": info["mode"] if family == "dsa" else "",
                "timing_source": ",".join(sorted(set(info["sources"].values()))),
                "gpu": gpu.name, "gpu_hour_usd": cfg.gpu_hour_usd,
            })
            frames.append(frame)
    df = pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]
    df.attrs["calibration"] = cal.as_dict()
    df.attrs["measured_fallbacks"] = sorted(set(fallbacks))
    df.attrs["measured_notes"] = list(ratios.notes) if ratios else []
    # Below the first timed context the measured ratios are held: a crossover there is not measured.
    df.attrs["held_below"] = {p: ratios.first_timed(p) for p in cfg.phases if ratios.first_timed(p)} if ratios else {}
    return df
