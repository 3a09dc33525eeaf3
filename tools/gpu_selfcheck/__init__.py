"""GPU self-checks of the Triton kernels against their PyTorch references at DeepSeek shapes.

Developer tools, not part of the installed package: `dsa-bench check-kernels` (dsa_bench/selfcheck.py)
loads this folder from the source checkout; scripts in tools/ import it as `gpu_selfcheck` (Python puts
a script's own folder on sys.path).
"""
