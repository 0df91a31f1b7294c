"""The `aha` command line. It owns the terminal: stages emit events, `aha.terminal` draws them."""

from __future__ import annotations

import contextlib
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
    import importlib

    d = _process_group()
    console.quiet = d is not None and not d.is_main
    cfg, run_dir = _resolve_run(cls, args, resume, default_recipe, force, allow_changes, extra, d)

    from aha.events import Events
    from aha.terminal import ConsoleView

    _quiet_transformers()
    stage = importlib.import_module(stage_module).run
    view = ConsoleView(console, progress=cfg.run.progress)
    with stops_as_exit_codes(view, f"aha {command} --resume {run_dir}"):
        with runs_module.removed_if_failed(run_dir) if d is None or d.is_main else contextlib.nullcontext():
            summary = stage(cfg, run_dir, Events([view]))
    return summary, run_dir


@contextlib.contextmanager
def stops_as_exit_codes(view, again: str):
    """A stage's ways of stopping as the CLI's exit codes, the console view closed either way: a
    signal (SIGTERM, Ctrl-C) → 143 / 130 and the command that continues; non-finite training → 3;
    an error the user can fix → 2; a second Ctrl-C (no checkpoint) → 130."""
    from aha.train.checkpoint import DivergedError
    from aha.train.signals import StopRequested

    try:
        yield
    except StopRequested as stop:
        view.close()
        console.print(f"\n{stop}; continue with `{again}`")
        raise typer.Exit(stop.exit_code)
    except DivergedError as err:
        view.close()
        _fail(err, code=3)
    except USER_ERRORS as err:
        view.close()
        _fail(err)
    except KeyboardInterrupt:
        view.close()
        console.print(f"\nstopped at once; `{again}` continues from the last checkpoint")
        raise typer.Exit(130)
    view.close()


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


# The commands over runs, models and experiments live in their own module (registered on `app`).
from aha import cli_tools as _tools  # noqa: E402,F401


def main() -> None:  # pragma: no cover
    sys.exit(app())
