"""The `aha` command line. It owns the terminal: stages emit events, `aha.terminal` draws them."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aha import runs as runs_module
from aha.config import ConfigError, SampleConfig, SFTConfig, ZeroConfig, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="aha — the DeepSeek-R1 recipe end to end, and the place to watch the aha moment happen.")
console = Console()
# Errors a user can fix (a bad config, a missing file, a bad data row): one line, exit 2.
USER_ERRORS = (ConfigError, FileNotFoundError, KeyError, ValueError, ImportError)


def _split_args(args: list[str] | None, default_recipe: str | None) -> tuple[Path | None, list[str]]:
    """`[RECIPE] [key=value …]`: a first argument without '=' names a recipe file or a bundled recipe."""
    args = list(args or [])
    recipe = default_recipe
    if args and "=" not in args[0]:
        recipe = args.pop(0)
    return (_find_recipe(recipe) if recipe else None), args


def _find_recipe(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    bundled = resources.files("aha") / "recipes" / f"{name.removesuffix('.yaml')}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    names = sorted(p.name.removesuffix(".yaml") for p in (resources.files("aha") / "recipes").iterdir()
                   if p.name.endswith(".yaml"))
    raise ConfigError(f"recipe {name!r} not found: not a file, nor a bundled recipe ({', '.join(names)})")


def _quiet_transformers() -> None:
    # Keep the console for aha's own progress bars: no per-file "Loading weights" bars.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _fail(err: BaseException, code: int = 2) -> None:
    # Escaped: messages quote brackets ("pip install 'aha-rl[vllm]'") that rich would read as markup.
    console.print(f"[bold red]error:[/bold red] {escape(str(err))}", soft_wrap=True)
    raise typer.Exit(code)


def _process_group():
    """The launcher's process group (`aha.train.dist`), or None for a plain single process — which
    then never imports torch before its config is validated."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not any(
            os.environ.get(v, "").lower() in ("1", "true") for v in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")):
        return None
    from aha.train import dist

    try:
        return dist.init()
    except USER_ERRORS as err:
        _fail(err)


def _resolve_run(cls, args, resume, default_recipe, force, allow_changes, extra, d):
    """The validated config and the run directory (rank 0 claims a fresh one and shares it)."""
    from aha.config.resume import resume_config

    try:
        if resume is not None:
            recipe, overrides = _split_args(args, None)
            if recipe is not None:
                raise ConfigError(f"--resume takes key=value overrides only, got {recipe}")
            return resume_config(cls, resume, [*extra, *overrides], allow_changes), resume
        recipe, overrides = _split_args(args, default_recipe)
        cfg = load_config(cls, recipe, [*extra, *overrides])
        run_dir = None
        if d is None or d.is_main:
            try:
                run_dir = runs_module.fresh_run_dir(cfg.run.out_dir, cfg.run.name, force=force)
            except OSError as err:
                raise ConfigError(f"run.out_dir: cannot create {Path(cfg.run.out_dir) / cfg.run.name}: "
                                  f"{err.strerror or err}") from None
        if d is not None:
            run_dir = d.broadcast(run_dir)  # one directory for all ranks: rank 0's
        console.print(f"run directory: {run_dir}")
        return cfg, run_dir
    except USER_ERRORS as err:
        _fail(err)


def _run_stage(command: str, cls, stage_module: str, args: list[str] | None, resume: Path | None,
               default_recipe: str | None, force: bool, allow_changes: bool,
               extra: list[str] = ()):
    """Resolve the config (validated before the stage, torch or any model is loaded: a bad config
    fails in about a second), claim the run directory, run the stage with the console view
    listening, and turn its stops into exit codes. Launched as several processes (torchrun,
    accelerate launch), rank 0 claims the directory and alone prints."""
    import contextlib
    import importlib

    d = _process_group()
    console.quiet = d is not None and not d.is_main
    cfg, run_dir = _resolve_run(cls, args, resume, default_recipe, force, allow_changes, extra, d)

    from aha.events import Events
    from aha.terminal import ConsoleView
    from aha.train.checkpoint import DivergedError
    from aha.train.signals import StopRequested

    _quiet_transformers()
    stage = importlib.import_module(stage_module).run
    view = ConsoleView(console, progress=cfg.run.progress)
    try:
        with runs_module.removed_if_failed(run_dir) if d is None or d.is_main else contextlib.nullcontext():
            summary = stage(cfg, run_dir, Events([view]))
    except StopRequested as stop:
        view.close()
        console.print(f"\n{stop}; continue with `aha {command} --resume {run_dir}`")
        raise typer.Exit(stop.exit_code)
    except DivergedError as err:
        view.close()
        _fail(err, code=3)
    except USER_ERRORS as err:
        view.close()
        _fail(err)
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, no checkpoint
        view.close()
        raise typer.Exit(130)
    view.close()
    return summary, run_dir


