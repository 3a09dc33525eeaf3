"""The measurement engine: runs every (point, implementation) of a scenario the same way.

For each pair: prepare inputs, check the output against the PyTorch reference (a wrong result is
recorded as status=wrong, never timed), warm up, take timed samples, measure peak memory, time
DSA's stages, derive TFLOP/s and GB/s from the analytic work, and append the rows to the store.
A failing or out-of-memory pair is recorded and the sweep goes on.
"""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from dsa_bench import environment
from dsa_bench.errors import InputError
from dsa_bench.interrupts import reraise_if_user_interrupt
from dsa_bench.ops import dense_form
from dsa_bench.registry import REGISTRY, Implementation, Unavailable
from dsa_bench.scenario import Scenario
from dsa_bench.store import RunStore, new_run_id, row_key
from dsa_bench.telemetry import ClockSampler
from dsa_bench.sweep import dense_point, expand
from dsa_bench.timing import Stats, Timer
from dsa_bench.workload import Point, Workload

# ||out - ref|| / ||ref|| allowed per compute dtype. bf16 keeps 8 mantissa bits: outputs rounded
# to bf16 alone give ~4e-3, and bf16 P@V products add about as much; fp32 inputs on the GPU go
# through tf32 tensor cores (10-bit mantissa, ~1e-3).
TOLERANCE = {"bf16": 2e-2, "fp16": 5e-3, "fp32": 2e-3}
CPU_TIMING_NOTE = (
    "CPU run: timings are of PyTorch references and of Triton kernels in the interpreter, "
    "on the CPU. They are NOT GPU timings and say nothing about GPU speed."
)


@dataclass
class Task:
    impl: Implementation
    point: Point
    refinement: Optional[int] = None  # the --refine-crossover round that added this point (None: the sweep)

    def label(self) -> str:
        k = f" k={self.point.topk}" if self.point.topk is not None else ""
        return f"{self.impl.name} {self.point.phase} B={self.point.batch} T={self.point.context}{k}"


@dataclass
class RunResult:
    store: RunStore
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped_done: int = 0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available on this machine")
    return torch.device(device)


def plan(scenario: Scenario, keep: Optional[Callable[[Point], bool]] = None) -> list[Task]:
    """(point, implementation) pairs to run; dense ones once per (batch, context); `keep` selects points."""
    tasks, seen = [], set()
    for p in expand(scenario.sweep, scenario.phase):
        for name in scenario.implementations:
            impl = REGISTRY[name]
            pt = dense_point(p) if impl.family == "dense" else p
            if keep is not None and not keep(pt):  # a dense point has no k: topk conditions pass it
                continue
            if (name, pt.key()) not in seen:
                seen.add((name, pt.key()))
                tasks.append(Task(impl, pt))
    return tasks


