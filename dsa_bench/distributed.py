"""Sweeps spread over Ray workers: each (point, implementation) is a Ray task on one GPU (on a
CPU-only cluster, one CPU); finished rows stream back and the driver alone writes the run directory,
so the files, the resume rules and the report are the same as a plain run's.

Ray is imported only here, and only with `dsa-bench run --ray`: it is an optional dependency
(`pip install -e ".[ray]"`). A task whose worker dies is retried once by Ray; if it fails again its
point is recorded as `error` with the reason and the sweep goes on.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable, Optional

from dsa_bench.scenario import Scenario


def _measure_in_worker(scenario_json: dict, scenario_dir: Optional[str], device_type: str,
                       impl_name: str, point: tuple, refinement: Optional[int] = None
                       ) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Runs in a Ray worker: rebuild the scenario (plug-ins first), measure one task."""
    import torch

    from dsa_bench import runner
    from dsa_bench.registry import REGISTRY, load_plugin_file
    from dsa_bench.scenario import parse_scenario
    from dsa_bench.workload import Point

    for f in scenario_json.get("implementations_from") or []:
        load_plugin_file(Path(scenario_dir or ".") / f)
    s = parse_scenario(scenario_json)
    device = torch.device("cuda" if device_type == "cuda" else "cpu")
    r = runner.Runner(s, device, store=None)
    rows, samples = r.measure(runner.Task(REGISTRY[impl_name], Point(*point), refinement))
    gpu = gpu_label(device) if device.type == "cuda" else "cpu"
    worker = {"host": socket.gethostname(), "gpu": gpu, "pid": os.getpid()}
    return [dict(x, worker=f"{worker['host']}/{gpu}") for x in rows], samples, worker


def gpu_label(device, visible: Optional[str] = None, name: Optional[str] = None, uuid: Optional[str] = None) -> str:
    """Which physical GPU a worker measured on: the GPU Ray gave the task (CUDA_VISIBLE_DEVICES, which
    Ray sets per task), its model and the start of its UUID. The model alone would name both GPUs of a
    two-H200 machine the same, and then nothing would show that the work was spread."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "") if visible is None else visible
    if name is None:
        name = torch.cuda.get_device_name(device)
    if uuid is None:
        uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", "") or "")
    index = visible.split(",")[device.index or 0] if visible else str(device.index or 0)
    return f"gpu{index} {name}" + (f" ({uuid[:8]})" if uuid else "")


def run_on_ray(s: Scenario, *, scenario_file: Optional[str], device, store, done: set, address: str,
               gpus_per_point: float, keep=None, tasks: Optional[list] = None,
               on_progress: Optional[Callable[[Any, int, int], None]] = None,
               on_point_done: Optional[Callable[[Any, list[dict]], None]] = None) -> list[dict]:
    """Measure every planned (point, implementation) not in `done` on Ray (or the given `tasks`: the
    crossover refinement's); rows are appended to `store` as tasks finish. Returns the rows written."""
    import ray

    from dsa_bench import runner

    env = {"TRITON_INTERPRET": "1"} if device.type == "cpu" else {}
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": env} if env else None)
    resources = {"num_gpus": gpus_per_point} if device.type == "cuda" else {"num_cpus": 1}
    remote = ray.remote(max_retries=1, **resources)(_measure_in_worker)
    scenario_json = s.model_dump(mode="json")
    scenario_dir = str(Path(scenario_file).resolve().parent) if scenario_file else None

    tasks = [t for t in (runner.plan(s, keep) if tasks is None else tasks) if _key(t) not in done]
    refs = {remote.remote(scenario_json, scenario_dir, device.type, t.impl.name,
                          (t.point.phase, t.point.batch, t.point.context, t.point.topk), t.refinement): t
            for t in tasks}
    local = runner.Runner(s, device, store)  # builds error rows the same way a plain run does
    written, workers = [], {}
    try:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            task = refs[ready[0]]
            try:
                rows, samples, worker = ray.get(ready[0])
                workers[(worker["host"], worker["gpu"])] = worker
            except Exception as exc:  # noqa: BLE001 - a lost worker (after Ray's retry) costs one point
                msg = str(exc).strip().splitlines()
                reason = f"ray: {type(exc).__name__}: {msg[0] if msg else ''}"[:300]
                rows, samples = [dict(local._base_row(task.impl, local.workload(task.point), task.refinement),
                                      status="error", reason=reason)], []
            store.append(rows, samples)
            written += rows
            if on_progress:
                on_progress(task, len(tasks) - len(pending), len(tasks))
            if on_point_done:
                on_point_done(task, rows)
        if on_progress:
            on_progress(None, len(tasks), len(tasks))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        meta = store.meta()
        known = {(w["host"], w["gpu"]) for w in meta.get("workers", [])}
        meta["workers"] = meta.get("workers", []) + [
            {"host": h, "gpu": g} for (h, g) in workers if (h, g) not in known]
        meta["ray"] = {"address": address, "gpus_per_point": gpus_per_point}
        store.write_meta(meta)
    return written


def _key(task) -> tuple:
    from dsa_bench.store import row_key

    p = task.point
    return row_key({"implementation": task.impl.name, "phase": p.phase, "batch": p.batch,
                    "context": p.context, "topk": p.topk})
