"""The library entry point: run a validated scenario end to end, as `dsa-bench run` does.

    from dsa_bench.api import run_scenario
    from dsa_bench.scenario import load_scenario
    outcome = run_scenario(load_scenario("scenarios/smoke.yaml"), out="dsa-bench-runs")

The CLI is a thin shell over this (argument parsing, messages, exit codes); tests call it directly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from dsa_bench.errors import InputError, RunFailed
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
    out: str | Path = "dsa-bench-runs",  # store.DEFAULT_ROOT
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
    from dsa_bench.store import row_key as store_row_key

    if scenario.phase == "quality":
        from dsa_bench.quality.run import run_quality_scenario

        dev = runner.resolve_device(device)
        run_dir = run_quality_scenario(scenario, out=out, device=dev.type, progress=on_train_step,
                                       scenario_file=scenario_file)
        return RunOutcome(run_dir=run_dir, device=dev.type, rows=[])
    dev, s = prepare_device(scenario, device)
    tasks = runner.plan(s, keep)
    if keep is not None and not tasks:
        raise InputError("--filter: no (point, implementation) of the scenario matches; nothing was run",
                         hint=f"the sweep as run on {dev.type} has context {s.sweep.context}, topk {s.sweep.topk}, "
                              f"batch {s.sweep.batch}")
    from dsa_bench.costmodel import check_measured_runs

    check_measured_runs(s.cost)  # a missing cost.measured_run is bad input: refused before the run exists
    store, done = runner.start_run(s, scenario_file=scenario_file, device=dev, out_root=Path(out), resume=resume)
    # SIGINT and SIGTERM (kill, a batch scheduler) end the run; a KeyboardInterrupt an implementation
    # raises itself is only that implementation's error row (dsa_bench.interrupts tells them apart).
    from dsa_bench.interrupts import tracking

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
        with tracking():
            if on_start is not None:  # inside: whatever fails from here on, run.json does not stay `running`
                on_start(store.dir, len(done))
            measure()
            if s.refine_crossover is not None:
                from dsa_bench.refine import refine_crossovers

                rc = s.refine_crossover
                refine_notes = refine_crossovers(store.dir, s.implementations, rc.tolerance, rc.max_points, measure,
                                                 keep)
    except KeyboardInterrupt:
        runner.finish_run(store, dev, "interrupted")
        raise RunInterrupted(store.dir) from None
    except BaseException as exc:
        _mark_failed(store, dev, exc)
        if isinstance(exc, OSError):
            from dsa_bench.errors import describe_os_error

            raise RunFailed(
                f"the run stopped: writing to {store.dir} failed ({describe_os_error(exc)}); the points finished "
                f"before it are kept and run.json says failed",
                hint="fix the cause (free disk space) and continue with `dsa-bench run SCENARIO --resume`") from exc
        raise
    runner.finish_run(store, dev, "complete")
    outcome = RunOutcome(run_dir=store.dir, device=dev.type, rows=store.rows(), resumed_points=len(done),
                         notes=[f"refinement: {n}" for n in refine_notes])
    if resume and len({store_row_key(r) for r in outcome.rows}) <= len(done):
        outcome.notes.append(f"--resume: every (point, implementation) of {store.dir} was already done; "
                             "nothing new was measured")
    priced = cost_scenario(scenario, dev.type, outcome.rows, run_gpu=_gpu_profile(dev))
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


def cost_scenario(scenario: Scenario, device: str, rows: list[dict[str, Any]],
                  run_gpu: Optional[str] = None) -> Optional[Scenario]:
    """The scenario whose cost section prices this run, or None: as written when it asks for curves;
    otherwise, for a GPU run that timed dense and DSA, the full-model curves from its own rows
    (`source: measured`; the roofline fills kinds it did not time, and cost_calibration.json says so).
    A GPU run is priced on its own GPU (run_gpu, a cost-model profile name) unless the scenario's
    cost.gpu or --gpu names one."""
    cost = scenario.cost
    if run_gpu and "gpu" not in cost.model_fields_set:
        cost = cost.model_copy(update={"gpu": run_gpu})
    if cost.curves:
        return scenario if cost is scenario.cost else scenario.model_copy(update={"cost": cost})
    if device != "cuda" or not rows:
        return None
    import pandas as pd

    from dsa_bench.costmodel import has_gpu_timings

    if not has_gpu_timings(pd.DataFrame(rows)):
        return None
    cost = cost.model_copy(update={"curves": True, "source": "measured", "measured_run": None})
    return scenario.model_copy(update={"cost": cost})


def _gpu_profile(dev) -> Optional[str]:
    """The cost model's profile name of a CUDA device ('NVIDIA H200' -> 'H200'), None on the CPU or for
    an unknown chip."""
    if getattr(dev, "type", None) != "cuda":
        return None
    import torch

    from dsa_bench.costmodel.gpus import profile_for_device

    prof = profile_for_device(torch.cuda.get_device_name(dev))
    return None if prof is None else prof.name.split()[0]


def write_summary_json(run_dir: Path) -> Path:
    """The run's headlines (speedup, crossover with interval, stage shares, $/M) as run_dir/summary.json."""
    from dsa_bench.report.headline import summary_json
    from dsa_bench.report.load import load_run
    from dsa_bench.safe_io import write_json

    return write_json(Path(run_dir) / "summary.json", summary_json(load_run(Path(run_dir))))


def _mark_failed(store, dev, exc: BaseException) -> None:
    """run.json says `failed` and why; a failure to say so must not hide the original error."""
    from dsa_bench import runner

    try:
        runner.finish_run(store, dev, "failed", reason=runner._one_line(exc))
    except Exception:  # noqa: BLE001 - e.g. the disk is too full even for run.json
        pass


__all__ = ["CostModelError", "RunInterrupted", "RunOutcome", "cost_scenario", "prepare_device", "run_scenario", "write_summary_json"]
