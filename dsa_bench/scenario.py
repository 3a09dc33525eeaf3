"""Scenario files: YAML safe-loaded and validated into typed objects before any work is done.

pydantic does the type checking; this module turns its errors into one line per problem, named by
the path inside the file (`sweep.context[2]: must be a positive integer, got -5`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from dsa_bench.costmodel.config import CostConfig
from dsa_bench.models import PRESETS, ModelShape
from dsa_bench.quality.config import QualityConfig
from dsa_bench.yaml_strict import YamlError, load_yaml

AXES = ("context", "topk", "batch")


class ScenarioError(Exception):
    """A scenario that cannot be used; `errors` holds one readable line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


class _Strict(BaseModel):
    # strict: `true`, `2048.0` or `"2048"` where an integer belongs is an error, not 1 or 2048
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _no_bool(v: Any) -> Any:
    """Literal[1, 2] takes `true` as 1 even in strict mode (True == 1 in Python): refuse it here."""
    if isinstance(v, bool):
        raise ValueError(f"must be an integer, got {v!r}")
    return v


# Limits: what no real scenario needs, and what would only fail (or hang) later if accepted.
MAX_FILE_BYTES = 1 << 20  # a scenario is a few hundred bytes; it is also copied into run.json and reports
MAX_CONTEXT = 1 << 24  # 16M tokens
MAX_BATCH = 4096
MAX_TOPK = 1 << 24
MAX_POINTS = 10_000  # sweep points (crossed axes) in one scenario
MAX_NAME = 100
MAX_PLUGINS = 100


class Sweep(_Strict):
    context: list[Annotated[PositiveInt, Field(le=MAX_CONTEXT)]] = Field(min_length=1, description="context lengths T (tokens)")
    topk: list[Annotated[PositiveInt, Field(le=MAX_TOPK)]] = Field(default=[2048], min_length=1, description="DSA top-k")
    batch: list[Annotated[PositiveInt, Field(le=MAX_BATCH)]] = Field(default=[1], min_length=1, description="batch sizes")
    zip: list[list[Literal["context", "topk", "batch"]]] = Field(
        default_factory=list,
        description="groups of axes that vary together (same length, zipped) instead of crossed",
    )

    @model_validator(mode="after")
    def _zip_groups(self) -> "Sweep":
        seen: set[str] = set()
        for group in self.zip:
            if len(group) < 2:
                raise ValueError(f"zip: a group needs at least two axes, got {group}")
            if len(set(group)) != len(group):
                raise ValueError(f"zip: a group names an axis twice, got {group}")
            if seen & set(group):
                raise ValueError(f"zip: axis {sorted(seen & set(group))[0]} is in two groups")
            seen |= set(group)
            lengths = {a: len(getattr(self, a)) for a in group}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"zip: zipped axes must have equal lengths, got {lengths}")
        n = self.points()
        if n > MAX_POINTS:
            raise ValueError(f"sweep: {n} points (context x topk x batch) is more than the limit of {MAX_POINTS}")
        return self

    def points(self) -> int:
        n, zipped = 1, set()
        for group in self.zip:
            n *= len(getattr(self, group[0]))
            zipped |= set(group)
        for axis in AXES:
            if axis not in zipped:
                n *= len(getattr(self, axis))
        return n


