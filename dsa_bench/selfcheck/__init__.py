"""GPU self-check of every Triton kernel against its PyTorch reference at DeepSeek shapes.

The harnesses (`attention.py`, `indexer.py` beside this file) ship with the package, so
`dsa-bench check-kernels` works from any install, not only from a source checkout.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import torch

from dsa_bench import environment


def run_selfcheck(out_dir: Path) -> tuple[Path, int]:
    """Runs both kernel self-checks; writes kernel_check.json; returns (path, failures)."""
    from dsa_bench.selfcheck import attention, indexer

    dev = torch.device("cuda")
    cases = indexer.check_indexer_topk() + attention.check_attention()
    failures = sum(1 for c in cases if not c.get("ok"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "kernel_check.json"
    from dsa_bench.safe_io import write_json

    write_json(path, {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment.capture(dev), "failures": failures, "cases": cases,
    }, indent=2)
    return path, failures
