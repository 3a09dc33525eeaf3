"""Kept only for modules that still import it (kernels/indexer_loss.py): the interpreter fix now lives
in kernels/_common.py (`apply_interpreter_fixes`, version-guarded). New code calls that directly."""
from kernels._common import apply_interpreter_fixes

apply_interpreter_fixes()