class Measure(_Strict):
    warmup_ms: float = Field(50.0, ge=0, description="warm-up time after the first (compiling) call")
    min_samples: PositiveInt = 10
    max_samples: PositiveInt = 200
    min_time_ms: float = Field(200.0, ge=0, description="keep sampling until this much is timed")
    max_time_ms: float = Field(5000.0, gt=0, description="stop sampling after this much is timed")
    flush_l2: bool = Field(True, description="overwrite a buffer larger than L2 before each sample")
    check: bool = Field(True, description="compare with the PyTorch reference before timing")
    check_rows: PositiveInt = Field(48, description="query rows per point checked (spread over S)")
    stages: bool = Field(True, description="also time DSA's indexer, top-k and sparse MLA stages")
    cuda_graph: Optional[bool] = Field(
        None, description="time replays of a CUDA graph captured from each call (and each stage), as "
        "serving engines run decode; default: on for decode on a GPU, off otherwise")
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    indexer_dtype: Literal["bf16", "fp8"] = "bf16"
    prefill_chunk: Optional[PositiveInt] = Field(
        None, description="DSA prefill query rows per chunk (default: one chunk's fp32 scores use <= 2 GiB)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _sample_bounds(self) -> "Measure":
        if self.max_samples < self.min_samples:
            raise ValueError(
                f"max_samples ({self.max_samples}) must be >= min_samples ({self.min_samples})"
            )
        return self


class RefineCrossover(_Strict):
    """After the sweep, measure more contexts inside each crossover's bracket (dsa_bench/refine.py)."""

    tolerance: float = Field(0.1, gt=0, le=10, description="stop when a crossover's bracket is within this "
                             "fraction (hi / lo - 1 <= tolerance; 0.05 = 5%)")
    max_points: PositiveInt = Field(8, le=64, description="new contexts per crossover at most (the point budget)")


# The cost section is the cost model's configuration (price, GPU profile, deployment, calibration).
Cost = CostConfig


def _resolve_model(value: Any) -> Any:
    """A preset name, or a mapping with an optional `preset` to start from and overrides."""
    if isinstance(value, ModelShape):
        return value
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"unknown model preset {value!r}; known: {', '.join(PRESETS)}")
        return PRESETS[value]
    if isinstance(value, dict):
        base = value.get("preset")
        fields = {k: v for k, v in value.items() if k != "preset"}
        if base is not None:
            if base not in PRESETS:
                raise ValueError(f"unknown model preset {base!r}; known: {', '.join(PRESETS)}")
            merged = PRESETS[base].model_dump()
            merged.update(fields)
            merged.setdefault("name", base)
            return merged
        return fields
    raise ValueError(f"must be a preset name or a mapping of dims, got {value!r}")


class CpuSection(_Strict):
    """What the scenario runs on a machine without a GPU: sizes the Triton interpreter can handle."""

    model: Optional[ModelShape] = None
    sweep: Sweep
    measure: Optional[dict[str, Any]] = None
    prefill_tokens: Optional[PositiveInt] = Field(
        None, description="replaces prefill_tokens on the CPU (a GPU-sized prefill step does not fit CPU contexts)")

    @field_validator("model", mode="before")
    @classmethod
    def _preset(cls, v):
        return None if v is None else _resolve_model(v)

    @field_validator("measure")
    @classmethod
    def _measure_keys(cls, v):
        if v is not None:
            Measure(**{**Measure().model_dump(), **v})
        return v


