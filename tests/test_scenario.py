"""Scenario schema: good files load, bad ones give one readable error per problem, by path."""
from pathlib import Path

import pytest

from dsa_bench.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def base(**over):
    d = {
        "name": "t", "model": "tiny", "phase": "decode", "implementations": ["dense-torch"],
        "sweep": {"context": [64]},
    }
    d.update(over)
    return d


def errors_of(data) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data)
    return exc.value.errors


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path):
    s = load_scenario(path)
    assert isinstance(s, Scenario) and s.name


def test_defaults_and_preset_resolution():
    s = parse_scenario(base())
    assert s.model.name == "tiny" and s.model.latent_dim == 96
    assert s.sweep.topk == [2048] and s.sweep.batch == [1]
    assert s.measure.flush_l2 and s.measure.check
    assert s.cost.gpu_hour_usd == 2.0


def test_explicit_dims_override_a_preset():
    s = parse_scenario(base(model={"preset": "deepseek-v3.2", "heads": 64}))
    assert s.model.heads == 64 and s.model.kv_lora_rank == 512


def test_negative_context_names_path_and_value():
    errs = errors_of(base(sweep={"context": [1024, 2048, -5]}))
    assert errs == ["sweep.context[2]: must be a positive integer, got -5"]


def test_every_error_is_reported_with_its_path():
    with pytest.raises(ScenarioError) as exc:
        load_scenario(DATA / "bad_many.yaml")
    errs = exc.value.errors
    joined = "\n".join(errs)
    assert "implementations: unknown implementation 'no-such-impl'" in joined
    assert "sweep.context[2]: must be a positive integer, got -5" in errs
    assert "sweep.topk[1]: must be an integer, got 2.5" in errs
    assert "sweep.batch[0]: must be a positive integer, got 0" in errs
    assert "measure.min_samples: must be an integer, got 'ten'" in errs
    assert "measure.flush_l3: unknown field" in errs
    assert len(errs) == 6


def test_zip_axes_must_have_equal_lengths():
    with pytest.raises(ScenarioError) as exc:
        load_scenario(DATA / "bad_zip.yaml")
    assert exc.value.errors[0].startswith("sweep: zip: zipped axes must have equal lengths")


@pytest.mark.parametrize(
    "over, expected",
    [
        ({"phase": "prefil"}, "phase: must be one of 'prefill', 'decode' or 'quality', got 'prefil'"),
        ({"model": "gpt-5"}, "model: unknown model preset 'gpt-5'"),
        ({"name": "has space"}, "name: must start with a letter or digit"),
        ({"implementations": []}, "implementations: must have at least 1 item(s) (or set cost.curves: true)"),
        ({"decode_tokens": 3}, "decode_tokens: must be one of 1 or 2, got 3"),
        ({"cost": {"gpu_hour_usd": -1}}, "cost.gpu_hour_usd: must be positive, got -1"),
        ({"measure": {"min_samples": 10, "max_samples": 5}}, "measure: max_samples (5) must be >= min_samples (10)"),
        ({"phase": "decode", "implementations": ["dense-sdpa"]}, "does not support phase 'decode'"),
        ({"surprise": 1}, "surprise: unknown field"),
        ({"sweep": {}}, "sweep.context: required field is missing"),
    ],
)
def test_single_errors(over, expected):
    errs = errors_of(base(**over))
    assert any(expected in e for e in errs), errs


def test_not_a_mapping():
    assert errors_of([1, 2])[0].startswith("<scenario>: must be a mapping")


def test_yaml_syntax_error_has_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nsweep: [1, 2\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert exc.value.errors[0].startswith("<yaml>: line")


def test_missing_file():
    with pytest.raises(ScenarioError) as exc:
        load_scenario("/nonexistent/s.yaml")
    assert "cannot read file" in exc.value.errors[0]


def test_yaml_is_safe_loaded(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ScenarioError):
        load_scenario(p)


def test_cpu_section_replaces_model_sweep_and_measure():
    s = parse_scenario(base(model="deepseek-v3.2", measure={"min_samples": 50},
                            cpu={"model": "tiny", "sweep": {"context": [32]}, "measure": {"min_samples": 2}}))
    c = s.for_device("cpu")
    assert c.model.name == "tiny" and c.sweep.context == [32] and c.measure.min_samples == 2
    assert s.for_device("cuda") is s


def test_no_cpu_section_is_a_clear_error_on_cpu():
    s = parse_scenario(base())
    with pytest.raises(ScenarioError) as exc:
        s.for_device("cpu")
    assert exc.value.errors[0].startswith("cpu: the scenario marks no CPU-safe sizes")


def test_bad_cpu_measure_key():
    errs = errors_of(base(cpu={"sweep": {"context": [8]}, "measure": {"warmup": 1}}))
    assert any(e.startswith("cpu.measure") and "warmup" in e for e in errs), errs


def test_prefill_tokens_only_for_prefill_and_positive():
    assert parse_scenario(base(phase="prefill", prefill_tokens=16)).prefill_tokens == 16
    assert errors_of(base(prefill_tokens=16)) == ["<scenario>: prefill_tokens: only for phase 'prefill', got phase 'decode'"]
    assert errors_of(base(phase="prefill", prefill_tokens=0)) == ["prefill_tokens: must be a positive integer, got 0"]


def test_validation_and_reports_import_no_torch():
    """Validating a scenario (registry included) and reporting need no torch: fast, and usable on a
    machine that only reads copied run directories."""
    import subprocess
    import sys

    code = ("import sys; from dsa_bench.scenario import load_scenario; import dsa_bench.report; "
            f"load_scenario({str(ROOT / 'scenarios' / 'smoke.yaml')!r}); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
