import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Triton kernels run in the CPU interpreter when there is no GPU; this must be set before triton
# is first imported anywhere in the test session.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SmokeRun:
    """One `dsa-bench run scenarios/smoke.yaml --out OUT --device cpu`, as a user runs it."""

    exit_code: int
    output: str  # what the command printed (not a terminal, COLUMNS=80)
    out: Path  # the --out directory: OUT/smoke/<run-id>/ and OUT/reports/smoke/<run-id>/
    run_dir: Path | None  # OUT/smoke/<run-id>, None if the run wrote none


@pytest.fixture(scope="session")
def smoke_cli_run(tmp_path_factory) -> SmokeRun:
    """The shipped smoke scenario run once per session through the CLI (results and end-of-run report);
    tests read it and write elsewhere. Every DSA point costs seconds in the Triton interpreter, so the
    tests that need a smoke run share this one instead of each running it."""
    from typer.testing import CliRunner

    from dsa_bench.cli import app

    out = tmp_path_factory.mktemp("smoke-cli")
    r = CliRunner().invoke(app, ["run", str(ROOT / "scenarios" / "smoke.yaml"), "--out", str(out), "--device", "cpu"],
                           env={"COLUMNS": "80"})
    runs = sorted((out / "smoke").iterdir()) if (out / "smoke").is_dir() else []
    return SmokeRun(exit_code=r.exit_code, output=r.output, out=out, run_dir=runs[0] if len(runs) == 1 else None)
