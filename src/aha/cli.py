"""The `aha` command line. It owns the terminal: stages emit events, `aha.terminal` draws them."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
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
    names = sorted(p.name.removesuffix(".yaml") for p in (resources.files("aha") / "recipes").iterdir())
    raise ConfigError(f"recipe {name!r} not found: not a file, nor a bundled recipe ({', '.join(names)})")


def _quiet_transformers() -> None:
    # Keep the console for aha's own progress bars: no per-file "Loading weights" bars.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _fail(err: BaseException, code: int = 2) -> None:
    console.print(f"[bold red]error:[/bold red] {err}", soft_wrap=True)
    raise typer.Exit(code)


def _run_stage(command: str, cls, stage_module: str, args: list[str] | None, resume: Path | None,
               default_recipe: str | None, force: bool, allow_changes: bool,
               extra: list[str] = ()):
    """Resolve the config (validated before the stage, torch or any model is loaded: a bad config
    fails in about a second), claim the run directory, run the stage with the console view
    listening, and turn its stops into exit codes."""
    from aha.config.resume import resume_config

    try:
        if resume is not None:
            recipe, overrides = _split_args(args, None)
            if recipe is not None:
                raise ConfigError(f"--resume takes key=value overrides only, got {recipe}")
            cfg, run_dir = resume_config(cls, resume, [*extra, *overrides], allow_changes), resume
        else:
            recipe, overrides = _split_args(args, default_recipe)
            cfg = load_config(cls, recipe, [*extra, *overrides])
            try:
                run_dir = runs_module.fresh_run_dir(cfg.run.out_dir, cfg.run.name, force=force)
            except OSError as err:
                raise ConfigError(f"run.out_dir: cannot create {Path(cfg.run.out_dir) / cfg.run.name}: "
                                  f"{err.strerror or err}") from None
            console.print(f"run directory: {run_dir}")
    except USER_ERRORS as err:
        _fail(err)
    import importlib

    from aha.events import Events
    from aha.terminal import ConsoleView
    from aha.train.checkpoint import DivergedError
    from aha.train.signals import StopRequested

    _quiet_transformers()
    stage = importlib.import_module(stage_module).run
    view = ConsoleView(console, progress=cfg.run.progress)
    try:
        with runs_module.removed_if_failed(run_dir):
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

    console.print(f"report: {write_report([run_dir])}")
    _print_summary(summary, run_dir)


def _print_summary(summary: dict, run_dir: Path) -> None:
    table = Table(title=f"R1-Zero run {run_dir.name}", show_header=False)
    table.add_row("held-out pass@1 (base → final)",
                  f"{summary['base_accuracy']:.3f} → [bold]{summary['final_accuracy']:.3f}[/bold]")
    table.add_row("response length, tokens (base → final)",
                  f"{summary['base_eval']['response_length_mean']:.1f} → {summary['final_eval']['response_length_mean']:.1f}")
    rows = runs_module.read_jsonl(run_dir / "metrics.jsonl")
    if rows:
        tenth = max(1, len(rows) // 10)
        first, last = (sum(r["reflection_rate"] for r in part) / len(part) for part in (rows[:tenth], rows[-tenth:]))
        table.add_row("reflection rate (first → last 10% of steps)", f"{first:.2f} → {last:.2f}")
    table.add_row("steps / wall seconds", f"{summary['steps']} / {summary['wall_seconds']:.0f}")
    table.add_row("tokens generated / trained", f"{summary['tokens_generated']:,} / {summary['tokens_trained']:,}")
    console.print(table)
    console.print(f"files: {run_dir}/summary.json, metrics.jsonl, samples.jsonl, report.html")


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
    table = Table(title=f"SFT run {run_dir.name}", show_header=False)
    table.add_row("held-out loss (start → end)", f"{summary['held_out_loss_start']:.4f} → "
                                                  f"[bold]{summary['held_out_loss_end']:.4f}[/bold]")
    table.add_row("rows trained / held out / dropped", f"{summary['rows_train']} / {summary['rows_held_out']} / "
                                                        f"{summary['rows_dropped']}")
    table.add_row("optimizer steps / tokens trained", f"{summary['steps']} / {summary['tokens_trained']:,}")
    table.add_row("model", str(summary["model_dir"]))
    console.print(table)


@app.command()
def sample(
    args: Optional[List[str]] = typer.Argument(None, help="MODEL_OR_RUN [key=value …], e.g. sample.k=8 task.name=gsm8k"),
    resume: Optional[Path] = RESUME, force: bool = FORCE, allow_changes: bool = ALLOW,
):
    """k samples per prompt, verified and filtered into SFT-ready JSONL (rejection sampling)."""
    args = list(args or [])
    extra = []
    if args and "=" not in args[0]:
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


@app.command("eval")
def eval_cmd(
    model: Path = typer.Argument(..., help="an HF model directory (e.g. runs/NAME/checkpoint-200)"),
    task: str = typer.Option("division", help="task name"),
    problems: int = typer.Option(200, help="held-out problems"),
    k: int = typer.Option(4, help="samples per problem (pass@1 is averaged over them)"),
    temperature: float = typer.Option(0.6),
    top_p: float = typer.Option(0.95),
    max_new_tokens: int = typer.Option(64),
    seed: int = typer.Option(0),
):
    """pass@1 over k samples, cons@k and pass@k on a task's held-out split."""
    import json

    from aha.models.loading import load_model_dir, stop_token_ids
    from aha.rollout import SamplingParams, make_engine
    from aha.stages.evaluate import evaluate
    from aha.tasks import get_task

    _quiet_transformers()
    try:
        policy, tokenizer = load_model_dir(model)
        the_task = get_task(task)
    except (FileNotFoundError, KeyError, ValueError) as err:
        _fail(err)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                            stop_token_ids=stop_token_ids(tokenizer), seed=seed)
    result = evaluate(make_engine("torch", policy, tokenizer), tokenizer, the_task,
                      the_task.problems("test", problems, seed), k, params)
    console.print_json(json.dumps(result.to_json()))


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


def main() -> None:  # pragma: no cover
    sys.exit(app())
