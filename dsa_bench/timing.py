"""Timing: CUDA events on the GPU (L2 flushed before each sample), perf_counter on the CPU.

Sampling is adaptive: after warm-up, keep taking samples until both `min_samples` and `min_time_ms`
are reached, stopping early at `max_samples` or `max_time_ms` (never below 3 samples), so a 20 us
decode kernel gets hundreds of samples and a 600 ms prefill a handful.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


@dataclass
class Stats:
    samples: list[float]

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def min(self) -> float:
        return float(np.min(self.samples))


class Timer:
    """Times zero-argument callables on one device."""

    def __init__(self, device: torch.device, *, flush_l2: bool, warmup_ms: float, min_samples: int,
                 max_samples: int, min_time_ms: float, max_time_ms: float):
        self.device = device
        self.cuda = device.type == "cuda"
        self.warmup_ms = warmup_ms
        self.min_samples, self.max_samples = min_samples, max_samples
        self.min_time_ms, self.max_time_ms = min_time_ms, max_time_ms
        self.flush_l2 = flush_l2 and self.cuda
        self._flush_buf = None
        if self.flush_l2:
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 << 20)
            # Writing twice the L2 evicts every line the previous sample left behind.
            self._flush_buf = torch.empty(max(2 * l2, 256 << 20), dtype=torch.uint8, device=device)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _one(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            if self._flush_buf is not None:
                self._flush_buf.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def graphed(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """A callable replaying a CUDA graph captured from one call of `fn` (warmed up first on a
        side stream, as capture requires). Launch and host overhead leave the timed region; the
        kernels and their inputs' addresses stay the same. The graph keeps its outputs alive."""
        if not self.cuda:
            raise RuntimeError("CUDA graphs need a CUDA device")
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()

        def replay() -> Any:
            graph.replay()
            return out

        replay.graph = graph  # keep the graph (and its memory pool) alive with the callable
        return replay

    def warmup(self, fn: Callable[[], Any]) -> None:
        """Run until compilation/autotuning is done and `warmup_ms` of steady calls have passed."""
        fn()  # compiles (Triton JIT, cuDNN plan selection, autotuning)
        self._sync()
        t0 = time.perf_counter()
        while (time.perf_counter() - t0) * 1e3 < self.warmup_ms:
            fn()
            self._sync()

    def measure(self, fn: Callable[[], Any]) -> Stats:
        samples: list[float] = []
        total = 0.0
        while True:
            ms = self._one(fn)
            samples.append(ms)
            total += ms
            n = len(samples)
            if n >= self.max_samples:
                break
            if n >= self.min_samples and total >= self.min_time_ms:
                break
            if total >= self.max_time_ms and n >= min(3, self.min_samples):
                break
        return Stats(samples)

    def peak_memory(self, fn: Callable[[], Any]) -> tuple[int | None, int | None]:
        """(peak bytes allocated during one call, inputs included; the call's own workspace)."""
        if not self.cuda:
            return None, None
        self._sync()
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        out = fn()
        self._sync()
        peak = torch.cuda.max_memory_allocated(self.device)
        del out
        return int(peak), int(peak - before)