class Scenario(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=MAX_NAME)
    description: str = ""
    model: ModelShape
    phase: Literal["prefill", "decode", "quality"]
    decode_tokens: Literal[1, 2] = Field(1, description="query tokens per decode step (2 = MTP)")
    prefill_tokens: Optional[PositiveInt] = Field(
        None, description="prefill: query tokens at the end of the context, one chunked-prefill step "
        "(default: the whole sequence, S = T)")
    masked_mha_below: Optional[Annotated[int, Field(ge=0, le=MAX_CONTEXT)]] = Field(
        None, description="dsa-deployed: prefill calls whose context is at most this many tokens run masked "
        "MHA instead of sparse MQA (default: where the cost model's masked MHA stops being cheaper, from "
        "cost.measured_run's timings when the cost section names measured runs, else the roofline)")
    implementations_from: list[str] = Field(
        default_factory=list, description="Python files (relative to the scenario file) that register "
        "extra implementations when imported: plug-ins (see README)")
    implementations: list[str] = Field(default_factory=list)
    sweep: Optional[Sweep] = None
    measure: Measure = Field(default_factory=Measure)
    cpu: Optional[CpuSection] = None
    cost: CostConfig = Field(default_factory=CostConfig)
    refine_crossover: Optional[RefineCrossover] = Field(
        None, description="after the sweep, bisect each crossover's bracket with new contexts (DSA and its dense "
        "baseline only) until it is within `tolerance`; `dsa-bench run --refine-crossover [TOL]` sets it")
    quality: Optional[QualityConfig] = Field(
        None, description="phase quality: train a lightning indexer with the report's KL objective and "
        "measure attention recall / output error per k (dsa_bench/quality)")

    @model_validator(mode="after")
    def _something_to_do(self) -> "Scenario":
        if self.phase == "quality":
            if self.quality is None:
                raise ValueError("quality: required for phase 'quality'")
            if self.implementations:
                raise ValueError("implementations: phase 'quality' times no implementations; leave the list empty")
            if self.refine_crossover is not None:
                raise ValueError("refine_crossover: phase 'quality' has no crossover to refine")
            return self
        if self.quality is not None:
            raise ValueError(f"quality: only for phase 'quality', got phase {self.phase!r}")
        if self.sweep is None:
            raise ValueError("sweep: required field is missing")
        if not self.implementations and not self.cost.curves:
            raise ValueError("implementations: must have at least 1 item(s) (or set cost.curves: true)")
        return self

    @field_validator("model", mode="before")
    @classmethod
    def _preset(cls, v):
        return _resolve_model(v)

    @field_validator("decode_tokens", mode="before")
    @classmethod
    def _decode_tokens_not_bool(cls, v):
        return _no_bool(v)

    @field_validator("implementations_from", mode="before")
    @classmethod
    def _plugin_list_size(cls, v):
        if isinstance(v, list) and len(v) > MAX_PLUGINS:
            raise ValueError(f"at most {MAX_PLUGINS} plug-in files, got {len(v)}")
        return v

    @field_validator("implementations")
    @classmethod
    def _known_implementations(cls, names: list[str]) -> list[str]:
        from dsa_bench.registry import REGISTRY

        bad = [n for n in names if n not in REGISTRY]
        if bad:
            raise ValueError(
                f"unknown implementation {bad[0]!r}; known: {', '.join(sorted(REGISTRY))}"
            )
        if len(set(names)) != len(names):
            raise ValueError("each implementation may be listed once")
        return names

    @model_validator(mode="after")
    def _prefill_tokens_phase(self) -> "Scenario":
        if self.prefill_tokens is not None and self.phase != "prefill":
            raise ValueError(f"prefill_tokens: only for phase 'prefill', got phase {self.phase!r}")
        if self.cpu is not None and self.cpu.prefill_tokens is not None and self.prefill_tokens is None:
            raise ValueError("cpu.prefill_tokens: only with prefill_tokens (a prefill step) at the top level")
        return self

    @model_validator(mode="after")
    def _query_tokens_fit_the_context(self) -> "Scenario":
        """A call's S query tokens sit at the end of its T context tokens: S > T cannot be run as asked."""
        if self.phase == "decode":
            field, s = "decode_tokens", self.decode_tokens
        elif self.phase == "prefill" and self.prefill_tokens is not None:
            field, s = "prefill_tokens", self.prefill_tokens
        else:
            return self
        checks = [(field, s, "sweep", self.sweep)]
        if self.cpu is not None:
            cpu_s = (self.cpu.prefill_tokens or s) if field == "prefill_tokens" else s
            checks.append((f"cpu.{field}" if self.cpu.prefill_tokens else field, cpu_s, "cpu.sweep", self.cpu.sweep))
        for name, n, where, sweep in checks:
            if sweep is not None and min(sweep.context) < n:
                raise ValueError(f"{name}: {n} query tokens do not fit in the smallest context of {where}.context "
                                 f"({min(sweep.context)} tokens); make every context at least {n}"
                                 + (" (or set cpu.prefill_tokens)" if where == "cpu.sweep" and field == "prefill_tokens"
                                    else ""))
        return self

    @model_validator(mode="after")
    def _phase_support(self) -> "Scenario":
        from dsa_bench.registry import REGISTRY

        for name in self.implementations:
            if self.phase not in REGISTRY[name].phases:
                raise ValueError(
                    f"implementation {name!r} does not support phase {self.phase!r} "
                    f"(supports: {', '.join(sorted(REGISTRY[name].phases))})"
                )
        return self

    def masked_mha_threshold(self) -> int:
        """masked_mha_below, or the cost model's crossover of masked MHA and sparse MQA for this model:
        from the timings of `cost.measured_run` when the cost section names measured runs, else from
        the roofline."""
        if self.masked_mha_below is not None:
            return self.masked_mha_below
        from dsa_bench.costmodel import load_measured
        from dsa_bench.costmodel.model import masked_mha_crossover

        measured = None
        if self.cost.source == "measured" and self.cost.measured_run:
            measured = load_measured(self.cost.measured_run)
        return masked_mha_crossover(self.model, self.cost, gpu=self.cost.measured_gpu or measured_gpu(measured),
                                    measured=measured)

    # Set by load_scenario: the `--set` paths applied (for_device refuses those the cpu: section would
    # replace) and the plug-ins whose code failed at import (their implementations become error rows).
    _source: str = PrivateAttr("<scenario>")
    _overrides: list = PrivateAttr(default_factory=list)
    _plugin_failures: list = PrivateAttr(default_factory=list)

    @property
    def plugin_failures(self) -> list[str]:
        """One line per plug-in file whose code failed at import (see _load_plugins)."""
        return list(self._plugin_failures)

    def for_device(self, device: str) -> "Scenario":
        """The scenario as run on `device`: on the CPU, the `cpu:` section replaces model and sweep."""
        if device != "cpu" or not self.implementations:
            return self  # a cost-model-only or quality scenario runs as written
        if self.cpu is None:
            raise ScenarioError(
                self.name,
                ["cpu: the scenario marks no CPU-safe sizes (add a `cpu:` section or run on a GPU)"],
            )
        shadowed = [o for o in self._overrides if _replaced_by_cpu_section(o, self.cpu)]
        if shadowed:
            # Refused rather than redirected: the same --set must not silently mean another field, and a
            # GPU-sized sweep moved into the Triton interpreter could run for hours.
            raise ScenarioError(self._source, [
                f"--set {o}: this run is on the CPU, where the scenario's cpu: section replaces this field, so "
                f"the override would have no effect; use --set cpu.{o} instead (or run on a GPU)" for o in shadowed])
        measure = self.measure.model_dump()
        measure.update(self.cpu.measure or {})
        return self.model_copy(
            update={
                "model": self.cpu.model or self.model,
                "sweep": self.cpu.sweep,
                "measure": Measure(**measure),
                "prefill_tokens": self.cpu.prefill_tokens or self.prefill_tokens,
            }
        )


