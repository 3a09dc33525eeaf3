"""Calibration against the paper's DeepSeek-V3.1-Terminus (dense) curves only.

The model's dense cost at position t, with the kernel efficiencies stated in CostConfig, is

    y(t) = R / eta_rest + A(t) / eta_attn

where R is the non-attention roofline cost per token (constant in t) and A(t) the dense attention
cost (MHA-form prefill, absorbed decode), both at the paper's GPU (H800) and price (2 USD/hour).
Two numbers per phase are not measurable from kernels: how far the whole deployment falls short of
the kernel-level roofline for the rest of the layer (eta_rest: communication, scheduling, imbalance,
MTP rejections...) and for attention (eta_attn). They are fitted by least squares on relative
error to the five V3.1-Terminus points of the phase; since R is constant and A(t) is linear, they are
set by the paper's intercept and slope. The DeepSeek-V3.2-Exp points are never read here: the DSA
curves then follow from the model (indexer, top-k, sparse attention, indexer projections) at the
same eta_rest / eta_attn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from dsa_bench.costmodel.config import CostConfig
from dsa_bench.costmodel.gpus import get_gpu
from dsa_bench.costmodel.model import PHASES, MeasuredRatios, raw_seconds, usd_per_million
from dsa_bench.models import ModelShape

PAPER_CSV = Path(__file__).resolve().parent.parent / "data" / "paper_figure3.csv"


def load_paper_points(path: Optional[str | Path] = None) -> pd.DataFrame:
    """The paper's Figure 3 points: phase, model, position_tokens, usd_per_million_tokens."""
    df = pd.read_csv(path or PAPER_CSV)
    missing = {"phase", "model", "position_tokens", "usd_per_million_tokens"} - set(df.columns)
    if missing:
        raise ValueError(f"{path or PAPER_CSV}: missing columns {sorted(missing)}")
    return df


@dataclass
class Calibrated:
    """Deployment efficiencies per phase, and how well the dense model then fits the reference curve."""

    eta_rest: dict[str, float]
    eta_attn: dict[str, float]
    reference_model: str
    gpu: str
    gpu_hour_usd: float
    how: dict[str, str] = field(default_factory=dict)  # phase -> "fitted to ..." or "given"
    fit: dict[str, list[dict]] = field(default_factory=dict)  # phase -> [{position, paper, model}]

    def as_dict(self) -> dict:
        return {
            "reference_model": self.reference_model, "gpu": self.gpu, "gpu_hour_usd": self.gpu_hour_usd,
            "eta_rest": dict(self.eta_rest), "eta_attn": dict(self.eta_attn), "how": dict(self.how),
            "fit": {k: list(v) for k, v in self.fit.items()},
        }


def reference_points(paper: pd.DataFrame, reference_model: str) -> pd.DataFrame:
    """Only the reference (dense) model's rows: the one place paper data enters the model."""
    ref = paper[paper["model"] == reference_model]
    if ref.empty:
        raise ValueError(f"the paper points have no rows for the reference model {reference_model!r}")
    return ref.sort_values(["phase", "position_tokens"]).reset_index(drop=True)


def _fit_two(R: np.ndarray, A: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of y ~ a R + b A on relative error (weights 1/y), a, b > 0."""
    w = 1.0 / y
    X = np.stack([R * w, A * w], axis=1)
    (a, b), *_ = np.linalg.lstsq(X, y * w, rcond=None)
    if a <= 0 or b <= 0:
        raise ValueError(f"calibration gives a non-positive scale (a={a:.3g}, b={b:.3g}): the reference curve "
                         "cannot be split into a constant and an attention part with this model")
    return float(a), float(b)


def calibrate(model: ModelShape, cfg: CostConfig, measured: Optional[MeasuredRatios] = None,
              paper: Optional[pd.DataFrame] = None) -> Calibrated:
    """Fit eta_rest and eta_attn per phase to the reference (V3.1-Terminus) curve; explicit values win."""
    c = cfg.calibration
    gpu = get_gpu(c.gpu)
    out = Calibrated({}, {}, c.reference_model, gpu.name, c.gpu_hour_usd)
    ref = None
    for phase in PHASES:
        given = (getattr(c, f"eta_rest_{phase}"), getattr(c, f"eta_attn_{phase}"))
        if all(v is not None for v in given):
            out.eta_rest[phase], out.eta_attn[phase] = given
            out.how[phase] = "given in cost.calibration"
            continue
        if ref is None:
            ref = reference_points(paper if paper is not None else load_paper_points(c.paper_csv), c.reference_model)
        pts = ref[ref["phase"] == phase]
        if len(pts) < 2:
            raise ValueError(f"calibration: need >= 2 {c.reference_model} {phase} points, got {len(pts)}")
        t = pts["position_tokens"].to_numpy()
        y = pts["usd_per_million_tokens"].to_numpy(dtype=float)
        comp, _ = raw_seconds(model, cfg, phase, "dense", t, gpu, measured)
        R = usd_per_million(comp["rest"], c.gpu_hour_usd)
        A = usd_per_million(sum(comp[k] for k in ("dense_mha", "dense_mla")), c.gpu_hour_usd)
        a, b = _fit_two(R, A, y)
        out.eta_rest[phase], out.eta_attn[phase] = 1.0 / a, 1.0 / b
        out.how[phase] = (f"least squares (relative error) to the {len(pts)} {c.reference_model} {phase} points "
                          f"of {c.paper_csv or 'dsa_bench/data/paper_figure3.csv'} at {gpu.name}, "
                          f"{c.gpu_hour_usd:g} USD/GPU-hour")
        out.fit[phase] = [{"position_tokens": int(p), "paper": float(v), "model": float(a * r + b * s)}
                          for p, v, r, s in zip(t, y, R, A)]
    return out


__all__ = ["Calibrated", "PAPER_CSV", "calibrate", "load_paper_points", "reference_points"]