def _check_rows(S: int, n: int) -> list[tuple[int, int]]:
    """Up to n query rows in three blocks (start, middle, end) so every part of the causal range is seen."""
    if S <= n:
        return [(0, S)]
    b = max(1, n // 3)
    mid = S // 2 - b // 2
    return [(0, b), (mid, mid + b), (S - b, S)]


def _is_oom(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return (isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in msg
            or "can't allocate memory" in msg or "cannot allocate memory" in msg)  # CPU allocator


class Runner:
    def __init__(self, scenario: Scenario, device: torch.device, store: RunStore,
                 on_progress: Optional[Callable[[Task, int, int], None]] = None,
                 on_point_done: Optional[Callable[[Task, list[dict]], None]] = None,
                 keep: Optional[Callable[[Point], bool]] = None):
        self.s = scenario
        self.device = device
        self.store = store
        self.on_progress = on_progress
        self.on_point_done = on_point_done
        self.keep = keep
        m = scenario.measure
        self.masked_mha_below = scenario.masked_mha_threshold()
        self.timer = Timer(device, flush_l2=m.flush_l2, warmup_ms=m.warmup_ms, min_samples=m.min_samples,
                           max_samples=m.max_samples, min_time_ms=m.min_time_ms, max_time_ms=m.max_time_ms)

    def workload(self, p: Point) -> Workload:
        m = self.s.measure
        return Workload(self.s.model, p, self.device, dtype=m.dtype, indexer_dtype=m.indexer_dtype,
                        decode_tokens=self.s.decode_tokens, prefill_tokens=self.s.prefill_tokens, seed=m.seed,
                        prefill_chunk=m.prefill_chunk, masked_mha_below=self.masked_mha_below)

    # --- one (point, implementation) --------------------------------------------------------
    def measure(self, task: Task) -> tuple[list[dict], list[dict]]:
        impl, w = task.impl, self.workload(task.point)
        base = self._base_row(impl, w, task.refinement)
        samples: list[dict] = []
        try:
            if impl.cuda_only and self.device.type != "cuda":
                return [dict(base, status="skipped", reason="needs a CUDA GPU")], []
            why_not = impl.unavailable() if impl.unavailable is not None else None
            if why_not:
                return [dict(base, status="skipped", reason=why_not)], []
            prepared = impl.prepare(w)
            base["kernel_variant"] = prepared.variant
            check, rel_err, problem = self._check(impl, w, prepared)
            base.update(check=check, rel_err=rel_err)
            if check == "failed":
                tol = TOLERANCE[w.dtype]
                return [dict(base, status="wrong", reason=problem or f"rel_err {rel_err:.3g} > tolerance {tol:g}")], []
            timed, mode = self._timed_callable(w, prepared.run)
            base["timing"] = mode
            self.timer.warmup(timed)
            with ClockSampler(self.device.type, self.device.index) as clocks:
                stats = self.timer.measure(timed)
            del timed
            peak, workspace = self.timer.peak_memory(prepared.run)
            if impl.family == "dsa":
                kind = "dsa_masked_mha" if prepared.mode == "masked_mha" else "dsa"
                base["attention_mode"] = prepared.mode or "sparse_mla"
            else:
                kind = dense_form(w.point.phase)
            rows = [self._timed_row(base, "total", stats, w.work(kind), peak_mem_bytes=peak, workspace_bytes=workspace,
                                    **clocks.summary())]
            samples += self._sample_rows(base, "total", 0, stats)
            if self.s.measure.stages and prepared.stages is not None:
                rows += self._stages(base, w, prepared, samples)
            return [self._with_cost(r, w) for r in rows], samples
        except Unavailable as exc:
            return [dict(base, status="skipped", reason=_one_line(exc))], []
        except BaseException as exc:  # noqa: BLE001 - one bad point must not stop the sweep
            # An implementation's own SystemExit / KeyboardInterrupt is its failure; the user's Ctrl-C
            # (or SIGTERM) ends the sweep.
            reraise_if_user_interrupt(exc)
            if _is_oom(exc):
                return [dict(base, status="oom", reason=_one_line(exc))], []
            return [dict(base, status="error", reason=_one_line(exc))], []
        finally:
            w.release()
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _check(self, impl: Implementation, w: Workload, prepared) -> tuple[str, Optional[float], Optional[str]]:
        """(check, rel_err, problem). DSA with a known selection: the selection is judged by the
        reference scores and the output against reference attention over that same selection, so a
        near-tie picked differently by lower-precision indexer arithmetic is not an output error."""
        out = prepared.output(prepared.run())  # also the first, compiling call
        if impl.is_reference:
            return "reference", None, None
        if not self.s.measure.check:
            return "off", None, None
        from dsa_bench.implementations import check_selection, reference_rows

        indices = prepared.indices() if prepared.indices is not None else None
        reference_kv = prepared.reference_kv() if prepared.reference_kv is not None else None
        num = den = 0.0
        for r0, r1 in _check_rows(w.S, self.s.measure.check_rows):
            if indices is not None:
                problem = check_selection(w, indices, r0, r1)
                if problem:
                    return "failed", None, problem
            ref = reference_rows(impl.family, w, r0, r1, indices, mode=prepared.mode, kv=reference_kv).float()
            got = out[:, r0:r1].float()
            num += float((got - ref).pow(2).sum())
            den += float(ref.pow(2).sum())
        rel = math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)
        if math.isnan(rel) or rel > TOLERANCE[w.dtype]:
            return "failed", (rel if not math.isnan(rel) else math.inf), None
        return "passed", rel, None

    def _with_cost(self, row: dict, w: Workload) -> dict:
        """Attention-only USD per million tokens of a timed row: its latency at the scenario's GPU price
        (cost.gpu_hour_usd, or --price), over the B x S query tokens the call processes. GPU runs only:
        a CPU timing priced as a GPU hour would mean nothing."""
        lat = row.get("latency_ms")
        if self.device.type != "cuda" or not lat or w.B * w.S == 0:
            return row
        usd = lat / 1e3 / 3600.0 * self.s.cost.gpu_hour_usd / (w.B * w.S) * 1e6
        return dict(row, usd_per_million_tokens=usd, gpu_hour_usd=self.s.cost.gpu_hour_usd)

    def use_graphs(self, w: Workload) -> bool:
        wanted = self.s.measure.cuda_graph
        if wanted is None:
            wanted = w.point.phase == "decode"
        return bool(wanted) and self.device.type == "cuda"

    def _timed_callable(self, w: Workload, fn):
        """(what to time, how it is timed: 'cuda_graph' or 'eager', with why when a graph was wanted
        and could not be had)."""
        if not self.use_graphs(w):
            wanted = self.s.measure.cuda_graph
            return fn, ("eager (no CUDA device)" if wanted and self.device.type != "cuda" else "eager")
        try:
            return self.timer.graphed(fn), "cuda_graph"
        except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: time it eagerly
            torch.cuda.synchronize(self.device)
            return fn, f"eager (graph capture failed: {_one_line(exc)[:120]})"

    def _stages(self, base: dict, w: Workload, prepared, samples: list[dict]) -> list[dict]:
        """Time each stage chunk by chunk; a stage's median is the sum of its chunks' medians."""
        per_stage: dict[str, list[Stats]] = {}
        for i, (stage, fn) in enumerate(prepared.stages()):
            fn, _ = self._timed_callable(w, fn)  # same mode as the whole call (recorded there)
            self.timer.warmup(fn)
            st = self.timer.measure(fn)
            del fn
            per_stage.setdefault(stage, []).append(st)
            samples += self._sample_rows(base, stage, len(per_stage[stage]) - 1, st)
        rows = []
        for stage, parts in per_stage.items():
            agg = _SummedStats(parts)
            rows.append(self._timed_row(base, stage, agg, w.work(stage)))
        return rows

    # --- rows ---------------------------------------------------------------------------------
    def _base_row(self, impl: Implementation, w: Workload, refinement: Optional[int] = None) -> dict[str, Any]:
        p = w.point
        return {"refinement": refinement,
            "implementation": impl.name, "family": impl.family, "backend": impl.backend,
            "baseline": impl.baseline, "phase": p.phase, "stage": "total", "batch": p.batch,
            "context": p.context, "topk": p.topk, "query_tokens": w.S, "q_start": w.q_start,
            "kv_cache_bytes": w.kv_cache_bytes(impl.family), "dtype": w.dtype,
            "indexer_dtype": w.indexer_dtype if impl.family == "dsa" else None,
            "device": self.device.type,
        }

    @staticmethod
    def _timed_row(base: dict, stage: str, st, work: tuple[int, int], **extra) -> dict[str, Any]:
        flops, nbytes = work
        sec = st.median / 1e3
        return dict(
            base, stage=stage, status="ok", latency_ms=st.median, latency_ms_q1=st.q1, latency_ms_q3=st.q3,
            latency_ms_min=st.min, samples=len(st.samples), flops=flops, bytes=nbytes,
            tflops=flops / sec / 1e12 if sec > 0 else None, gbps=nbytes / sec / 1e9 if sec > 0 else None,
            **extra,
        )

    @staticmethod
    def _sample_rows(base: dict, stage: str, chunk: int, st: Stats) -> list[dict]:
        keys = ("implementation", "phase", "batch", "context", "topk")
        return [dict({k: base[k] for k in keys}, stage=stage, chunk=chunk, sample=i, ms=ms)
                for i, ms in enumerate(st.samples)]

    # --- the sweep ------------------------------------------------------------------------------
    def run(self, done: set[tuple] = frozenset(), tasks: Optional[list[Task]] = None) -> RunResult:
        """Measure `tasks` (default: the scenario's plan), skipping keys in `done`."""
        tasks = plan(self.s, self.keep) if tasks is None else tasks
        result = RunResult(self.store)
        for i, task in enumerate(tasks):
            key = row_key({"implementation": task.impl.name, "phase": task.point.phase,
                           "batch": task.point.batch, "context": task.point.context, "topk": task.point.topk})
            if self.on_progress:
                self.on_progress(task, i, len(tasks))
            if key in done:
                result.skipped_done += 1
                continue
            rows, samples = self.measure(task)
            self.store.append(rows, samples)
            result.rows += rows
            if self.on_point_done:
                self.on_point_done(task, rows)
        if self.on_progress:
            self.on_progress(None, len(tasks), len(tasks))
        return result


class _SummedStats:
    """Per-chunk stats added up: median and quartiles are sums of the chunks' (one chunk: exact)."""

    def __init__(self, parts: list[Stats]):
        self.median = sum(p.median for p in parts)
        self.q1 = sum(p.q1 for p in parts)
        self.q3 = sum(p.q3 for p in parts)
        self.min = sum(p.min for p in parts)
        self.samples = min((p.samples for p in parts), key=len)


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:300]


