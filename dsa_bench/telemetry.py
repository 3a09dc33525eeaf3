"""GPU telemetry while a point is timed: SM clock and temperature, sampled on a thread through NVML
(nvidia-ml-py, an optional dependency: `pip install -e ".[gpu]"`). Without it, or on the CPU, the
sampler records nothing and the columns stay empty.

A point whose median SM clock over its timing was below THROTTLE_FRACTION of the GPU's maximum is
flagged `throttled`: its latency is not the card's steady speed (a cold start at idle clocks, a hot
or power-capped card), and the report marks it.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

THROTTLE_FRACTION = 0.9
PERIOD_S = 0.01


class ClockSampler:
    def __init__(self, device_type: str, device_index: Optional[int] = 0, period_s: float = PERIOD_S):
        self.enabled = device_type == "cuda"
        self.index = device_index or 0
        self.period = period_s
        self.clocks: list[int] = []
        self.temps: list[int] = []
        self.max_clock: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._nvml = None

    def __enter__(self) -> "ClockSampler":
        if not self.enabled:
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.max_clock = int(pynvml.nvmlDeviceGetMaxClockInfo(self._handle, pynvml.NVML_CLOCK_SM))
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no NVML (not installed, no driver access): no telemetry
            self._nvml = None
            return self
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="dsa-bench-telemetry", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        nv = self._nvml
        try:
            self.clocks.append(int(nv.nvmlDeviceGetClockInfo(self._handle, nv.NVML_CLOCK_SM)))
            self.temps.append(int(nv.nvmlDeviceGetTemperature(self._handle, nv.NVML_TEMPERATURE_GPU)))
        except Exception:  # noqa: BLE001
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def summary(self) -> dict[str, Any]:
        """Columns for the point's row (empty when nothing was sampled)."""
        if not self.clocks:
            return {}
        ordered = sorted(self.clocks)
        median = ordered[len(ordered) // 2]
        out: dict[str, Any] = {"sm_clock_mhz": median, "sm_clock_min_mhz": ordered[0],
                               "sm_clock_max_mhz": self.max_clock, "gpu_temp_c": max(self.temps) if self.temps else None}
        if self.max_clock:
            out["throttled"] = median < THROTTLE_FRACTION * self.max_clock
        return out
