"""The `aha` command line."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from aha import runs as runs_module
from aha.config import ConfigError, ZeroConfig, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="aha — the DeepSeek-R1 recipe end to end, and the place to watch the aha moment happen.")
console = Console()


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


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/bold red] {err}", soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def zero(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …], e.g. grpo.beta=0.001"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this directory"),
):
    """R1-Zero: GRPO from a base model with rule rewards only (defaults: the laptop miniature)."""
    from aha.stages import grpo, zero as zero_stage

    _quiet_transformers()
    try:
        if resume is not None:
            if not (resume / "config.yaml").exists():
                raise ConfigError(f"{resume}: not a run directory (no config.yaml)")
            recipe, overrides = _split_args(args, None)
            cfg = load_config(ZeroConfig, recipe or resume / "config.yaml", overrides)
            trainer = grpo.resume_run(cfg, resume)
            console.print(f"resuming {resume} from step {trainer.state['step']}")
        else:
            recipe, overrides = _split_args(args, "zero-tiny")
            cfg = load_config(ZeroConfig, recipe, overrides)
            model_dir = zero_stage.ensure_base_model(cfg, console)
            trainer = grpo.start_run(cfg, model_dir)
            console.print(f"run directory: {trainer.run_dir}")
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        _fail(err)
    try:
        summary = zero_stage.train(trainer, console)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    _print_summary(summary, trainer.run_dir)


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
def pretrain(
    args: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] [key=value …] (pretrain.* and task.*)"),
    rebuild: bool = typer.Option(False, "--rebuild", help="build it even if a cached or shipped copy exists"),
):
    """Build (or find cached) the embedded tiny base model and print its directory."""
    from aha.stages.zero import ensure_base_model

    _quiet_transformers()
    try:
        recipe, overrides = _split_args(args, "zero-tiny")
        cfg = load_config(ZeroConfig, recipe, overrides)
    except (ConfigError, KeyError, ValueError) as err:
        _fail(err)
    console.print(str(ensure_base_model(cfg, console, rebuild=rebuild)))


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
