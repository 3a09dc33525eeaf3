"""What `dsa-bench peers` prints: each production library (where it would load from, or why it
cannot), and each production implementation (ready, or the first reason it is not)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dsa_bench.peers import libraries


@dataclass
class LibraryState:
    key: str
    name: str
    source: Optional[str]
    reason: Optional[str]
    loaded: bool  # the library was loaded and its schemas checked (else: only located)


def library_states(load: bool) -> list[LibraryState]:
    """Every library; with `load`, each is loaded and its op schemas checked (needs the GPU's
    CUDA libraries), else only located from files and package metadata."""
    out = []
    for key, name in libraries.NAMES.items():
        if load:
            lib = libraries.LOADERS[key]()
            out.append(LibraryState(key, name, lib.source, lib.reason, True))
        else:
            source, reason = libraries.locate(key)
            out.append(LibraryState(key, name, source, reason, False))
    return out


def implementation_states(states: list[LibraryState]) -> list[tuple[str, tuple[str, ...], Optional[str]]]:
    """(implementation, libraries it needs, None if they are all there, else the first reason)."""
    from dsa_bench.implementations.production import NEEDS

    by_key = {s.key: s for s in states}
    rows = []
    for name, needs in NEEDS.items():
        missing = next((f"{by_key[k].name}: {by_key[k].reason}" for k in needs if by_key[k].reason), None)
        rows.append((name, tuple(libraries.NAMES[k] for k in needs), missing))
    return rows


def summary_line() -> str:
    """One short line for `dsa-bench list`: which production implementations could run here (found
    from files alone; a CUDA sm_90 GPU is needed besides); `dsa-bench peers` says why the others not."""
    rows = implementation_states(library_states(load=False))
    ready = [name for name, _, why in rows if why is None]
    found = ("found for " + ", ".join(ready)) if ready else "none found here"
    return f"production peers: {found} (why not: dsa-bench peers)"
