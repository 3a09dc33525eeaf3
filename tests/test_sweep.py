from dsa_bench.scenario import Sweep
from dsa_bench.sweep import expand


def keys(points):
    return [(p.batch, p.topk, p.context) for p in points]


def test_cartesian_product_in_stable_order():
    pts = expand(Sweep(context=[64, 128], topk=[16, 32], batch=[1, 2]), "decode")
    assert len(pts) == 8
    assert keys(pts)[:3] == [(1, 16, 64), (1, 16, 128), (1, 32, 64)]
    assert {p.phase for p in pts} == {"decode"}


def test_zip_pairs_axes_instead_of_crossing():
    pts = expand(Sweep(context=[64, 128, 256], batch=[8, 4, 2], topk=[16, 32], zip=[["context", "batch"]]), "prefill")
    assert sorted(keys(pts)) == sorted([(8, 16, 64), (4, 16, 128), (2, 16, 256), (8, 32, 64), (4, 32, 128), (2, 32, 256)])


def test_duplicates_collapse():
    pts = expand(Sweep(context=[64, 64], topk=[16]), "decode")
    assert len(pts) == 1


def test_zip_all_three_axes():
    pts = expand(Sweep(context=[64, 128], batch=[1, 2], topk=[8, 16], zip=[["context", "batch", "topk"]]), "decode")
    assert keys(pts) == [(1, 8, 64), (2, 16, 128)]
