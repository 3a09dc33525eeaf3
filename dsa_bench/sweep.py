"""Sweep expansion: the Cartesian product of the axes, except axes zipped together."""
from __future__ import annotations

import itertools

from dsa_bench.scenario import Sweep
from dsa_bench.ops import Point


def expand(sweep: Sweep, phase: str) -> list[Point]:
    """Points in a stable order (batch, then topk, then context varying fastest)."""
    zipped = {a for g in sweep.zip for a in g}
    factors: list[list[dict]] = []
    for axis in ("batch", "topk", "context"):
        if axis in zipped:
            group = next(g for g in sweep.zip if axis in g)
            if axis != next(a for a in ("batch", "topk", "context") if a in group):
                continue  # the group enters the product once, at its first axis
            factors.append([dict(zip(group, vals)) for vals in zip(*(getattr(sweep, a) for a in group))])
        else:
            factors.append([{axis: v} for v in getattr(sweep, axis)])
    points, seen = [], set()
    for combo in itertools.product(*factors):
        values = {k: v for part in combo for k, v in part.items()}
        p = Point(phase=phase, batch=values["batch"], context=values["context"], topk=values["topk"])
        if p.key() not in seen:
            seen.add(p.key())
            points.append(p)
    return points


def dense_point(p: Point) -> Point:
    """Dense attention does not depend on k: it is measured once per (batch, context)."""
    return Point(phase=p.phase, batch=p.batch, context=p.context, topk=None)



def point_filter(expr: str):
    """A predicate over points from `context>=32768,batch=1` (conditions joined by commas, all must
    hold; fields context, batch, topk; operators < <= > >= = == !=). A topk condition never excludes
    a dense point (it has no k). ValueError names the bad condition."""
    import operator
    import re

    ops = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq,
           "==": operator.eq, "!=": operator.ne}
    conds = []
    for part in [x.strip() for x in expr.split(",") if x.strip()]:
        m = re.fullmatch(r"(context|batch|topk)\s*(<=|>=|==|!=|=|<|>)\s*(\d+)", part)
        if not m:
            raise ValueError(f"--filter: {part!r} is not FIELD OP NUMBER (fields context, batch, topk; "
                             "operators < <= > >= = !=)")
        conds.append((m.group(1), ops[m.group(2)], int(m.group(3))))
    if not conds:
        raise ValueError(f"--filter: no condition in {expr!r}")

    def keep(point) -> bool:
        for field, op, value in conds:
            v = getattr(point, field)
            if v is None:  # dense points have no k
                continue
            if not op(v, value):
                return False
        return True

    return keep
