"""The `dsa-bench` command line: a thin layer over the library (scenario, runner, store)."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dsa_bench.cli_boundary import GuardedTyper, set_debug
from dsa_bench.scenario import RefineCrossover, ScenarioError, load_scenario
from dsa_bench.store import DEFAULT_ROOT

app = GuardedTyper(
    add_completion=False, no_args_is_help=True,
    help="Benchmark dense MLA vs DeepSeek Sparse Attention (DSA): run YAML scenarios, keep results, report.",
)
console = Console()
err = Console(stderr=True)
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_OUT = DEFAULT_ROOT  # users' runs; the committed reference runs are written only with an explicit --out

EXIT_OK, EXIT_FAILED_POINTS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
REFINE_DEFAULT = RefineCrossover.model_fields["tolerance"].default


class GateOn(str, Enum):
    all = "all"
    total = "total"


class DeviceChoice(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


def _print_scenario_error(e: ScenarioError) -> None:
    err.print(f"[bold red]invalid scenario[/] {e.source}:", highlight=False)
    for line in e.errors:
        err.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from dsa_bench import __version__

        console.print(f"dsa-bench {__version__}", highlight=False)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit"),
          debug: bool = typer.Option(False, "--debug", help="on an error, also print the Python traceback")) -> None:
    """Benchmark dense MLA vs DeepSeek Sparse Attention (DSA): run YAML scenarios, keep results, report."""
    console.stderr = False  # a previous in-process `run --json` (tests) must not redirect this command
    set_debug(debug)


@app.command()
def validate(scenarios: List[Path] = typer.Argument(..., help="scenario YAML files to check")) -> None:
    """Check scenario files without running anything; exit 2 if any is invalid."""
    bad = 0
    for path in scenarios:
        try:
            s = load_scenario(path)
        except ScenarioError as e:
            _print_scenario_error(e)
            bad += 1
            continue
        if s.plugin_failures:  # `run` would record error rows for these; a check says so and fails
            _print_scenario_error(ScenarioError(str(path), s.plugin_failures))
            bad += 1
            continue
        console.print(f"[green]ok[/] {path}: {s.name} ({s.phase}, {len(s.implementations)} implementations)")
    raise typer.Exit(EXIT_BAD_INPUT if bad else EXIT_OK)


@app.command("list")
def list_(long: bool = typer.Option(False, "--long", "-l", help="tables with every detail (dimensions, descriptions)")) -> None:
    """List implementations, model presets and shipped scenarios (names only; --long for the details)."""
    from dsa_bench.models import PRESETS
    from dsa_bench.registry import REGISTRY

    if not long:
        scenarios = sorted(p.name for p in SCENARIO_DIR.glob("*.yaml"))
        for title, names in (("implementations", list(REGISTRY)), ("model presets", list(PRESETS)),
                             (f"scenarios ({SCENARIO_DIR})", scenarios)):
            console.print(f"[bold]{title}:[/] " + ", ".join(names), highlight=False, soft_wrap=False)
        from dsa_bench.peers.status import summary_line

        console.print(summary_line(), highlight=False, markup=False)
        console.print("details: dsa-bench list --long", style="dim", highlight=False)
        return

    t = Table(title="implementations")
    for col in ("name", "family", "backend", "phases", "baseline", "description"):
        t.add_column(col)
    for impl in REGISTRY.values():
        t.add_row(impl.name, impl.family, impl.backend, ",".join(sorted(impl.phases)),
                  "yes" if impl.baseline else "", impl.description)
    console.print(t)
    from dsa_bench.peers.status import summary_line

    console.print("backend 'production': the kernels DeepSeek-V3.2 is served with, timed when present.",
                  highlight=False)
    console.print(summary_line(), highlight=False, markup=False)
    t = Table(title="model presets")
    for col in ("name", "heads", "latent (kv_lora + rope)", "MHA qk / v", "indexer heads x dim"):
        t.add_column(col)
    for name, m in PRESETS.items():
        t.add_row(name, str(m.heads), f"{m.latent_dim} ({m.kv_lora_rank}+{m.qk_rope_head_dim})",
                  f"{m.qk_head_dim} / {m.v_head_dim}", f"{m.index_heads} x {m.index_head_dim}")
    console.print(t)
    t = Table(title=f"scenarios ({SCENARIO_DIR})")
    for col in ("file", "name", "phase", "description"):
        t.add_column(col)
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        try:
            s = load_scenario(path)
            t.add_row(path.name, s.name, s.phase, s.description)
        except ScenarioError as e:
            t.add_row(path.name, "[red]invalid[/]", "", "; ".join(e.errors))
    console.print(t)


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="results root: writes OUT/<scenario>/<run-id>/"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest run of this scenario in OUT"),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="auto picks cuda when available"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="cost model: price on this GPU profile (h800, h100, h200, ...)"),
    price: Optional[float] = typer.Option(None, "--price", help="cost model: USD per GPU hour"),
    no_report: bool = typer.Option(False, "--no-report", help="do not write the HTML report at the end"),
    report_out: Optional[Path] = typer.Option(
        None, "--report-out", help="reports root for the end-of-run report: REPORT_OUT/<scenario>/<run-id>/ "
                                   "(default: the run directory's report/)"),
    only: Optional[str] = typer.Option(None, "--only", metavar="IMPL[,IMPL]",
                                       help="run only these of the scenario's implementations"),
    set_: List[str] = typer.Option([], "--set", metavar="FIELD=VALUE",
                                   help="override a scenario field, validated like the file (repeatable), e.g. --set sweep.context=[8192,65536]"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the planned (point, implementation) pairs and a time bound; run nothing"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON document (answer, summary, typed rows; schema: "
                                                         "dsa_bench/schemas/run-output.schema.json) to stdout; everything else goes to stderr"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress and no summary table; errors and notes only"),
    filter_: Optional[str] = typer.Option(None, "--filter", metavar="COND[,COND]",
                                          help="run only points matching every condition, e.g. 'context>=32768,batch=1'"),
    ray_address: Optional[str] = typer.Option(None, "--ray", metavar="local|ADDRESS",
                                              help="spread the points over Ray workers (needs `pip install -e \".[ray]\"`)"),
    gpus_per_point: float = typer.Option(1.0, "--gpus-per-point", min=0.01, help="with --ray: GPUs a point's task asks for"),
    refine: Optional[float] = typer.Option(
        None, "--refine-crossover", metavar="[TOL]",
        help=f"after the sweep, measure DSA and its dense baseline at new contexts inside each crossover's bracket "
             f"until it is within TOL (default {REFINE_DEFAULT:g} = {REFINE_DEFAULT:.0%}); sets the scenario's "
             "refine_crossover.tolerance"),
) -> None:
    """Run a scenario: check, time and record every (point, implementation); then report.

    Exit codes: 0 every point ok; 1 the sweep finished but a row is wrong/error, or the report failed;
    2 bad input (scenario, device, output directory), nothing measured; 130 interrupted (Ctrl-C or
    SIGTERM): finished points are kept, continue with --resume.
    """
    from dsa_bench.jsonout import stdout_reserved

    with stdout_reserved(json_out) as emit:  # with --json, stdout carries only the JSON document
        _run(scenario, out, resume, device, gpu, price, no_report, report_out, only, set_, dry_run, json_out, quiet,
             filter_, ray_address, gpus_per_point, refine, emit)


def _run(scenario, out, resume, device, gpu, price, no_report, report_out, only, set_, dry_run, json_out, quiet,
         filter_, ray_address, gpus_per_point, refine, emit) -> None:
    console.stderr = json_out
    # Options that would silently do nothing here: said, not ignored.
    ignored = [opt for opt, unused in (("--report-out", report_out is not None and no_report),
                                       ("--gpus-per-point", gpus_per_point != 1.0 and ray_address is None)) if unused]
    if refine is not None:  # validated with the file, so a bad TOL is named like a bad field
        set_ = [*set_, f"refine_crossover.tolerance={refine!r}"]
    for opt in ignored:
        err.print(f"[bold yellow]note:[/] {opt} has no effect here (" + ("--no-report: no report is written"
                  if opt == "--report-out" else "only used with --ray") + ")", highlight=False)
    try:
        s = load_scenario(scenario, set_)
    except ScenarioError as e:
        _print_scenario_error(e)
        raise typer.Exit(EXIT_BAD_INPUT)
    keep = None
    if filter_ is not None:
        from dsa_bench.sweep import point_filter

        try:
            keep = point_filter(filter_)
        except ValueError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT)
    if only is not None:
        wanted = [x.strip() for x in only.split(",") if x.strip()]
        unknown = [x for x in wanted if x not in s.implementations]
        if unknown or not wanted:
            err.print(f"[bold red]error:[/] --only: {', '.join(unknown) or repr(only)} is not among the scenario's "
                      f"implementations ({', '.join(s.implementations)})", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        s = s.model_copy(update={"implementations": [x for x in s.implementations if x in wanted]})
    from dsa_bench import runner

    if gpu is not None or price is not None:
        from dsa_bench.costmodel import apply_overrides

        try:
            s = s.model_copy(update={"cost": apply_overrides(s.cost, gpu, price)})
        except ValueError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT)
    if s.phase == "quality":
        unused = [name for name, v in (("--resume", resume), ("--ray", ray_address), ("--filter", filter_)) if v]
        if unused:
            err.print(f"[bold red]error:[/] {', '.join(unused)}: not for a phase: quality scenario (one training "
                      "run, no sweep points to resume, spread or filter)", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        _run_quality(s, scenario, out, device.value, report_out, no_report, dry_run, quiet, emit)
        return
    from dsa_bench import api

    try:
        dev, run_s = api.prepare_device(s, device.value)
    except ValueError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    except ScenarioError as e:
        _print_scenario_error(e)
        raise typer.Exit(EXIT_BAD_INPUT)
    if dev.type == "cpu" and (gpu is not None or price is not None) and not s.cost.curves:
        err.print("[bold yellow]note:[/] --gpu / --price price nothing in this run: CPU timings are not priced and "
                  "the scenario writes no cost curves (cost.curves: false)", highlight=False, soft_wrap=True)
    if dry_run:
        _print_plan(run_s, dev.type, keep)
        raise typer.Exit(EXIT_OK)
    if ray_address is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            err.print('[bold red]error:[/] --ray needs Ray: pip install -e ".[ray]"', highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT)
    times_kernels = bool(run_s.implementations)  # a cost-model-only scenario (paper Figure 3) times nothing
    if dev.type == "cpu" and times_kernels:
        err.print(f"[bold yellow]note:[/] {runner.CPU_TIMING_NOTE}", highlight=False)
    for failure in s.plugin_failures:
        err.print(f"[bold yellow]note:[/] {escape(failure)}; the implementations it would register are recorded "
                  "as error rows", highlight=False, soft_wrap=True)

    def _started(run_dir: Path, n_done: int) -> None:
        console.print(f"run directory: {run_dir}" + (f" (resuming, {n_done} done)" if n_done else ""))
        n_points = run_s.sweep.points()
        if n_points > 1000:
            err.print(f"[bold yellow]note:[/] {n_points} sweep points x {len(run_s.implementations)} implementations: "
                      "a long run (interrupt with Ctrl-C at any time and continue with --resume)", highlight=False)

    from dsa_bench.progress import SweepProgress

    try:
        with SweepProgress(console, quiet=quiet) as progress:
            outcome = api.run_scenario(
                s, out=out, device=device.value, resume=resume, scenario_file=str(scenario), keep=keep,
                ray_address=ray_address, gpus_per_point=gpus_per_point, on_progress=progress.update,
                on_point_done=progress.point_done, on_start=_started)
    except api.RunInterrupted as e:
        err.print(str(e))
        raise typer.Exit(EXIT_INTERRUPTED)
    except api.CostModelError as e:
        err.print(f"[bold red]cost model error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if outcome.cost_paths:
        console.print("cost model wrote " + ", ".join(str(p) for p in outcome.cost_paths))
    for note in outcome.notes:
        err.print(f"[bold yellow]note:[/] {note}", highlight=False)
    from dsa_bench.summary import summary_table

    if not quiet and outcome.rows:
        console.print(summary_table(outcome.rows, width=console.width))
    bad = outcome.failed
    if dev.type == "cpu" and times_kernels:
        err.print(f"[bold yellow]note:[/] {runner.CPU_TIMING_NOTE}", highlight=False)
    d = outcome.run_dir
    console.print(f"wrote {d / 'results.csv'}, {d / 'samples.csv'}, {d / 'run.json'}")
    index = None
    if not no_report:
        from dsa_bench.report.cli_commands import build_report_quietly

        index = build_report_quietly(d, report_out)
    if not no_report and index is None:
        err.print("[bold red]the report failed[/] (results are intact; retry with `dsa-bench report`)", highlight=False)
    if bad:
        err.print(f"[bold red]{len(bad)} row(s) failed[/] (status wrong/error): see the reason column")
    from dsa_bench.report.cli_commands import print_answer, read_summary

    summary = read_summary(d)
    sentences = print_answer(summary, report=index)
    emit(_json_document(s, run_s.phase, dev.type, d, index, sentences, summary, outcome.rows, len(bad),
                        outcome.cost_paths))
    if bad or (not no_report and index is None):
        raise typer.Exit(EXIT_FAILED_POINTS)


def _json_document(s, phase, device, run_dir, index, sentences, summary, rows, failed, cost_paths):
    from dsa_bench.jsonout import document

    return document(scenario=s.name, phase=phase, device=device, run_dir=run_dir, report=index, answer=sentences,
                    summary=summary, rows=rows, failed_rows=failed, cost_files=cost_paths)


def _run_quality(s, scenario: Path, out: Path, device: str, report_out: Optional[Path], no_report: bool,
                 dry_run: bool, quiet: bool, emit) -> None:
    """`run` of a phase: quality scenario: train and evaluate the indexer, then its report."""
    from dsa_bench import api
    from dsa_bench.quality.run import write_quality_report

    q = s.quality
    if dry_run:
        console.print(f"{s.name}: quality run, {q.warmup_steps} warm-up + {q.sparse_steps} sparse steps, "
                      f"k in {q.topk}, sequences of {q.source.seq_len} tokens")
        raise typer.Exit(EXIT_OK)

    def progress(step, total, stage, loss):
        if not quiet and (step % 50 == 0 or step == total):
            err.print(f"step {step}/{total} ({stage}): KL {loss:.4g}", highlight=False)

    try:
        run_dir = api.run_scenario(s, out=out, device=device, scenario_file=str(scenario),
                                   on_train_step=progress).run_dir
    except KeyboardInterrupt:
        err.print("interrupted: a quality run is not resumable; run it again")
        raise typer.Exit(EXIT_INTERRUPTED)
    from dsa_bench.report.answer import quality_sentences
    from dsa_bench.report.cli_commands import print_sentences

    head = json.loads((run_dir / "summary.json").read_text())
    console.print(f"wrote {run_dir}", highlight=False, soft_wrap=True)
    index = None if no_report else write_quality_report(run_dir, report_out)
    sentences = quality_sentences(head)
    print_sentences(sentences, report=index)
    dev = json.loads((run_dir / "run.json").read_text()).get("device", device)
    emit(_json_document(s, "quality", dev, run_dir, index, sentences, head, [], 0, []))


def _print_plan(s, device: str, keep=None) -> None:
    """The (point, implementation) pairs a run would measure, and an upper bound on timing time."""
    from dsa_bench.runner import plan

    tasks = plan(s, keep)
    t = Table(title=f"{s.name}: {len(tasks)} (point, implementation) pairs on {device}")
    for col in ("implementation", "phase", "B", "T", "k"):
        t.add_column(col, overflow="fold")
    for task in tasks:
        p = task.point
        t.add_row(task.impl.name, p.phase, str(p.batch), str(p.context), "-" if p.topk is None else str(p.topk))
    console.print(t)
    m = s.measure
    per = (m.warmup_ms + m.max_time_ms) / 1e3 * (4 if m.stages else 1)  # whole call, then up to 3 stages
    bound = len(tasks) * per
    text = (f"timing takes at most ~{_minutes(bound)} ({len(tasks)} pairs x (warmup_ms + max_time_ms)"
            f"{' x 4 with DSA stages' if m.stages else ''})")
    if device == "cpu":  # in the Triton interpreter, compiles and checks outweigh the timing itself
        text += (f"; with the interpreter's compiles, input generation and correctness checks (~{CPU_PAIR_OVERHEAD_S} s "
                 f"a pair on an idle 2-core machine) expect ~{_minutes(bound + len(tasks) * CPU_PAIR_OVERHEAD_S)}, "
                 "longer when the cores are shared")
    else:
        text += ", plus compiles (seconds per new shape), input generation and correctness checks"
    console.print(text, highlight=False)
    if s.refine_crossover is not None:
        rc = s.refine_crossover
        console.print(f"then crossover refinement: per crossing (DSA, phase, batch, k), up to {rc.max_points} new "
                      f"contexts inside its bracket (that DSA implementation and its dense baseline only) until the "
                      f"bracket is within {rc.tolerance:.0%}", highlight=False)


# Measured: the quickstart's 6 CPU pairs took 35 s on a 2-core machine (~12 s of it timing), 60 s with
# its cores shared by other work.
CPU_PAIR_OVERHEAD_S = 4


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="run directory: <out>/<scenario>/<run-id>"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="reports root: writes OUT/<scenario>/<run-id>/index.html (default: RUN_DIR/report/; "
                            "the committed reports: --out reports)"),
) -> None:
    """Write the HTML report of a run (plots, scaling fits, crossover, results table); print its answer."""
    from dsa_bench.report.cli_commands import report_command

    raise typer.Exit(report_command(run_dir, out))


@app.command()
def cost(
    run_dir: Path = typer.Argument(..., help="run directory timed on a GPU: results/<scenario>/<run-id>"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="price on this GPU profile (h800, h100, h200, ...)"),
    price: Optional[float] = typer.Option(None, "--price", help="USD per GPU hour"),
) -> None:
    """(Re)write a GPU run's full-model cost curves from its own timings (cost_curves.csv / .png,
    cost_calibration.json in the run directory), e.g. repriced with --gpu / --price.

    Exit codes: 0 written; 2 not a run, no GPU timings of dense and DSA, or a bad option.
    """
    import pandas as pd

    from dsa_bench.costmodel import apply_overrides, has_gpu_timings, write_cost_outputs
    from dsa_bench.report.load import RunError, load_run
    from dsa_bench.scenario import parse_scenario

    # Errors (a bad option, not a run, no GPU timings) go to the command's error boundary: exit 2.
    if gpu is not None or price is not None:
        apply_overrides(None, gpu, price)  # refuse a bad --gpu / --price before reading anything
    run = load_run(run_dir)
    scenario_dict = run.meta.get("scenario")
    if isinstance(scenario_dict, dict):  # the cpu: section plays no part in pricing a GPU run's timings
        scenario_dict = {k: v for k, v in scenario_dict.items() if k != "cpu"}
    s = parse_scenario(scenario_dict, str(run_dir / "run.json"))
    rows = pd.read_csv(run_dir / "results.csv")
    if not has_gpu_timings(rows):
        raise RunError(f"{run_dir}: no GPU timings of both a dense and a DSA implementation to price")
    from dsa_bench.api import write_summary_json
    from dsa_bench.report.fullcost import run_gpu_profile

    # The run's own GPU unless --gpu asks for another (what run.json's cost.gpu says is a default then).
    cfg = apply_overrides(s.cost.model_copy(update={"curves": True, "source": "measured", "measured_run": None}),
                          gpu or run_gpu_profile(run), price)
    paths = write_cost_outputs(s.model_copy(update={"cost": cfg}), run_dir, rows)
    paths.append(write_summary_json(run_dir))  # the run's answer follows its new price
    console.print("cost model wrote " + ", ".join(str(p) for p in paths), highlight=False, soft_wrap=True)
    from dsa_bench.report.answer import full_cost_sentence
    from dsa_bench.report.cli_commands import print_sentences
    from dsa_bench.report.fullcost import full_model_cost

    sentence = full_cost_sentence(full_model_cost(load_run(run_dir)))
    print_sentences([sentence] if sentence else [])
    console.print(f"its HTML report keeps the old price until `dsa-bench report {run_dir}` re-renders it",
                  style="dim", highlight=False, soft_wrap=True)


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="baseline run directory (A)"),
    run_b: Path = typer.Argument(..., help="run directory compared with it (B)"),
    fail_on_regression: Optional[float] = typer.Option(
        None, "--fail-on-regression", metavar="PCT",
        help="exit 1 if a point got slower by more than PCT percent (IQRs disjoint) or stopped working"),
    html: Optional[Path] = typer.Option(None, "--html", help="also write the comparison as an HTML page"),
    gate_on: GateOn = typer.Option(GateOn.all, "--gate-on",
                                   help="what --fail-on-regression judges: every stage row, or whole calls only"),
    allow_different: bool = typer.Option(False, "--allow-different",
                                         help="compare even when the runs time different work (model, phase, dtype)"),
) -> None:
    """Compare two runs point by point: ratio of medians B/A and a verdict.

    Exit codes: 0 no regression (or no gate); 1 --fail-on-regression found one; 2 bad input.
    """
    from dsa_bench.report.cli_commands import compare_command

    raise typer.Exit(compare_command(run_a, run_b, fail_on_regression, html, gate_on.value, allow_different))


@app.command("check-kernels")
def check_kernels(
    out: Path = typer.Option(DEFAULT_OUT / "kernel-check", "--out", help="directory for kernel_check.json"),
) -> None:
    """On a GPU: compare every Triton kernel with its PyTorch reference at DeepSeek shapes (T up to 128K)."""
    import torch

    if not torch.cuda.is_available():
        err.print("[bold red]error:[/] check-kernels needs a CUDA GPU", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    from dsa_bench.selfcheck import run_selfcheck

    path, failures = run_selfcheck(out)
    console.print(f"wrote {path}: {failures} failing case(s)")
    raise typer.Exit(EXIT_FAILED_POINTS if failures else EXIT_OK)


peers_app = GuardedTyper(no_args_is_help=False, invoke_without_command=True,
                        help="The production DSA kernels (FlashMLA, DeepGEMM, vLLM top-k, FA3): where they are, getting them.")
app.add_typer(peers_app, name="peers")


@peers_app.callback()
def peers(ctx: typer.Context, load: bool = typer.Option(
        False, "--load", help="load each library and check its op schemas (on the GPU machine)")) -> None:
    """Say which production libraries and implementations are available here, and why not."""
    if ctx.invoked_subcommand is not None:
        return
    from dsa_bench.peers.libraries import ENV_DIR
    from dsa_bench.peers.status import implementation_states, library_states

    states = library_states(load)
    t = Table(title="production libraries" + (" (loaded, schemas checked)" if load else " (located, not loaded)"))
    for col in ("library", "from", "why not"):
        t.add_column(col, overflow="fold")
    for s in states:
        t.add_row(s.name, s.source or "", s.reason or "")
    console.print(t)
    t = Table(title="production implementations")
    for col in ("implementation", "needs", "status"):
        t.add_column(col, overflow="fold")
    for name, needs, why in implementation_states(states):
        t.add_row(name, ", ".join(needs), f"[red]unavailable[/]: {why}" if why else "[green]ready[/] (a CUDA sm_90 GPU also needed)")
    console.print(t)
    console.print(f"Sources: standalone packages, an installed vLLM, or ${ENV_DIR} (see `dsa-bench peers extract --help`).",
                  highlight=False)


@peers_app.command("extract")
def peers_extract(
    wheel: Path = typer.Argument(..., help="a vLLM wheel (e.g. vllm-0.26.0-cp38-abi3-manylinux_2_28_x86_64.whl)"),
    out: Path = typer.Argument(..., help="folder to write (keep it out of version control)"),
    python: Optional[List[str]] = typer.Option(None, "--python", help="keep DeepGEMM's _C for these Pythons only (e.g. 3.12)"),
) -> None:
    """Take the production kernels out of a vLLM wheel; then set DSA_BENCH_VLLM_DIR=OUT/vllm."""
    import zipfile

    from dsa_bench.peers.extract import extract

    if not wheel.is_file():
        err.print(f"[bold red]error:[/] no such wheel {wheel}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        written = extract(wheel, out, python)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    console.print(f"wrote {len(written)} files under {out}; export DSA_BENCH_VLLM_DIR={out.resolve() / 'vllm'}",
                  highlight=False)


@peers_app.command("pack")
def peers_pack(
    folder: Path = typer.Argument(..., help="a folder written by `peers extract`"),
    archive: Path = typer.Argument(..., help="the .tar.xz to write"),
    part_mb: Optional[int] = typer.Option(None, "--part-mb", min=1, help="split into parts of at most this many MiB"),
) -> None:
    """Compress an extracted folder into one xz tarball (or parts), to carry it to a GPU machine."""
    from dsa_bench.peers.extract import pack

    if not folder.is_dir():
        err.print(f"[bold red]error:[/] {folder} is not a folder", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    parts = pack(folder, archive, part_mb << 20 if part_mb else None)
    console.print("wrote " + ", ".join(f"{p} ({p.stat().st_size >> 20} MiB)" for p in parts), highlight=False)


@peers_app.command("unpack")
def peers_unpack(
    parts: List[Path] = typer.Argument(..., help="the .tar.xz, or all its .partNN files"),
    out: Path = typer.Option(Path("."), "--out", help="folder to unpack into"),
) -> None:
    """Restore a folder written by `peers pack`."""
    from dsa_bench.peers.extract import unpack

    missing = [p for p in parts if not p.is_file()]
    if missing:
        err.print(f"[bold red]error:[/] no such file {missing[0]}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    import lzma
    import tarfile

    from dsa_bench.errors import InputError

    try:
        unpack(parts, out)
    except (tarfile.TarError, lzma.LZMAError, EOFError) as e:
        raise InputError(f"{parts[0]}: not an archive written by `dsa-bench peers pack` ({type(e).__name__}: {e})",
                         hint="give the .tar.xz (or all its .partNN files) that `peers pack` wrote") from None
    console.print(f"unpacked under {out}", highlight=False)


def with_optional_values(args: list[str], option: str = "--refine-crossover",
                         default: str = repr(REFINE_DEFAULT)) -> list[str]:
    """`--refine-crossover` given without a number gets the default (Typer has no options whose value
    is optional): `run S.yaml --refine-crossover` means `--refine-crossover 0.1`."""
    out = []
    for i, a in enumerate(args):
        out.append(a)
        if a == option:
            nxt = args[i + 1] if i + 1 < len(args) else ""
            try:
                float(nxt)
            except ValueError:
                out.append(default)
    return out


def main() -> None:
    app(args=with_optional_values(sys.argv[1:]))


if __name__ == "__main__":
    main()
