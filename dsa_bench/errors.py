"""What the user is told when a command fails: one paragraph (what, which file or option, what to do)
and an exit code, for any exception. cli.py applies this to every command (the error boundary).

Exit codes: 1 the work started but did not finish as asked (a failed row, a full disk, a bug);
2 bad input (a file, an option, a run directory); 130 interrupted.
"""
from __future__ import annotations

import errno

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


class InputError(ValueError):
    """Bad input named by the message (a file, an option, a run directory); `hint` says what to do."""

    def __init__(self, message: str, hint: str = ""):
        self.hint = hint
        super().__init__(message)


class RunFailed(RuntimeError):
    """A run that started and could not finish (e.g. the disk filled up); finished points are kept."""

    def __init__(self, message: str, hint: str = ""):
        self.hint = hint
        super().__init__(message)


# OSErrors that mean "this path cannot be used" (bad input) rather than "the machine failed mid-way".
_PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOENT,
                errno.ELOOP, errno.ENAMETOOLONG}


def describe_os_error(exc: OSError) -> str:
    """'PATH: No space left on device' (the path the OS named, and its reason)."""
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    reason = exc.strerror or type(exc).__name__
    return f"{where}: {reason}" if where else reason


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit code, the paragraph to print) for an exception that reached a command's boundary."""
    from dsa_bench.scenario import ScenarioError

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, ScenarioError):
        return EXIT_BAD_INPUT, f"invalid scenario {exc.source}:\n" + "\n".join(f"  {line}" for line in exc.errors)
    if isinstance(exc, (InputError, RunFailed)):
        code = EXIT_BAD_INPUT if isinstance(exc, InputError) else EXIT_FAILED
        hint = exc.hint[:1].upper() + exc.hint[1:]
        return code, f"error: {exc}" + (f". {hint}" if hint else "")
    if isinstance(exc, OSError):
        if exc.errno in _PATH_ERRNOS:
            return EXIT_BAD_INPUT, (f"error: {describe_os_error(exc)}. Check the path (a directory where a file "
                                    "is expected, or the reverse, or no permission) and choose another one.")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return EXIT_FAILED, f"error: {describe_os_error(exc)}. Free some space and run the command again."
        return EXIT_FAILED, f"error: {describe_os_error(exc)}"
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, "error: out of memory (MemoryError); use smaller sizes or a machine with more memory"
    if isinstance(exc, ValueError):  # the library's way of refusing input (RunError, RunLocked, ...)
        return EXIT_BAD_INPUT, f"error: {exc}"
    return EXIT_FAILED, (f"internal error: {type(exc).__name__}: {exc}. This is a bug in dsa-bench: run the same "
                         "command with --debug for the traceback and report it.")