# --- the library entry point the CLI wraps ---------------------------------------------------------

def start_run(scenario: Scenario, *, scenario_file: Optional[str], device: torch.device, out_root: Path,
              resume: bool) -> tuple[RunStore, set[tuple]]:
    """Create (or reopen, with resume) the run directory; returns the store and the keys already done."""
    if resume:
        store = RunStore.latest(out_root, scenario.name)
        if store is None:
            raise InputError(f"--resume: there is no earlier run of scenario {scenario.name!r} under {out_root} "
                             "to continue", hint="run without --resume to start one (or give the --out of the run)")
        if store is not None:
            meta = store.meta()
            if not _same_measurements(meta.get("scenario"), scenario) or meta.get("device") != device.type:
                raise ValueError(
                    f"--resume: the latest run {store.dir} was made from a different scenario or device; "
                    "run without --resume to start a new run"
                )
            done = store.reopen()
            meta["scenario"] = scenario.model_dump(mode="json")  # refine_crossover may have been added
            meta["status"] = "running"
            meta.setdefault("resumed_at", []).append(_now())
            store.write_meta(meta)
            return store, done
    meta = {
        "run_id": None, "scenario_name": scenario.name, "scenario_file": scenario_file,
        "scenario": scenario.model_dump(mode="json"), "device": device.type, "status": "running",
        "start_time": _now(), "end_time": None, "environment": environment.capture(device),
        "clocks_start": environment.clocks_now(device),
        "timing_note": CPU_TIMING_NOTE if device.type == "cpu" else
        "GPU timings with CUDA events; median of samples after warm-up"
        + ("; L2 flushed before each sample" if scenario.measure.flush_l2 else "; L2 not flushed (warm cache)")
        + {None: "; decode timed as CUDA graph replays, prefill eagerly (the `timing` column says which)",
           True: "; every call timed as CUDA graph replays (the `timing` column says which)",
           False: "; every call timed eagerly (launch and host overhead included)"}[scenario.measure.cuda_graph],
    }
    peers = _production_sources(scenario)
    if peers:
        meta["production_kernels"] = peers
    run_id = new_run_id(device.type)
    meta["run_id"] = run_id
    try:
        return RunStore.create(out_root, scenario.name, run_id, meta), set()
    except OSError as e:
        from dsa_bench.errors import describe_os_error

        raise InputError(f"--out {out_root}: cannot create the run directory there ({describe_os_error(e)})",
                         hint="choose an --out that is a writable directory (or does not exist yet)") from None


