"""GPU self-check of every Triton kernel against its PyTorch reference at DeepSeek shapes.

The harnesses live in tools/gpu_selfcheck/ (developer tools, not installed with the package); they are
loaded from the source checkout this module belongs to (an editable install or a clone).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import torch

from dsa_bench import environment

HARNESS_DIR = Path(__file__).resolve().parent.parent / "tools" / "gpu_selfcheck"


def load_harnesses() -> tuple[ModuleType, ModuleType]:
    """(attention, indexer) harness modules from tools/gpu_selfcheck, imported as package `gpu_selfcheck`."""
    init = HARNESS_DIR / "__init__.py"
    if not init.is_file():
        raise RuntimeError(f"the kernel self-checks need the source checkout's tools/gpu_selfcheck "
                           f"(not found at {HARNESS_DIR}); run from a clone or an editable install")
    if "gpu_selfcheck" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_selfcheck", init, submodule_search_locations=[str(HARNESS_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_selfcheck"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("gpu_selfcheck.attention"), importlib.import_module("gpu_selfcheck.indexer")


def run_selfcheck(out_dir: Path) -> tuple[Path, int]:
    """Runs both kernel self-checks; writes kernel_check.json; returns (path, failures)."""
    attention, indexer = load_harnesses()

    dev = torch.device("cuda")
    cases = indexer.check_indexer_topk() + attention.check_attention()
    failures = sum(1 for c in cases if not c.get("ok"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "kernel_check.json"
    path.write_text(json.dumps({
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment.capture(dev), "failures": failures, "cases": cases,
    }, indent=2, default=str) + "\n")
    return path, failures
