"""GPU ceilings for the roofline plot: the datasheet peaks of the GPU profile table
(dsa_bench/costmodel/gpus.py, the one GPU spec table: dense tensor-core rates, without 2:4 sparsity,
each with its source) and what this project measured.

Measured by this project on its H200 (SXM, 141 GB): a large bf16 matmul reached ~707 TFLOP/s, an
fp8 matmul ~1268 TFLOP/s and a device-to-device copy ~4.0 TB/s. These are what a kernel can really
reach and are drawn beside the datasheet roofs.

On a CPU run there are no ceilings: the timings are of the Triton interpreter and PyTorch on the
CPU, and a roofline against a GPU would be meaningless.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

MEASURED = "measured by this project on an H200 SXM 141 GB (large matmul; device-to-device copy)"


@dataclass(frozen=True)
class Ceiling:
    label: str  # e.g. "H200 SXM datasheet"
    bf16_tflops: float
    fp8_tflops: Optional[float]
    hbm_gbps: float
    source: str
    measured: bool = False


def _datasheet(name: str) -> Optional[Ceiling]:
    from dsa_bench.costmodel.gpus import profile_for_device

    prof = profile_for_device(name)
    if prof is None:
        return None
    label = prof.name if " " in prof.name else f"{prof.name} SXM"
    return Ceiling(f"{label} datasheet", prof.bf16_tflops.value, prof.fp8_tflops.value,
                   prof.hbm_tbps.value * 1000.0, prof.bf16_tflops.source)


H200_MEASURED = Ceiling("H200 measured", 707.0, 1268.0, 4000.0, MEASURED, measured=True)


def ceilings_for(gpu_name: Optional[str], device: str = "cuda") -> list[Ceiling]:
    """Datasheet ceiling (and the project's measured one on an H200) for a GPU; [] on CPU or unknown GPUs."""
    if not gpu_name or not str(device).startswith("cuda"):
        return []
    out = []
    sheet = _datasheet(gpu_name)
    if sheet is not None:
        out.append(sheet)
    if "H200" in gpu_name.upper():
        out.append(H200_MEASURED)
    return out


def explain(gpu_name: Optional[str], device: str) -> str:
    """One sentence for the report on which ceilings the roofline shows, and why."""
    if not str(device).startswith("cuda") or not gpu_name:
        return ("CPU run: there are no GPU ceilings, and achieved TFLOP/s of the Triton interpreter on the CPU "
                "say nothing about a GPU; the roofline is drawn without ceilings, for the record only.")
    cs = ceilings_for(gpu_name, device)
    if not cs:
        return f"No ceilings are known for {gpu_name}; the roofline is drawn without them."
    return "; ".join(f"{c.label}: BF16 {c.bf16_tflops:g} TFLOP/s"
                     + (f", FP8 {c.fp8_tflops:g} TFLOP/s" if c.fp8_tflops else "")
                     + f", memory {c.hbm_gbps / 1000:g} TB/s ({c.source})" for c in cs)