RESUME = typer.Option(None, "--resume", help="continue the run in this directory (key=value overrides allowed)")
FORCE = typer.Option(False, "--force", help="replace run.out_dir/run.name if it exists (default: a new name-2)")
ALLOW = typer.Option(False, "--allow-changes", help="with --resume: accept changed algorithm settings (recorded)")


@app.command()
def zero(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …], e.g. grpo.beta=0.001"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """R1-Zero: GRPO from a base model with rule rewards only (defaults: the laptop miniature)."""
    summary, run_dir = _run_stage("zero", ZeroConfig, "aha.stages.grpo", args, resume, "zero-tiny", force,
                                  allow_changes)
    from aha.observe.report import write_report

    if console.quiet:  # another rank of a multi-process run: rank 0 writes the report
        return
    console.print(f"report: {write_report([run_dir])}")
    from aha.terminal import zero_summary

    console.print(zero_summary(summary, run_dir))
    console.print(f"files: {run_dir}/summary.json, metrics.jsonl, samples.jsonl, report.html")


@app.command()
def r1(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …], e.g. reasoning_rl.grpo.steps=50"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """DeepSeek-R1's pipeline: cold start → reasoning RL (+ language consistency) → rejection
    sampling + SFT from the base → the stages compared on one held-out set (defaults: the bilingual miniature)."""
    from aha.config.r1 import R1Config

    summary, run_dir = _run_stage("r1", R1Config, "aha.pipelines.r1", args, resume, "r1-tiny", force, allow_changes)
    if console.quiet:
        return
    from aha.pipelines.r1_report import write_report
    from aha.terminal import r1_table

    console.print(r1_table(summary["comparison"], run_dir))
    console.print(f"report: {write_report(run_dir)}")


@app.command()
def sft(
    args: Optional[List[str]] = typer.Argument(None, help="DATA [RECIPE.yaml] [key=value …]; DATA: JSONL, parquet or "
                                                           "a datasets directory (or give data.path=…)"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """Supervised fine-tuning on completion/assistant tokens only, packed without padding."""
    args = list(args or [])
    extra = [f"data.path={args.pop(0)}"] if args and "=" not in args[0] and not args[0].endswith((".yaml", ".yml")) else []
    summary, run_dir = _run_stage("sft", SFTConfig, "aha.stages.sft", args, resume, None, force, allow_changes, extra)
    from aha.terminal import sft_summary

    console.print(sft_summary(summary, run_dir))


@app.command()
def sample(
    args: Optional[List[str]] = typer.Argument(None, help="MODEL_OR_RUN|URL [key=value …], e.g. sample.k=8 task.name=gsm8k"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """k samples per prompt, verified and filtered into SFT-ready JSONL (rejection sampling)."""
    args = list(args or [])
    extra = []
    if args and args[0].startswith(("http://", "https://")):  # an endpoint; model.path gives the tokenizer
        extra = ["rollout.engine=openai", f"rollout.options.base_url={args.pop(0)}"]
    elif args and "=" not in args[0]:
        try:
            extra = [f"model.path={runs_module.model_dir_of(Path(args.pop(0)))}"]
        except FileNotFoundError as err:
            _fail(err)
    summary, run_dir = _run_stage("sample", SampleConfig, "aha.stages.sample", args, resume, None, force,
                                  allow_changes, extra)
    table = Table(title=f"samples {run_dir.name}", show_header=True)
    table.add_column("filter")
    table.add_column("dropped", justify="right")
    table.add_column("left", justify="right")
    for step in summary["filters"]:
        table.add_row(step["filter"], str(step["dropped"]), str(step["left"]))
    console.print(table)
    console.print(f"{summary['records']} records → {summary['kept']} kept: {run_dir}/sft.jsonl "
                  f"(all records with verdicts: {run_dir}/records.jsonl)")


@app.command()
def rm(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …], e.g. data.path=pairs.jsonl "
                                                           "model.path=DIR (default: synthetic pairs, bilingual base)"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """A reward model (one-label classifier on a causal LM's body) trained on preference pairs, scoring
    prompt + summary: the model `reward_model.path` names for all-scenario RL."""
    from aha.config.rm import RMConfig

    summary, run_dir = _run_stage("rm", RMConfig, "aha.stages.rm", args, resume, None, force, allow_changes)
    from aha.terminal import rm_summary

    console.print(rm_summary(summary, run_dir))


@app.command()
def distill(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …], e.g. sample.problems=2000"),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="a run, a model directory or an OpenAI-compatible URL"),
    student: Optional[str] = typer.Option(None, "--student", help="a model directory or 'embedded' (default)"),
    task: Optional[str] = typer.Option(None, "--task", help="task name (default division)"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """Teacher traces (verified, filtered, deduped, decontaminated) distilled into a student by SFT."""
    from aha.config.distill import DistillConfig

    extra = [f"{key}={value}" for key, value in (("teacher.path", teacher), ("model.path", student),
                                                 ("task.name", task)) if value]
    summary, run_dir = _run_stage("distill", DistillConfig, "aha.stages.distill", args, resume, None, force,
                                  allow_changes, extra)
    table = Table(title=f"distillation {run_dir.name}", show_header=False)
    table.add_row("teacher", str(summary["teacher"]))
    table.add_row("traces sampled / after filters", f"{summary['records']} / {summary['after_filters']}")
    table.add_row("decontaminated / trained on", f"{summary['decontaminated']} / {summary['trained_rows']}")
    table.add_row("student held-out loss (start → end)", f"{summary['held_out_loss_start']:.4f} → "
                                                          f"[bold]{summary['held_out_loss_end']:.4f}[/bold]")
    table.add_row("student", str(summary["student_dir"]))
    console.print(table)


@app.command()
def pretrain(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …] (pretrain.* and task.*)"),
    rebuild: bool = typer.Option(False, "--rebuild", help="build it even if a cached or shipped copy exists"),
):
    """Build (or find cached) the embedded tiny base model and print its directory."""
    from aha.events import Events
    from aha.stages.pretrain import ensure_base_model
    from aha.terminal import ConsoleView

    try:
        recipe, overrides = _split_args(args, "zero-tiny")
        cfg = load_config(ZeroConfig, recipe, overrides)
    except USER_ERRORS as err:
        _fail(err)
    _quiet_transformers()
    view = ConsoleView(console, progress=cfg.run.progress)
    path = ensure_base_model(cfg.pretrain, cfg.task, Events([view]), rebuild=rebuild)
    view.close()
    console.print(str(path))


@app.command()
def plan(
    args: Optional[List[str]] = typer.Argument(None, help="RECIPE [key=value …], e.g. zero-qwen2.5-math-1.5b"),
    gpus: int = typer.Option(8, "--gpus", help="GPUs in all"),
    gpu: str = typer.Option("H100", "--gpu", help="GPU kind (sets peak bf16 FLOP/s and memory): "
                            "H100, H800, H200, A100, B200, L40S"),
    gpu_memory: Optional[float] = typer.Option(None, "--gpu-memory", help="GiB per GPU (default: the kind's)"),
    mfu: float = typer.Option(0.35, "--mfu", help="model FLOPs utilisation of the update"),
    rollout_mfu: float = typer.Option(0.10, "--rollout-mfu", help="MFU of generation (memory-bound decoding)"),
    price: float = typer.Option(2.0, "--price", help="US$ per GPU-hour"),
    zero: int = typer.Option(0, "--zero", min=0, max=3, help="0 = replicated; 3 ≈ aha's FSDP2 sharding; 1-2 = ZeRO partial sharding (not in aha)"),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing"),
    prompt_tokens: int = typer.Option(150, "--prompt-tokens", help="mean prompt length, tokens"),
    fill: float = typer.Option(0.5, "--fill", help="mean response length as a share of rollout.max_new_tokens"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
):
    """Validate a GPU recipe and estimate, without a GPU, memory per device, tokens, FLOPs, time and cost."""
    import json

    from aha import plan as planner

    if gpu not in planner.GPUS:
        _fail(ValueError(f"--gpu {gpu}: expected one of {', '.join(planner.GPUS)}"))
    peak, memory = planner.GPUS[gpu]
    hw = planner.Hardware(gpus=gpus, memory_gb=gpu_memory or memory, peak_flops=peak, mfu=mfu,
                          rollout_mfu=rollout_mfu, price=price, zero=zero, gradient_checkpointing=gradient_checkpointing)
    try:
        recipe, overrides = _split_args(args, None)
        cfg, result, source, notes = planner.plan_recipe(recipe, overrides, hw, prompt_tokens, fill)
    except USER_ERRORS as err:
        _fail(err)
    if as_json:
        console.print_json(json.dumps({**result, "shape_source": source, "notes": notes}))
        return
    title = f"{cfg.run.name}: {gpus} × {gpu} ({hw.memory_gb:g} GiB), {prompt_tokens}-token prompts, responses {fill:g} × {cfg.rollout.max_new_tokens}"
    console.print(planner.render(result, hw, source, title))
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)


@app.command("eval")
def eval_cmd(
    target: str = typer.Argument(..., help="a model directory, a run directory, 'embedded', or an OpenAI-compatible URL"),
    task: str = typer.Option("division", help="task name"),
    problems: int = typer.Option(200, help="held-out problems"),
    k: int = typer.Option(4, help="samples per problem (pass@1 is averaged over them)"),
    temperature: float = typer.Option(0.6),
    top_p: float = typer.Option(0.95),
    max_new_tokens: int = typer.Option(64),
    seed: int = typer.Option(0, help="problems, sampling and bootstrap seed"),
    template: str = typer.Option("r1-zero", help="prompt template (r1-zero, plain, chat, or text with {prompt})"),
    tokenizer: Optional[str] = typer.Option(None, help="with a URL: the tokenizer's model directory (default embedded)"),
    out: Optional[Path] = typer.Option(None, "--out", help="where records.jsonl and eval.json go (default runs/eval-TASK)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON instead of a table"),
):
    """pass@1 over k samples with a bootstrap 95% interval, cons@k and unbiased pass@k' (held-out split)."""
    import json

    from aha.stages import paper_eval

    _quiet_transformers()
    settings = paper_eval.EvalSettings(task=task, problems=problems, k=k, temperature=temperature, top_p=top_p,
                                       max_new_tokens=max_new_tokens, seed=seed, template=template)
    try:
        settings.validate()
        out_dir = out or runs_module.fresh_run_dir("runs", f"eval-{task}")
        report = paper_eval.run(target, settings, out_dir, tokenizer_dir=tokenizer)
    except (*USER_ERRORS, RuntimeError) as err:
        _fail(err)
    if as_json:
        print(json.dumps(report))
        return
    from aha.terminal import eval_table

    console.print(eval_table(report))
    console.print(f"files: {out_dir}/records.jsonl, eval.json")


@app.command()
def serve(
    model: str = typer.Argument(..., help="a model directory, a run directory, or 'embedded'"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    name: Optional[str] = typer.Option(None, "--name", help="the model id clients ask for (default: MODEL as given)"),
    max_batch: int = typer.Option(64, "--max-batch", help="rows (samples) decoded together"),
    max_cohorts: int = typer.Option(4, "--max-cohorts", help="batches decoding at once, stepped in turn "
                                                             "(late arrivals start without waiting; 1 = one at a time)"),
    reasoning_parser: Optional[str] = typer.Option(None, "--reasoning-parser",
                                                   help="deepseek_r1: return <think> text as reasoning_content"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16-mixed"),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = torch's default)"),
):
    """An OpenAI-compatible server (chat, completions, streaming) over aha's batched decoder."""
    import torch

    from aha.serve import load_server

    _quiet_transformers()
    if threads:
        torch.set_num_threads(threads)
    try:
        if precision not in ("fp32", "bf16-mixed"):
            raise ValueError(f"--precision: expected fp32 or bf16-mixed, got {precision!r}")
        import uvicorn

        from aha.serve.app import create_app

        server = load_server(model, name=name, max_batch=max_batch, reasoning_parser=reasoning_parser,
                             precision=precision, max_cohorts=max_cohorts)
    except USER_ERRORS as err:
        _fail(err)
    console.print(f"serving {server.name!r} on http://{host}:{port}/v1")
    try:
        uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
    finally:
        server.close()


@app.command()
def paper(
    seeds: Optional[int] = typer.Option(None, "--seeds", help="seeds 0…N-1 (default 3; 1 with --quick)"),
    quick: bool = typer.Option(False, "--quick", help="one seed and shorter schedules: a first look, not a result"),
    out: Path = typer.Option(Path("paper"), "--out", help="report.html, results.json, state and runs; "
                                                          "run again to continue a stopped one"),
    fresh: bool = typer.Option(False, "--fresh", help="delete OUT's state and runs first"),
):
    """The R1 paper's findings F1–F6 measured over seeds, with 95 % intervals and verdicts, in one report."""
    import shutil

    from aha.events import Events
    from aha.stages import paper as paper_stage
    from aha.terminal import ConsoleView, paper_table
    from aha.train.signals import StopRequested

    settings = paper_stage.PaperSettings(seeds=seeds if seeds is not None else (1 if quick else 3), quick=quick)
    again = f"aha paper --seeds {settings.seeds}{' --quick' if quick else ''} --out {out}"
    try:
        settings.validate()
    except ValueError as err:
        _fail(err)
    if fresh:
        shutil.rmtree(out / "runs", ignore_errors=True)
        (out / paper_stage.STATE).unlink(missing_ok=True)
    _quiet_transformers()
    view = ConsoleView(console)
    try:
        results = paper_stage.run(settings, out, Events([view]))
    except StopRequested as stop:
        view.close()
        console.print(f"\n{stop}; continue with `{again}`")
        raise typer.Exit(stop.exit_code)
    except USER_ERRORS as err:
        view.close()
        _fail(err)
    except KeyboardInterrupt:
        view.close()
        console.print(f"\nstopped; `{again}` continues from the last finished cell and checkpoint")
        raise typer.Exit(130)
    view.close()
    console.print(paper_table(results))
    console.print(f"report: {results['report']}  results: {out / 'results.json'}  "
                  f"({results['wall_seconds'] / 60:.1f} min of experiments)")
    if results["failed"]:
        raise typer.Exit(1)


@app.command()
def report(
    runs: List[Path] = typer.Argument(..., help="run directories (several are overlaid)"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write the HTML (default RUN/report.html)"),
    watch: bool = typer.Option(False, "--watch", help="re-render while the run goes on"),
    interval: float = typer.Option(10.0, "--interval", help="seconds between re-renders with --watch"),
):
    """Write RUN/report.html and RUN/figures/*.png: curves, the aha step, milestone transcripts, cost."""
    from aha.observe.report import watch as watch_report, write_report

    for run in runs:
        if not (run / "metrics.jsonl").exists() and not watch:
            _fail(FileNotFoundError(f"{run}: not a run directory (no metrics.jsonl)"))
    if watch:
        for path in watch_report(runs, interval=interval, out=out):
            console.print(f"report: {path}")
    else:
        console.print(f"report: {write_report(runs, out)}")


experiment_app = typer.Typer(no_args_is_help=True, help="The paper's comparisons in miniature, over seeds, "
                                                          "with a table and a report (resumable).")
app.add_typer(experiment_app, name="experiment")


def _run_experiment(experiment):
    """Run `experiment(events)` with the console view; a stop or a user error ends it like a stage."""
    from aha.events import Events
    from aha.terminal import ConsoleView
    from aha.train.signals import StopRequested

    _quiet_transformers()
    view = ConsoleView(console)
    try:
        return experiment(Events([view]))
    except StopRequested as stop:
        console.print(f"\n{stop}; rerun the same command to continue")
        raise typer.Exit(stop.exit_code)
    except USER_ERRORS as err:
        _fail(err)
    finally:
        view.close()


@experiment_app.command("distill-vs-rl")
def distill_vs_rl(
    more_seeds: Optional[List[int]] = typer.Argument(None, metavar="[SEED …]", help="more seeds (`--seeds 0 1 2`)"),
    seeds: Optional[List[int]] = typer.Option(None, "--seeds", help="training seeds, e.g. --seeds 0 1 2 (default 0 1 2)"),
    out: Path = typer.Option(Path("runs/distill-vs-rl"), "--out", help="experiment directory (rerun to resume)"),
    quick: bool = typer.Option(False, "--quick", help="a schedule of seconds, for tests (not a result)"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads for every stage"),
):
    """Table 6 in miniature: a small student distilled from the RL teacher vs the same student
    trained by GRPO, compared at equal training FLOPs (teacher sampling charged to distillation)."""
    from aha.experiments import distill_vs_rl as experiment
    from aha.terminal import distill_vs_rl_table

    if more_seeds and not seeds:
        _fail(ValueError(f"unexpected arguments {more_seeds}: give seeds as --seeds 0 1 2"))
    chosen = [*(seeds or []), *(more_seeds or [])] or [0, 1, 2]
    results = _run_experiment(lambda events: experiment.run(out, chosen, quick, events, threads=threads))
    console.print(distill_vs_rl_table(results["summary"]))
    console.print(results["summary"]["verdict"])
    console.print(f"files: {out}/results.json, {results['report']}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
