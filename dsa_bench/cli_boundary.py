"""The CLI's error boundary: every command's failure becomes one paragraph on stderr and exit 1 or 2
(130 on Ctrl-C), never a traceback; `dsa-bench --debug COMMAND` prints the traceback as well."""
from __future__ import annotations

import functools
import os
from typing import Any, Callable

import click
import typer
from rich.console import Console

from dsa_bench.errors import explain

debug = os.environ.get("DSA_BENCH_DEBUG", "") not in ("", "0")


def set_debug(value: bool) -> None:
    global debug
    debug = value or os.environ.get("DSA_BENCH_DEBUG", "") not in ("", "0")


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with any exception turned into a message and an exit code (typer.Exit passes through)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - this is the boundary
            err = Console(stderr=True)
            if debug:
                err.print_exception(show_locals=False)
            code, text = explain(exc)
            err.print(text, markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None

    return wrapper


class GuardedTyper(typer.Typer):
    """A Typer app whose every command (and group callback, which may do work) runs inside `guarded`."""

    def command(self, *args: Any, **kwargs: Any):
        register = super().command(*args, **kwargs)
        return lambda fn: (register(guarded(fn)), fn)[1]

    def callback(self, *args: Any, **kwargs: Any):
        register = super().callback(*args, **kwargs)
        return lambda fn: (register(guarded(fn)), fn)[1]
