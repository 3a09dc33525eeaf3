"""What a run was measured on: GPU, clocks, driver, library versions, git commit."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_info() -> dict[str, Any]:
    if os.environ.get("DSA_BENCH_GIT_COMMIT"):
        # A copy of the tree shipped to a GPU machine, without .git or with a stale one: the shipper
        # names the commit, and that wins over whatever .git the copy carries.
        return {"commit": os.environ["DSA_BENCH_GIT_COMMIT"], "dirty": None, "source": "DSA_BENCH_GIT_COMMIT"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    commit = _git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _gpu_info(device: torch.device) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(device)
    info: dict[str, Any] = {
        "gpu_name": props.name,
        "sm_count": props.multi_processor_count,
        "gpu_memory_bytes": props.total_memory,
        "l2_cache_bytes": getattr(props, "L2_cache_size", None),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_version": torch.version.cuda,
    }
    try:  # clocks and driver come from NVML (nvidia-ml-py), when installed
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        clocks = {}
        for label, kind in (("sm", pynvml.NVML_CLOCK_SM), ("mem", pynvml.NVML_CLOCK_MEM)):
            clocks[f"{label}_mhz"] = pynvml.nvmlDeviceGetClockInfo(h, kind)
            clocks[f"{label}_max_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, kind)
        info["clocks"] = clocks
        info["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000
        info["temperature_c"] = pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        drv = pynvml.nvmlSystemGetDriverVersion()
        info["driver_version"] = drv.decode() if isinstance(drv, bytes) else drv
    except Exception as exc:  # noqa: BLE001 - missing NVML must not stop a run
        info["clocks"] = None
        info["nvml_error"] = f"{type(exc).__name__}: {exc}"
    return info


def clocks_now(device: torch.device) -> dict[str, Any] | None:
    """SM / memory clocks at this moment (recorded again at the end of a run to spot throttling)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return {"sm_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                "mem_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)}
    except Exception:  # noqa: BLE001
        return None


def capture(device: torch.device) -> dict[str, Any]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "triton": triton_version,
        "device": str(device),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "git": git_info(),
        "argv": sys.argv,
    }
    if device.type == "cuda":
        env.update(_gpu_info(device))
    else:
        env["gpu_name"] = None
    return env
