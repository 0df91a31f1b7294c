"""The terminal side of stage events (used by the CLI only): rich progress bars per phase,
warnings and notes on the console. Stages never import this."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aha.events import Event


class ConsoleView:
    """An event listener: one progress bar per phase, warnings in yellow, notes dimmed."""

    def __init__(self, console: Console, progress: bool = True):
        self.console = console
        self.enabled = progress
        self.bar: Progress | None = None
        self.job = None

    def __call__(self, event: Event) -> None:
        kind, data = event.kind, event.data
        if kind == "phase":
            self._close()
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, disable=not self.enabled,
            )
            self.bar.start()
            self.job = self.bar.add_task(data["name"], total=data["total"], completed=data["completed"], info="")
        elif kind == "advance" and self.bar is not None:
            self.bar.update(self.job, completed=data["completed"], total=data["total"] or None, info=data["info"])
        elif kind == "warning":
            self.console.print(f"[yellow]warning:[/yellow] {data['message']}", soft_wrap=True)
        elif kind == "info":
            self.console.print(f"[dim]{data['message']}[/dim]", soft_wrap=True)
        elif kind == "done":
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def close(self) -> None:
        self._close()


def zero_summary(summary: dict, run_dir: Path):
    """The table `aha zero` ends with."""
    from rich.table import Table

    from aha import runs as runs_module

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
    return table


def eval_table(report: dict):
    """The report as a rich table for the terminal."""
    from rich.table import Table

    k = report["k"]
    out = Table(title=f"{report['model']} on {report['task']}: {report['problems']} problems × {k} samples")
    out.add_column("metric")
    out.add_column("value", justify="right")
    low, high = report["pass@1_ci95"]
    out.add_row("pass@1 (95% bootstrap CI)", f"[bold]{report['pass@1']:.3f}[/bold] [{low:.3f}, {high:.3f}]")
    out.add_row(f"cons@{k}", f"{report[f'cons@{k}']:.3f}")
    for j, value in report["pass@k"].items():
        if j != "1":
            out.add_row(f"pass@{j} (unbiased)", f"{value:.3f}")
    out.add_row("format rate", f"{report['format_rate']:.3f}")
    out.add_row("response length (tokens)", f"{report['response_length_mean']:.1f}")
    out.add_row("tokens / seconds", f"{report['tokens_generated']:,} / {report['seconds']:.1f}")
    return out


def sft_summary(summary: dict, run_dir: Path):
    """The table `aha sft` ends with."""
    from rich.table import Table

    table = Table(title=f"SFT run {run_dir.name}", show_header=False)
    table.add_row("held-out loss (start → end)", f"{summary['held_out_loss_start']:.4f} → "
                                                  f"[bold]{summary['held_out_loss_end']:.4f}[/bold]")
    table.add_row("rows trained / held out / dropped", f"{summary['rows_train']} / {summary['rows_held_out']} / "
                                                        f"{summary['rows_dropped']}")
    table.add_row("optimizer steps / tokens trained", f"{summary['steps']} / {summary['tokens_trained']:,}")
    table.add_row("model", str(summary["model_dir"]))
    return table


def r1_table(comparison: dict, run_dir: Path):
    """The table `aha r1` ends with: each stage's model on the same held-out problems."""
    from rich.table import Table

    from aha.observe.cost import format_flops

    table = Table(title=f"R1 pipeline {run_dir.name}: every stage's model on the same held-out problems",
                  caption="pass@1 ± half its bootstrap 95% interval; RM: reward-model score on general prompts")
    for column in ("stage", "pass@1", "length", "reflect", "mixing", "readable", "RM", "FLOPs", "wall"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in comparison.items():
        low, high = row["pass@1_ci95"]
        cost = row.get("cost") or {}
        rm = row.get("rm_score")
        table.add_row(stage, f"{row['pass@1']:.3f}±{(high - low) / 2:.2f}", f"{row['response_length_mean']:.1f}",
                      f"{row['reflection_rate']:.0%}", f"{row['language_mixing']:.1%}", f"{row['readable_rate']:.0%}",
                      "—" if rm is None else f"{rm:.3f}",
                      format_flops(cost["flops"]).replace("FLOP", "") if cost.get("flops") else "—",
                      f"{cost['seconds']:.0f}s" if cost.get("seconds") else "—")
    return table


def distill_vs_rl_table(summary: dict):
    """The table `aha experiment distill-vs-rl` ends with: each seed at its equal-FLOPs budget."""
    from rich.table import Table

    from aha.observe.cost import format_flops

    table = Table(title="distilled vs RL student at equal FLOPs (held-out pass@1)")
    for name in ("seed", "budget", "teacher", "RL", "distilled", "distilled − RL", "reflecting RL/dist."):
        table.add_column(name, justify="right")
    for r in summary["rows"]:
        reflection = "/".join(f"{100 * v:.0f}%" if v is not None else "—" for v in r["reflection"].values())
        table.add_row(str(r["seed"]), format_flops(r["budget_flops"]), f"{r['teacher']:.3f}", f"{r['rl']:.3f}",
                      f"{r['distill']:.3f}", f"{100 * r['difference']:+.1f} pts", reflection)
    m, (low, high) = summary["mean"], summary["difference_ci95"]
    table.add_row("mean", "", f"{m['teacher']:.3f}", f"{m['rl']:.3f}", f"{m['distill']:.3f}",
                  f"[bold]{100 * m['difference']:+.1f}[/bold] [{100 * low:+.1f}, {100 * high:+.1f}]", "")
    return table


def rm_summary(summary: dict, run_dir: Path):
    """The table `aha rm` ends with."""
    from rich.table import Table

    table = Table(title=f"reward model {run_dir.name}", show_header=False)
    table.add_row("held-out pairwise accuracy (start → end)", f"{summary['held_out_accuracy_start']:.3f} → "
                                                               f"[bold]{summary['held_out_accuracy_end']:.3f}[/bold]")
    start, end = summary.get("rubric_agreement_start"), summary.get("rubric_agreement_end")
    if start and end:
        table.add_row("rank agreement with the rubric, Spearman (start → end)",
                      f"{start['spearman']:.3f} → {end['spearman']:.3f}")
    table.add_row("pairs trained / held out / dropped", f"{summary['pairs_train']} / {summary['pairs_held_out']} / "
                                                         f"{summary['pairs_dropped']}")
    table.add_row("optimizer steps / wall seconds", f"{summary['steps']} / {summary['wall_seconds']:.0f}")
    table.add_row("model", str(summary["model_dir"]))


def paper_table(results: dict):
    """The table `aha paper` ends with: each finding, the paper's figure, the miniature's headline
    effect with its interval, and the verdict."""
    from rich.table import Table

    from aha.experiments.verdict import interval_text

    colours = {"reproduced": "green", "partly reproduced": "yellow", "not reproduced": "red", "opposite": "red"}
    seeds = len(results["seeds"])
    table = Table(title=f"R1's findings in miniature: {seeds} seed{'s' * (seeds > 1)}, schedule {results['schedule']}")
    for column in ("finding", "paper", "miniature (mean [95% CI])", "verdict"):
        table.add_column(column, overflow="fold")
    for fid, f in results["findings"].items():
        headline = next((e for e in f.get("effects", []) if e.get("required", True)), None)
        measured = f"{headline['name']}: {interval_text(headline)}" if headline else f.get("shows", "")
        colour = colours.get(f["verdict"], "dim")
        table.add_row(f"{fid} {f['title']}", f["paper"], measured, f"[{colour}]{f['verdict']}[/{colour}]")
    return table
