"""GPU ceilings for the roofline plot: datasheet peaks, and what this project measured.

Datasheet values are NVIDIA's dense (no 2:4 sparsity) tensor-core peaks, i.e. half of the "with
sparsity" figures on the product pages, and the HBM bandwidth:
  - H100 / H800 SXM: BF16 989 TFLOP/s, FP8 1979 TFLOP/s, 3.35 TB/s (NVIDIA H100 datasheet)
  - H100 PCIe / H800 PCIe: BF16 756, FP8 1513 TFLOP/s, 2.0 TB/s (NVIDIA H100 datasheet)
  - H100 NVL: BF16 835, FP8 1671 TFLOP/s, 3.9 TB/s (NVIDIA H100 datasheet)
  - H200 SXM: BF16 989, FP8 1979 TFLOP/s, 4.8 TB/s (NVIDIA H200 product page / datasheet)
  - H200 NVL: BF16 835, FP8 1671 TFLOP/s, 4.8 TB/s (NVIDIA H200 product page / datasheet)
Measured by this project on its H200 (SXM, 141 GB): a large bf16 matmul reached ~707 TFLOP/s, an
fp8 matmul ~1268 TFLOP/s and a device-to-device copy ~4.0 TB/s. These are what a kernel can really
reach and are drawn beside the datasheet roofs.

On a CPU run there are no ceilings: the timings are of the Triton interpreter and PyTorch on the
CPU, and a roofline against a GPU would be meaningless.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

H100_SHEET = "NVIDIA H100 Tensor Core GPU datasheet (dense, without sparsity)"
H200_SHEET = "NVIDIA H200 Tensor Core GPU product page/datasheet (dense, without sparsity)"
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
    n = name.upper()
    if "H200" in n:
        if "NVL" in n:
            return Ceiling("H200 NVL datasheet", 835.0, 1671.0, 4800.0, H200_SHEET)
        return Ceiling("H200 SXM datasheet", 989.0, 1979.0, 4800.0, H200_SHEET)
    if "H100" in n or "H800" in n:
        chip = "H100" if "H100" in n else "H800"
        if "PCIE" in n:
            return Ceiling(f"{chip} PCIe datasheet", 756.0, 1513.0, 2000.0, H100_SHEET)
        if "NVL" in n:
            return Ceiling(f"{chip} NVL datasheet", 835.0, 1671.0, 3900.0, H100_SHEET)
        return Ceiling(f"{chip} SXM datasheet", 989.0, 1979.0, 3350.0, H100_SHEET)
    return None


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
