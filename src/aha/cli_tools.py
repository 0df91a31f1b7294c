"""The `aha` commands over finished runs, models and experiments: plan, eval, serve, paper, report,
experiment. They register on `aha.cli.app` (imported at the end of `aha.cli`), so one `aha` command
holds them all while each module stays readable."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from aha import runs as runs_module
from aha.cli import USER_ERRORS, _fail, _quiet_transformers, _split_args, app, console, stops_as_exit_codes


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


@app.command("vllm-serve")
def vllm_serve(
    model: str = typer.Argument(..., help="Hugging Face model directory: the policy's starting weights"),
    host: str = typer.Option("0.0.0.0", "--host"),
    port: int = typer.Option(8000, "--port"),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="GPUs vLLM shards the model over"),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bfloat16, float16 or float32"),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", min=0.01, max=1.0),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1),
    max_batch: int = typer.Option(256, "--max-batch", min=1, help="sequences vLLM decodes at once (max_num_seqs)"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="no CUDA graphs (faster start-up)"),
):
    """vLLM on this machine's GPUs for a trainer elsewhere (rollout.engine=vllm_server): generation over
    HTTP, the trainer's weights pushed over NCCL after each update. Needs vllm and CUDA (NOT verified by aha's CI)."""
    from aha.rollout.vllm_server import serve

    _quiet_transformers()
    try:
        serve(model, host, port, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
              gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, max_batch=max_batch,
              enforce_eager=enforce_eager)
    except (*USER_ERRORS, RuntimeError) as err:
        _fail(err)


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
    with stops_as_exit_codes(view, again):
        results = paper_stage.run(settings, out, Events([view]))
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
