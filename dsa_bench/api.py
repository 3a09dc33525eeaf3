"""The library entry point: run a validated scenario end to end, as `dsa-bench run` does.

    from dsa_bench.api import run_scenario
    from dsa_bench.scenario import load_scenario
    outcome = run_scenario(load_scenario("scenarios/smoke.yaml"), out="results")

The CLI is a thin shell over this (argument parsing, messages, exit codes); tests call it directly.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from dsa_bench.scenario import Scenario


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM during the sweep: the run is marked interrupted, finished points are kept."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        super().__init__(f"interrupted: finished points are kept in {run_dir}; continue with --resume")


class CostModelError(ValueError):
    """The sweep finished and is stored, but the cost model could not write its curves."""


@dataclass
class RunOutcome:
    run_dir: Path
    device: str
    rows: list[dict[str, Any]]
    cost_paths: list[Path] = field(default_factory=list)
    resumed_points: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Rows whose status is wrong or error (an OOM or a skipped point is recorded, not a failure)."""
        return [r for r in self.rows if r.get("status") in ("wrong", "error")]


def prepare_device(scenario: Scenario, device: str = "auto"):
    """(torch device, the scenario as run there). On the CPU, Triton runs in its interpreter: the
    variable must be set before Triton is first imported. ValueError / ScenarioError on bad input."""
    from dsa_bench import runner

    dev = runner.resolve_device(device)
    if dev.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return dev, scenario.for_device(dev.type)


def run_scenario(
    scenario: Scenario,
    *,
    out: str | Path = "results",
    device: str = "auto",
    resume: bool = False,
    scenario_file: Optional[str] = None,
    keep: Optional[Callable] = None,
    ray_address: Optional[str] = None,
    gpus_per_point: float = 1.0,
    on_progress: Optional[Callable] = None,
    on_point_done: Optional[Callable] = None,
    on_start: Optional[Callable[[Path, int], None]] = None,
    on_train_step: Optional[Callable[[int, int, str, float], None]] = None,
) -> RunOutcome:
    """Measure every (point, implementation), write results.csv / samples.csv / run.json, the cost
    curves when the scenario asks for them (priced on the full model, not the CPU stand-in) and
    summary.json; with `refine_crossover`, each crossover's bracket is then narrowed by measuring new
    contexts inside it (dsa_bench/refine.py; outcome.notes says where each ended). A `phase: quality` scenario trains and evaluates its indexer instead, reporting each
    step to on_train_step(step, total, stage, kl_loss)). Raises RunInterrupted on Ctrl-C / SIGTERM; ValueError / OSError / ScenarioError on
    bad input before anything is measured; CostModelError when the curves cannot be written after it.
    """
    from dsa_bench import runner

    if scenario.phase == "quality":
        from dsa_bench.quality.run import run_quality_scenario

        dev = runner.resolve_device(device)
        run_dir = run_quality_scenario(scenario, out=out, device=dev.type, progress=on_train_step,
                                       scenario_file=scenario_file)
        return RunOutcome(run_dir=run_dir, device=dev.type, rows=[])
    dev, s = prepare_device(scenario, device)
    store, done = runner.start_run(s, scenario_file=scenario_file, device=dev, out_root=Path(out), resume=resume)
    if on_start is not None:
        on_start(store.dir, len(done))

    def _terminate(signum, frame):  # SIGTERM (kill, a batch scheduler) ends the run like Ctrl-C
        raise KeyboardInterrupt

    in_main = _is_main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    def measure(tasks=None) -> None:
        """The sweep (tasks None) or one refinement round, on Ray or here."""
        if ray_address is not None:
            from dsa_bench.distributed import run_on_ray

            run_on_ray(s, scenario_file=scenario_file, device=dev, store=store, done=done, address=ray_address,
                       gpus_per_point=gpus_per_point, keep=keep, tasks=tasks, on_progress=on_progress,
                       on_point_done=on_point_done)
        else:
            runner.Runner(s, dev, store, on_progress=on_progress, on_point_done=on_point_done, keep=keep).run(done, tasks)

    refine_notes: list[str] = []
    try:
        measure()
        if s.refine_crossover is not None:
            from dsa_bench.refine import refine_crossovers

            rc = s.refine_crossover
            refine_notes = refine_crossovers(store.dir, s.implementations, rc.tolerance, rc.max_points, measure, keep)
    except KeyboardInterrupt:
        runner.finish_run(store, dev, "interrupted")
        raise RunInterrupted(store.dir) from None
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    runner.finish_run(store, dev, "complete")
    outcome = RunOutcome(run_dir=store.dir, device=dev.type, rows=store.rows(), resumed_points=len(done),
                         notes=[f"refinement: {n}" for n in refine_notes])
    priced = cost_scenario(scenario, dev.type, outcome.rows)
    if priced is not None:
        import pandas as pd

        from dsa_bench.costmodel import write_cost_outputs

        try:
            outcome.cost_paths = write_cost_outputs(priced, store.dir,
                                                    pd.DataFrame(outcome.rows) if outcome.rows else None)
        except (ValueError, FileNotFoundError) as e:
            raise CostModelError(str(e)) from e
    try:
        write_summary_json(store.dir)
    except Exception as e:  # noqa: BLE001 - a summary problem must not cost the measured run
        outcome.notes.append(f"summary.json not written ({type(e).__name__}: {e})")
    return outcome


def cost_scenario(scenario: Scenario, device: str, rows: list[dict[str, Any]]) -> Optional[Scenario]:
    """The scenario whose cost section prices this run, or None: as written when it asks for curves;
    otherwise, for a GPU run that timed dense and DSA, the full-model curves from its own rows
    (`source: measured`; the roofline fills kinds it did not time, and cost_calibration.json says so)."""
    if scenario.cost.curves:
        return scenario
    if device != "cuda" or not rows:
        return None
    import pandas as pd

    from dsa_bench.costmodel import has_gpu_timings

    if not has_gpu_timings(pd.DataFrame(rows)):
        return None
    cost = scenario.cost.model_copy(update={"curves": True, "source": "measured", "measured_run": None})
    return scenario.model_copy(update={"cost": cost})


def write_summary_json(run_dir: Path) -> Path:
    """The run's headlines (speedup, crossover with interval, stage shares, $/M) as run_dir/summary.json."""
    import json

    from dsa_bench.report.headline import summary_json
    from dsa_bench.report.load import load_run

    path = Path(run_dir) / "summary.json"
    path.write_text(json.dumps(summary_json(load_run(Path(run_dir))), indent=1) + "\n")
    return path


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


__all__ = ["CostModelError", "RunInterrupted", "RunOutcome", "cost_scenario", "prepare_device", "run_scenario", "write_summary_json"]
