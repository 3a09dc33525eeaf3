"""GPU self-check of every Triton kernel against its PyTorch reference at DeepSeek shapes."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from dsa_bench import environment


def run_selfcheck(out_dir: Path) -> tuple[Path, int]:
    """Runs both kernel self-checks; writes kernel_check.json; returns (path, failures)."""
    from kernels.gpu_selfcheck_attention import check_attention
    from kernels.gpu_selfcheck_indexer import check_indexer_topk

    dev = torch.device("cuda")
    cases = check_indexer_topk() + check_attention()
    failures = sum(1 for c in cases if not c.get("ok"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "kernel_check.json"
    path.write_text(json.dumps({
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment.capture(dev), "failures": failures, "cases": cases,
    }, indent=2, default=str) + "\n")
    return path, failures