def _production_sources(scenario: Scenario) -> dict:
    """Where each production library the scenario's implementations need comes from (version and
    path, or why it cannot load), located without loading, for run.json."""
    from dsa_bench.implementations.production import NEEDS
    from dsa_bench.peers import libraries

    keys = sorted({k for name in scenario.implementations for k in NEEDS.get(name, ())})
    return {k: dict(zip(("source", "reason"), libraries.locate(k))) for k in keys}


def _same_measurements(recorded, scenario: Scenario) -> bool:
    """Whether a run's recorded scenario measures what `scenario` measures: only refine_crossover may
    differ, so `--resume --refine-crossover` refines a finished run in place."""
    if not isinstance(recorded, dict):
        return False
    now = scenario.model_dump(mode="json")
    return {k: v for k, v in recorded.items() if k != "refine_crossover"} == \
        {k: v for k, v in now.items() if k != "refine_crossover"}


def finish_run(store: RunStore, device: torch.device, status: str, reason: Optional[str] = None) -> None:
    """Mark the run complete, failed (with the reason) or interrupted, and release its lock."""
    from dsa_bench.peers import libraries

    try:
        meta = store.meta()
        meta.update(status=status, end_time=_now(), clocks_end=environment.clocks_now(device))
        if reason:
            meta["failure"] = reason
        variants = sorted({str(r["kernel_variant"]) for r in store.rows() if r.get("kernel_variant") not in (None, "")})
        if variants:
            meta["kernel_variants"] = variants
        if libraries.loaded():  # what this process really loaded (a Ray run loads in its workers)
            meta["production_kernels_loaded"] = libraries.loaded()
        store.write_meta(meta)
    finally:
        store.unlock()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = ["Runner", "plan", "resolve_device", "start_run", "finish_run", "TOLERANCE", "CPU_TIMING_NOTE"]
