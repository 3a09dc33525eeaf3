"""Take the production kernels out of a vLLM wheel into a folder of their own, without installing
vLLM (whose Python stack a benchmark machine may not have, or may have for another torch).

    dsa-bench peers extract vllm-0.26.0-cp38-abi3-manylinux_2_28_x86_64.whl .peers
    export DSA_BENCH_VLLM_DIR=$PWD/.peers/vllm

Only these members are taken: FlashMLA's and vLLM's stable-ABI op libraries, the FA3 library,
DeepGEMM (its Python package, headers for its JIT, and the `_C` of the chosen Pythons) and the
wheel's METADATA (its version and the torch it pins). `pack` turns such a folder into one xz tarball
(split in parts under a size limit, for machines that take files of bounded size) and `unpack`
restores it. The folder is third-party code: keep it out of version control.
"""
from __future__ import annotations

import fnmatch
import io
import lzma
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable, Optional

MEMBERS = (
    "vllm/_flashmla_C.abi3.so",
    "vllm/_C_stable_libtorch.abi3.so",
    "vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so",
    "vllm/third_party/deep_gemm/*",
    "vllm-*.dist-info/METADATA",
)


def _wanted(name: str, pythons: Optional[Iterable[str]]) -> bool:
    if not any(fnmatch.fnmatch(name, pat) for pat in MEMBERS):
        return False
    base = name.rsplit("/", 1)[-1]
    if pythons is not None and "/deep_gemm/" in name and base.startswith("_C.cpython-"):
        return any(base.startswith(f"_C.cpython-{p.replace('.', '')}-") for p in pythons)
    return True


def extract(wheel: Path, out: Path, pythons: Optional[Iterable[str]] = None) -> list[Path]:
    """Writes the wanted members of `wheel` under `out` (keeping their paths); returns them.
    `pythons` (e.g. ["3.12"]) keeps only those Pythons' DeepGEMM `_C` (all when None)."""
    pythons = list(pythons) if pythons is not None else None
    written = []
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if _wanted(n, pythons) and not n.endswith("/")]
        if not any(n.endswith("_flashmla_C.abi3.so") for n in names):
            raise ValueError(f"{wheel} holds no vllm/_flashmla_C.abi3.so: not a vLLM wheel with FlashMLA")
        for n in names:
            target = (out / n).resolve()
            if out.resolve() not in target.parents:
                raise ValueError(f"{wheel}: member {n!r} would be written outside {out}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(n) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            written.append(target)
    return written


def pack(folder: Path, archive: Path, part_bytes: Optional[int] = None, preset: int = 4) -> list[Path]:
    """`folder` -> `archive` (.tar.xz), or archive.part00, .part01, ... of at most part_bytes each."""
    buf = io.BytesIO()
    with lzma.open(buf, "wb", preset=preset) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    data = buf.getvalue()
    if not part_bytes or len(data) <= part_bytes:
        archive.write_bytes(data)
        return [archive]
    parts = []
    for i in range(0, len(data), part_bytes):
        p = archive.with_name(f"{archive.name}.part{i // part_bytes:02d}")
        p.write_bytes(data[i:i + part_bytes])
        parts.append(p)
    return parts


def unpack(parts: list[Path], out: Path) -> None:
    """The inverse of pack: parts joined in name order, untarred under `out`."""
    data = b"".join(p.read_bytes() for p in sorted(parts))
    with lzma.open(io.BytesIO(data)) as xz, tarfile.open(fileobj=xz, mode="r") as tar:
        tar.extractall(out, filter="data")
