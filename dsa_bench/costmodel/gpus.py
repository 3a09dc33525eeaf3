"""GPU profiles for the roofline: dense peak rates, HBM bandwidth and memory, each value with its source.

Peak tensor-core rates are the DENSE ones. NVIDIA's datasheets print Hopper's BF16/FP8 tensor rates
"with sparsity" (2:4 structured sparsity), which is twice the dense rate; attention and GEMMs of
DeepSeek's models do not use structured sparsity, so every value below is the datasheet figure / 2
where the datasheet gives only the sparse one. Bandwidth and memory are as printed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple


class Quantity(NamedTuple):
    """A rated value and where it comes from."""

    value: float
    source: str


_H100_SHEET = "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column)"
_H200_SHEET = "NVIDIA H200 Tensor Core GPU product page / datasheet (H200 SXM column)"
_A100_SHEET = "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column)"
_FLASHMLA_BLOG = (
    "DeepSeek FlashMLA deep-dive blog (github.com/deepseek-ai/FlashMLA, docs/20250422-new-kernel-deep-dive.md): "
    "'An NVIDIA H800 SXM5 GPU has a peak memory bandwidth of 3.35 TB/s and peak FLOPs of 990 TFlops'"
)


@dataclass(frozen=True)
class GpuProfile:
    name: str
    description: str
    bf16_tflops: Quantity  # dense BF16 tensor-core peak, TFLOP/s
    fp8_tflops: Quantity  # dense FP8 tensor-core peak, TFLOP/s (BF16 rate on GPUs without FP8 tensor cores)
    hbm_tbps: Quantity  # HBM bandwidth, TB/s (1e12 bytes/s)
    memory_gb: Quantity  # HBM capacity, GB

    RATED = ("bf16_tflops", "fp8_tflops", "hbm_tbps", "memory_gb")

    def values(self) -> dict[str, Quantity]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in self.RATED}

    def flops_per_s(self, dtype: str) -> float:
        """Dense tensor-core peak for `dtype` (bf16/fp16 share a rate; fp8 is FP8 e4m3)."""
        if dtype in ("bf16", "fp16"):
            return self.bf16_tflops.value * 1e12
        if dtype == "fp8":
            return self.fp8_tflops.value * 1e12
        if dtype == "fp32":  # fp32 inputs go through TF32 tensor cores: half the BF16 rate on Hopper/Ampere
            return self.bf16_tflops.value * 0.5e12
        raise ValueError(f"no peak rate for dtype {dtype!r}")

    @property
    def bytes_per_s(self) -> float:
        return self.hbm_tbps.value * 1e12


GPUS: dict[str, GpuProfile] = {
    "H800": GpuProfile(
        name="H800",
        description="NVIDIA H800 SXM5 80GB (the paper's GPU: Hopper GH100 with H100 SXM5 compute, NVLink cut to 400 GB/s)",
        bf16_tflops=Quantity(989.5, _FLASHMLA_BLOG + " (990 rounded); equal to the H100 SXM5 dense BF16 rate, "
                                    + _H100_SHEET + ": 1,979 TFLOPS with sparsity -> 989.5 dense"),
        fp8_tflops=Quantity(1979.0, "2x the dense BF16 rate, as on every Hopper tensor core (NVIDIA Hopper architecture "
                                    "whitepaper); equals " + _H100_SHEET + ": FP8 3,958 TFLOPS with sparsity -> 1,979 dense"),
        hbm_tbps=Quantity(3.35, _FLASHMLA_BLOG),
        memory_gb=Quantity(80.0, "H800 SXM5 80GB HBM3, the same memory as the H100 SXM5 (" + _H100_SHEET
                                 + ": 80 GB); DeepSeek's FlashMLA and DeepGEMM benchmarks name the part 'H800 SXM5'"),
    ),
    "H100": GpuProfile(
        name="H100",
        description="NVIDIA H100 SXM5 80GB",
        bf16_tflops=Quantity(989.5, _H100_SHEET + ": BF16 tensor 1,979 TFLOPS with sparsity -> 989.5 dense"),
        fp8_tflops=Quantity(1979.0, _H100_SHEET + ": FP8 tensor 3,958 TFLOPS with sparsity -> 1,979 dense"),
        hbm_tbps=Quantity(3.35, _H100_SHEET + ": GPU memory bandwidth 3.35 TB/s"),
        memory_gb=Quantity(80.0, _H100_SHEET + ": GPU memory 80 GB (HBM3)"),
    ),
    "H200": GpuProfile(
        name="H200",
        description="NVIDIA H200 SXM 141GB (GH100 compute of the H100, HBM3e memory)",
        bf16_tflops=Quantity(989.5, _H200_SHEET + ": BF16 tensor 1,979 TFLOPS with sparsity -> 989.5 dense"),
        fp8_tflops=Quantity(1979.0, _H200_SHEET + ": FP8 tensor 3,958 TFLOPS with sparsity -> 1,979 dense"),
        hbm_tbps=Quantity(4.8, _H200_SHEET + ": GPU memory bandwidth 4.8 TB/s"),
        memory_gb=Quantity(141.0, _H200_SHEET + ": GPU memory 141 GB HBM3e"),
    ),
    "A100": GpuProfile(
        name="A100",
        description="NVIDIA A100 SXM 80GB (no FP8 tensor cores: FP8 work is priced at the BF16 rate)",
        bf16_tflops=Quantity(312.0, _A100_SHEET + ": BF16 tensor 312 TFLOPS dense (624 with sparsity)"),
        fp8_tflops=Quantity(312.0, _A100_SHEET + ": Ampere has no FP8 tensor cores; FP8 data is upcast and runs "
                                                 "at the BF16 rate of 312 TFLOPS"),
        hbm_tbps=Quantity(2.039, _A100_SHEET + ": GPU memory bandwidth 2,039 GB/s (80GB SXM)"),
        memory_gb=Quantity(80.0, _A100_SHEET + ": GPU memory 80 GB HBM2e"),
    ),
}


# Form factors of the same chips with lower clocks / other memory (datasheets' PCIe and NVL columns).
_VARIANTS = {
    ("H100", "PCIE"): (756.0, 1513.0, 2.0, 80.0, _H100_SHEET.replace("H100 SXM column", "H100 PCIe column")),
    ("H800", "PCIE"): (756.0, 1513.0, 2.0, 80.0, _H100_SHEET.replace("H100 SXM column", "H100 PCIe column")),
    ("H100", "NVL"): (835.0, 1671.0, 3.9, 94.0, _H100_SHEET.replace("H100 SXM column", "H100 NVL column")),
    ("H200", "NVL"): (835.0, 1671.0, 4.8, 141.0, _H200_SHEET.replace("H200 SXM column", "H200 NVL column")),
}


def profile_for_device(device_name: str | None) -> "GpuProfile | None":
    """The profile of a GPU as torch/NVML name it ('NVIDIA H200', 'NVIDIA H100 PCIe', ...), or None.

    SXM parts map to GPUS; PCIe / NVL parts get their datasheet column (dense rates) under the chip's name."""
    if not device_name:
        return None
    words = str(device_name).upper().replace("-", " ").split()
    chip = next((key for key in GPUS if key.upper() in words), None)
    if chip is None:
        return None
    form = next((f for f in ("PCIE", "NVL") if f in words), None)
    if form is None or (chip, form) not in _VARIANTS:
        return GPUS[chip]
    bf16, fp8, tbps, gb, sheet = _VARIANTS[(chip, form)]
    label = {"PCIE": "PCIe", "NVL": "NVL"}[form]
    return GpuProfile(
        name=f"{chip} {label}", description=f"NVIDIA {chip} {label}",
        bf16_tflops=Quantity(bf16, sheet + " (dense, without sparsity)"),
        fp8_tflops=Quantity(fp8, sheet + " (dense, without sparsity)"),
        hbm_tbps=Quantity(tbps, sheet), memory_gb=Quantity(gb, sheet))


def get_gpu(name: str) -> GpuProfile:
    """A profile by name, case-insensitive (`h200` -> H200)."""
    for key, prof in GPUS.items():
        if key.lower() == str(name).strip().lower():
            return prof
    raise ValueError(f"unknown GPU profile {name!r}; known: {', '.join(GPUS)}")


__all__ = ["GPUS", "GpuProfile", "Quantity", "get_gpu", "profile_for_device"]
