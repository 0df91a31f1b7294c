"""`aha zero`: the R1-Zero miniature end to end — base model (built once, then cached), held-out
evaluation of the base, GRPO with a live progress bar, final evaluation, summary and report."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aha import runs
from aha.config import ZeroConfig
from aha.models.loading import embedded_base_dir, is_complete_model_dir, shipped_base_dir
from aha.stages import grpo
from aha.observe.report import write_report
from aha.stages.evaluate import evaluate
from aha.tasks import get_task


def ensure_base_model(cfg: ZeroConfig, console: Console, rebuild: bool = False) -> Path:
    """The HF directory of the model RL starts from. For the embedded base: the user's cache, else
    the copy shipped in the package (default settings only), else build it now (and cache it)."""
    if cfg.model.path != "embedded":
        return Path(cfg.model.path)
    target = embedded_base_dir(cfg.pretrain, cfg.task)
    if not rebuild and is_complete_model_dir(target):
        console.print(f"[dim]base model: cached at {target}[/dim]")
        return target
    shipped = shipped_base_dir(cfg.pretrain, cfg.task)
    if not rebuild and shipped is not None:
        console.print(f"[dim]base model: shipped with aha ({shipped.name}); `aha pretrain --rebuild` rebuilds it[/dim]")
        return shipped
    from aha.stages.pretrain import pretrain

    console.print(f"building the embedded base model (once; cached at {target})")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    with _progress(console, enabled=cfg.run.progress) as bar:
        job = bar.add_task("pretrain", total=None, info="")
        stats = pretrain(cfg.pretrain, get_task(cfg.task.name, **cfg.task.options), tmp,
                         on_step=lambda s, total, loss: bar.update(job, completed=s, total=total,
                                                                   info=f"loss {loss:.3f}"))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    console.print(f"base model built: {stats['parameters']:,} parameters, {stats['tokens_trained']:,} tokens, "
                  f"{stats['wall_seconds']:.0f} s")
    return target


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled, transient=False,
    )


def train(t: grpo.Trainer, console: Console) -> dict:
    """Run (or continue) the GRPO loop to `grpo.steps`; Ctrl-C saves a checkpoint first."""
    cfg, e = t.cfg, t.cfg.eval
    session_start = time.time()
    seconds_before = t.state["seconds"]
    if t.state["base_accuracy"] is None:
        console.print(f"evaluating the base model: {e.problems} held-out problems × {e.k} samples "
                      f"(T={e.temperature}, top-p {e.top_p})")
        base = _held_out_eval(t, e.problems, e.k, seed=1)
        t.state["base_accuracy"] = base.pass_at_1
        t.state["base_eval"] = base.to_json()
        console.print(f"base pass@1 {base.pass_at_1:.3f}  (format {base.format_rate:.2f}, "
                      f"{base.response_length_mean:.1f} tokens)")
    try:
        with _progress(console, cfg.run.progress) as bar:
            job = bar.add_task("GRPO", total=cfg.grpo.steps, completed=t.state["step"], info="")
            for step in range(t.state["step"] + 1, cfg.grpo.steps + 1):
                row, samples = grpo.run_step(t, step)
                if e.every and step % e.every == 0 and step < cfg.grpo.steps:
                    row["eval/accuracy"] = _held_out_eval(t, e.during_problems, 1, seed=2).pass_at_1
                verdict = t.monitor.check(row)
                row.update(verdict.flags)
                for warning in verdict.warnings:
                    bar.console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
                t.state["step"] = step
                t.state["seconds"] = seconds_before + time.time() - session_start
                runs.append_jsonl(t.run_dir / "metrics.jsonl", [row])
                runs.append_jsonl(t.run_dir / "samples.jsonl", samples)
                if step % cfg.run.save_every == 0:
                    grpo.save(t)
                bar.update(job, completed=step, info=_progress_info(row))
    except KeyboardInterrupt:
        grpo.save(t)
        console.print(f"\ninterrupted: checkpoint saved at step {t.state['step']}; "
                      f"continue with `aha zero --resume {t.run_dir}`")
        raise
    return finish(t, console, seconds_before, session_start)


def _progress_info(row: dict) -> str:
    seconds = row["seconds/rollout"] + row["seconds/reward"] + row["seconds/update"]
    return (f"reward {row['reward']:.2f}  acc {row['accuracy']:.2f}  len {row['response_length_mean']:.1f}  "
            f"reflect {row['reflection_rate']:.2f}  {row['tokens_generated'] / max(seconds, 1e-9):,.0f} tok/s")


def _held_out_eval(t: grpo.Trainer, problems: int, k: int, seed: int):
    """Held-out pass@1 with the paper's sampling; its cost goes to the ledger's "eval" phase."""
    result = evaluate(t.engine, t.tokenizer, t.task, grpo.held_out(t, problems), k, grpo.eval_params(t, seed))
    t.ledger.add("eval", seconds=result.seconds, tokens_generated=result.tokens_generated)
    return result


def finish(t: grpo.Trainer, console: Console, seconds_before: float, session_start: float) -> dict:
    final = _held_out_eval(t, t.cfg.eval.problems, t.cfg.eval.k, seed=1)
    latest = runs.latest_checkpoint(t.run_dir)
    if latest is None or latest.name != f"checkpoint-{t.state['step']}":
        grpo.save(t)
    t.state["seconds"] = seconds_before + time.time() - session_start
    summary = {
        "base_accuracy": t.state["base_accuracy"],
        "final_accuracy": final.pass_at_1,
        "base_eval": t.state["base_eval"],
        "final_eval": final.to_json(),
        "steps": t.state["step"],
        "wall_seconds": t.state["seconds"],
        # Training tokens only (evaluation and the base's pretraining are in the cost ledger).
        "tokens_generated": t.ledger.phases["rollout"].tokens_generated if "rollout" in t.ledger.phases else 0,
        "tokens_trained": t.ledger.phases["update"].tokens_trained if "update" in t.ledger.phases else 0,
        "parameters": grpo.n_parameters(t),
        "cost": t.ledger.to_dict(),
    }
    runs.write_json(t.run_dir / "summary.json", summary)
    report = write_report([t.run_dir])
    console.print(f"report: {report}")
    return summary
