"""The kernels package's structure: references without Triton, lazy public names, one config table per
kernel module (GPU and interpreter entries), the version-guarded interpreter fix, the GPU self-check
harnesses inside the installed package."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL_MODULES = ["kernels.indexer", "kernels.topk", "kernels.mla.tl_kernel", "kernels.dense_mha", "kernels.masked_mha"]


def _fresh_python(code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_references_and_composition_import_without_triton():
    _fresh_python(
        "import sys\n"
        "import kernels.reference, kernels.dsa, kernels.topk_torch, kernels\n"
        "assert 'triton' not in sys.modules, sorted(m for m in sys.modules if m.startswith('triton'))[:5]\n"
        "assert callable(kernels.reference.dsa_attention)\n"
    )


def test_public_names_are_the_functions_even_after_their_modules_load():
    import kernels
    import kernels.dense_mha  # noqa: F401  (a submodule named like its function)
    import kernels.masked_mha  # noqa: F401

    for name in kernels.__all__:
        assert callable(getattr(kernels, name)), name
    assert kernels.dense_mha.__module__ == "kernels.dense_mha"
    assert kernels.masked_mha.__module__ == "kernels.masked_mha"
    assert kernels.dsa_attention is kernels.dsa_attention  # built once
    assert set(kernels.__all__) <= set(dir(kernels))
    with pytest.raises(AttributeError):
        kernels.no_such_kernel  # noqa: B018


def test_torch_topk_baseline_is_reexported():
    from kernels.topk import topk_indices_torch as via_triton_module
    from kernels.topk_torch import topk_indices_torch

    assert via_triton_module is topk_indices_torch


@pytest.mark.parametrize("name", KERNEL_MODULES)
def test_one_config_table_per_kernel_module(name):
    """CONFIG = {"gpu": ..., "interpreter": ...} with the same keys (and, nested, the same sub-keys)."""
    config = importlib.import_module(name).CONFIG
    assert set(config) == {"gpu", "interpreter"}
    gpu, interp = config["gpu"], config["interpreter"]
    assert set(gpu) == set(interp)
    for key, val in gpu.items():
        if isinstance(val, dict) and key != "masked":  # masked: GPU-only tile overrides
            assert set(val) == set(interp[key]), (name, key)


def test_launch_config_follows_the_backend():
    from kernels import _common

    table = {"gpu": "g", "interpreter": "i"}
    assert _common.launch_config(table) == ("i" if _common.INTERPRET else "g")


@pytest.mark.parametrize("triton,numpy,needed", [
    ("3.6.0", "2.4.6", True), ("3.6.0", "2.4.0rc1", True), ("3.6.0", "2.3.5", False), ("3.6.0", "1.26.4", False),
    ("3.9.1", "2.5.0", True), ("2.3.1", "2.4.0", False), ("garbage", "2.4.0", False),
])
def test_interpreter_fix_is_version_guarded(triton, numpy, needed):
    from kernels._common import needs_scalar_index_fix

    assert needs_scalar_index_fix(triton, numpy) is needed


def test_gpu_selfchecks_ship_with_the_installed_package():
    """check-kernels must work from a non-editable install: its harnesses are package modules."""
    from dsa_bench.selfcheck import attention, indexer

    assert callable(attention.check_attention) and callable(indexer.check_indexer_topk)
    assert Path(attention.__file__).parent == ROOT / "dsa_bench" / "selfcheck"
    assert not (ROOT / "tools" / "gpu_selfcheck").exists()