def _replaced_by_cpu_section(override: str, cpu: CpuSection) -> bool:
    """Whether the field an override path (`sweep.context`, `measure.min_samples`) sets is replaced on the CPU."""
    head, _, rest = override.partition(".")
    if head == "sweep":
        return True  # cpu.sweep is required and replaces the whole sweep
    if head == "model":
        return cpu.model is not None
    if head == "measure":
        return bool(cpu.measure) and (not rest or rest.split(".")[0] in cpu.measure)
    return False


# --- error formatting ---------------------------------------------------------------------------

def measured_gpu(measured) -> Optional[str]:
    return None if measured is None else measured.attrs.get("gpu")


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "constrained-")):
            continue  # pydantic's names for validator wrappers, not scenario fields
        else:
            out += ("." if out else "") + str(part)
    return out or "<scenario>"


def _is_float_field(loc: tuple) -> bool:
    """Whether the field at `loc` is declared as a float (so -1 there is 'must be positive')."""
    model: Any = Scenario
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            continue
        info = fields[part]
        ann = info.annotation
        model = next((a for a in getattr(ann, "__args__", ()) if hasattr(a, "model_fields")), ann)
    ann = getattr(info, "annotation", None)
    return ann is float or "float" in str(ann).lower()


def _message(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "greater_than" and ctx.get("gt") == 0:
        msg = "must be positive" if _is_float_field(err["loc"]) else "must be a positive integer"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        msg = "must be an integer"
    elif kind in ("float_type", "float_parsing"):
        msg = "must be a number"
    elif kind in ("bool_type", "bool_parsing"):
        msg = "must be true or false"
    elif kind in ("list_type",):
        msg = "must be a list"
    elif kind in ("string_type",):
        msg = "must be a string"
    elif kind == "literal_error":
        msg = f"must be one of {ctx.get('expected')}"
    elif kind == "too_short":
        msg = f"must have at least {ctx.get('min_length')} item(s)"
    elif kind == "less_than_equal":
        msg = f"must be at most {ctx.get('le')}"
    elif kind == "string_too_long":
        msg = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "finite_number":
        msg = "must be a finite number"
    elif kind == "string_pattern_mismatch":
        msg = "must start with a letter or digit and use only letters, digits, '.', '_' and '-'"
    elif kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    else:
        msg = err["msg"][0].lower() + err["msg"][1:]
    if isinstance(value, (dict, list)) or value is None:
        return msg
    return f"{msg}, got {value!r}"


def format_validation_error(exc: ValidationError) -> list[str]:
    return [f"{_path(e['loc'])}: {_message(e)}" for e in exc.errors()]


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(source, [f"<scenario>: must be a mapping of fields, got {type(data).__name__}"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, format_validation_error(exc)) from None


def _read_scenario_text(path: Path) -> str:
    """The file's text, refusing what is not a small regular UTF-8 text file (a FIFO or /dev/zero
    would block or fill memory)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ScenarioError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise ScenarioError(str(path), ["<file>: not a regular file"])
    if st.st_size > MAX_FILE_BYTES:
        raise ScenarioError(str(path), [f"<file>: {st.st_size} bytes, more than the limit of {MAX_FILE_BYTES}"])
    try:
        data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ScenarioError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    if b"\x00" in data:
        raise ScenarioError(str(path), ["<file>: binary content (NUL bytes), not a YAML text file"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(path), [f"<file>: not UTF-8 text (byte {exc.start})"]) from None


def _load_plugins(files: Any, base: Path, source: str) -> list[str]:
    """Import each plug-in file (it registers its implementations) before the names are validated.

    A file that cannot be a plug-in (missing, not a .py file) is a scenario error. Code that fails at
    import, whatever it raises (SystemExit and KeyboardInterrupt included, but not a real Ctrl-C), is
    returned as a failure line: the run records the implementations it would have registered as
    `error` rows and goes on."""
    from dsa_bench.registry import PluginFileError, PluginImportFailed, load_plugin_file

    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ScenarioError(source, ["implementations_from: must be a list of file paths (strings)"])
    if len(files) > MAX_PLUGINS:
        raise ScenarioError(source, [f"implementations_from: at most {MAX_PLUGINS} plug-in files, got {len(files)}"])
    problems, failures = [], []
    for i, f in enumerate(files):
        try:
            load_plugin_file(base / f)
        except PluginFileError as exc:
            problems.append(f"implementations_from[{i}]: cannot load {f!r}: {exc}")
        except (OSError, ValueError) as exc:  # a path the OS refuses (a NUL byte, too long, a loop)
            problems.append(f"implementations_from[{i}]: cannot load {f!r}: {_exc_line(exc)}")
        except PluginImportFailed as exc:
            failures.append(f"implementations_from[{i}]: cannot load {f!r}: {_exc_line(exc.original)}")
    if problems:
        raise ScenarioError(source, problems + failures)
    return failures


def _exc_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


def _failed_entry_points_if_needed(data: Any) -> list[str]:
    """Installed plug-ins that failed to load, when the scenario names an implementation nobody registered
    (one of them may have been meant to); otherwise a broken unrelated package is not this scenario's problem."""
    from dsa_bench.registry import ENTRY_POINT_FAILURES, REGISTRY

    names = data.get("implementations") if isinstance(data, dict) else None
    if not isinstance(names, list) or all(not isinstance(n, str) or n in REGISTRY for n in names):
        return []
    return list(ENTRY_POINT_FAILURES)


def _stand_in_for_failed_plugins(data: Any, failures: list[str]) -> None:
    """Names the scenario lists that no plug-in registered, while a plug-in failed at import: register
    stand-ins whose every point is an `error` row naming the failure (the rest of the sweep runs)."""
    from dsa_bench.registry import REGISTRY, register_failed_plugin

    names = data.get("implementations") if isinstance(data, dict) else None
    if not failures or not isinstance(names, list):
        return
    for name in names:
        if isinstance(name, str) and name not in REGISTRY:
            register_failed_plugin(name, "; ".join(failures))


def apply_overrides(data: Any, overrides: list[str], source: str) -> Any:
    """`--set a.b.c=VALUE` lines applied to the parsed file before validation (VALUE is YAML:
    `sweep.context=[8192,65536]`, `measure.min_samples=5`), so they are checked like the file."""
    if not overrides:
        return data
    if not isinstance(data, dict):
        return data  # parse_scenario reports the file itself
    for line in overrides:
        key, sep, raw = line.partition("=")
        path = [k for k in key.strip().split(".") if k]
        if not sep or not path:
            raise ScenarioError(source, [f"--set {line!r}: expected FIELD.PATH=VALUE, e.g. sweep.context=[8192,65536]"])
        try:
            value = load_yaml(raw)
        except YamlError as exc:
            raise ScenarioError(source, [f"--set {key}: the value is not plain YAML ({exc})"]) from None
        node = data
        for i, k in enumerate(path[:-1]):
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ScenarioError(source, [f"--set {key}: {'.'.join(path[:i + 1])} is not a mapping"])
            node = nxt
        node[path[-1]] = value
    return data


def load_scenario(path: Union[str, Path], overrides: Optional[list[str]] = None) -> Scenario:
    path = Path(path)
    text = _read_scenario_text(path)
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise ScenarioError(str(path), [f"<yaml>: {exc}"]) from None
    data = apply_overrides(data, list(overrides or []), str(path))
    failures: list[str] = []
    if isinstance(data, dict) and data.get("implementations_from"):
        failures = _load_plugins(data["implementations_from"], path.parent, str(path))
    failures += _failed_entry_points_if_needed(data)
    _stand_in_for_failed_plugins(data, failures)
    try:
        s = parse_scenario(data, str(path))
    except RecursionError:
        raise ScenarioError(str(path), ["<scenario>: nested too deeply"]) from None
    s._source = str(path)
    s._overrides = [line.partition("=")[0].strip() for line in overrides or []]
    s._plugin_failures = failures
    return s
