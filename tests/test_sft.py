"""`aha sft`: the loss mask against a naive per-row reference, data formats, the CLI end to end,
the output directory loading in transformers, resume."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from aha import runs
from aha.algo.objectives import OBJECTIVES
from aha.cli import app
from aha.config import DataConfig
from aha.models.loading import load_model_dir
from aha.tasks import get_task
from aha.tasks.division import check_trace
from aha.tasks.records import RecordError
from aha.template import build_prompt
from aha.train.layout import MIN_SHARED_PREFIX, RolloutBatch, micro_batches, sft_micro_batches
from aha.train.sft_data import load_dataset, tokenize
from aha.train.update import optimizer_step


# A system text in plain words: the embedded tokenizer spells it in many tokens (its R1 template is
# one added token), so rows share a long token prefix, as templated data does with a real tokenizer.
INSTRUCTION = "Solve the division below. Check the product before you answer, and step down when it is too high. "


def traces(path, n=120, seed=1, instruction=""):
    """Correct checking traces of the embedded task, as prompt/completion rows."""
    with path.open("w") as f:
        for p in get_task("division").problems("train", n, seed):
            a, b = p.meta["a"], p.meta["b"]
            completion = f" <think>{check_trace(a, b)}</think> <answer>{a // b}</answer>"
            f.write(json.dumps({"prompt": instruction + build_prompt(p.question), "completion": completion}) + "\n")
    return path


def naive_nll(model, examples):
    """Σ −log p(completion token) over rows, each row its own unpadded forward, / completion tokens."""
    total, count = 0.0, 0
    for e in examples:
        ids = torch.tensor([e.prompt_ids + e.completion_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
        start = len(e.prompt_ids)
        for j, token in enumerate(e.completion_ids):
            total = total - logp[start + j - 1, token]
        count += len(e.completion_ids)
    return total / count


@pytest.mark.parametrize("layout", ["grouped", "prefix"])
@pytest.mark.parametrize("budget", [64, 100_000], ids=["many-micro-batches", "one-micro-batch"])
def test_loss_and_gradients_equal_the_naive_per_row_reference(tmp_path, tiny_model_dir, budget, layout):
    """Both SFT layouts: identical prompts run once per group, or the template prefix every row
    shares runs once per micro-batch with the rest of each prompt attended to but never scored."""
    model, tokenizer = load_model_dir(tiny_model_dir)
    rows = traces(tmp_path / "t.jsonl", 12, instruction=INSTRUCTION)
    data = load_dataset(DataConfig(path=str(rows), held_out=0.0), tokenizer, 0)
    # Rows of different lengths, and two rows sharing one prompt (grouped in one prompt pass).
    examples = data.train[:5] + [type(data.train[0])(data.train[0].prompt_ids, data.train[1].completion_ids, "x")]
    batch = RolloutBatch([e.prompt_ids for e in examples], [e.completion_ids for e in examples], None, None)
    micro = sft_micro_batches(batch, tokenizer.pad_token_id, "cpu", budget, share_prefix=layout == "prefix")
    shared = os.path.commonprefix([e.prompt_ids for e in examples])
    if layout == "prefix":  # the template's tokens are the only prompt the forward runs
        assert len(shared) >= MIN_SHARED_PREFIX
        assert all(mb.score_mask is not None and mb.prompt_ids.tolist() == [shared] for mb in micro)
    else:
        assert all(mb.score_mask is None for mb in micro)
    nll = OBJECTIVES["nll"]
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that changes nothing: gradients stay readable
    model.zero_grad()
    stats = optimizer_step(model, sgd, micro, lambda m, mb, logp: nll(logp, mb.loss_mask, n_tokens=batch.n_tokens),
                           temperature=1.0, max_grad_norm=1e9, bf16=False, n_tokens=batch.n_tokens)
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    reference = naive_nll(model, examples)
    reference.backward()
    assert stats["loss"] == pytest.approx(float(reference), rel=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_skipping_the_entropy_changes_no_loss_or_gradient(tmp_path, tiny_model_dir):
    """SFT's `entropy=False`: the same loss and gradients, no entropy in the stats."""
    model, tokenizer = load_model_dir(tiny_model_dir)
    data = load_dataset(DataConfig(path=str(traces(tmp_path / "t.jsonl", 8)), held_out=0.0), tokenizer, 0)
    batch = RolloutBatch([e.prompt_ids for e in data.train[:4]], [e.completion_ids for e in data.train[:4]], None, None)
    micro = micro_batches(batch, 4, tokenizer.pad_token_id, "cpu", True, 64)
    nll = OBJECTIVES["nll"]
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    runs = []
    for entropy in (True, False):
        stats = optimizer_step(model, sgd, micro, lambda m, mb, logp: nll(logp, mb.mask, n_tokens=batch.n_tokens),
                               temperature=1.0, max_grad_norm=1e9, bf16=False, n_tokens=batch.n_tokens, entropy=entropy)
        runs.append((stats, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (with_ent, grads_with), (without, grads_without) = runs
    assert "entropy" in with_ent and "entropy" not in without
    assert without["loss"] == with_ent["loss"]
    for name, grad in grads_with.items():
        torch.testing.assert_close(grads_without[name], grad, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("share_prefix", [False, True], ids=["grouped", "prefix"])
def test_no_prompt_or_padding_token_contributes(tmp_path, tiny_model_dir, share_prefix):
    """Whatever sits at prompt or pad positions cannot change the loss: only completion tokens are
    scored, also where the prefix-shared layout carries the rest of each prompt as completion columns."""
    model, tokenizer = load_model_dir(tiny_model_dir)
    rows = traces(tmp_path / "t.jsonl", 8, instruction=INSTRUCTION)
    data = load_dataset(DataConfig(path=str(rows), held_out=0.0), tokenizer, 0)
    examples = data.train[:4]
    batch = RolloutBatch([e.prompt_ids for e in examples], [e.completion_ids for e in examples], None, None)
    for mb in sft_micro_batches(batch, tokenizer.pad_token_id, "cpu", 100_000, share_prefix=share_prefix):
        logp, _ = mb.logprobs(model, 1.0)
        assert (mb.score_mask is not None) == share_prefix  # the prefix layout engaged where asked
        assert mb.loss_mask.sum() == sum(len(examples[i].completion_ids) for i in mb.rows)
        scored_tokens = [mb.tokens[r][mb.loss_mask[r].bool()].tolist() for r in range(len(mb.rows))]
        assert scored_tokens == [examples[i].completion_ids for i in mb.rows]
        loss, _ = OBJECTIVES["nll"](logp, mb.loss_mask, n_tokens=batch.n_tokens)
        poisoned = logp.detach().clone()
        poisoned[mb.loss_mask == 0] = -1e6  # whatever sits at prompt or pad positions must not count
        assert OBJECTIVES["nll"](poisoned, mb.loss_mask, n_tokens=batch.n_tokens)[0] == pytest.approx(float(loss))


def test_chat_rows_train_on_assistant_text_exactly(tmp_path, tiny_model_dir):
    _, tokenizer = load_model_dir(tiny_model_dir)
    reasoning = "<think>7*86=602>594 too high, wait, 6*86=516<=594 ok</think> <answer>6</answer>"
    rows = [{"messages": [{"role": "user", "content": "594 // 86"}, {"role": "assistant", "content": reasoning}]},
            {"conversations": [{"from": "human", "value": "1 // 1"}, {"from": "gpt", "value": " <answer>1</answer>"}]}]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset(DataConfig(path=str(path), held_out=0.0), tokenizer, 0)
    texts = sorted(tokenizer.decode(e.completion_ids) for e in data.train)
    assert any(reasoning in t for t in texts)  # the <think> block survives: the template never renders it
    assert all(t.endswith(tokenizer.eos_token) for t in texts)


def test_bad_rows_are_named_and_truncated_rows_reported(tmp_path, tiny_model_dir):
    _, tokenizer = load_model_dir(tiny_model_dir)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": 3}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl, line 2: field 'completion' must be text"):
        load_dataset(DataConfig(path=str(bad)), tokenizer, 0)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"text": "a"}\n')
    with pytest.raises(RecordError, match="cannot tell the format"):
        load_dataset(DataConfig(path=str(unknown)), tokenizer, 0)
    assert "the prompt alone has" in tokenize("f, line 1", "1 // 2 " * 50, "x", tokenizer, max_length=20)


def test_aha_sft_lowers_held_out_loss_and_writes_a_loadable_model(tmp_path, tiny_model_dir):
    data = traces(tmp_path / "traces.jsonl", 160)
    args = ["sft", str(data), f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "sft.epochs=2",
            "sft.lr=3e-3", "sft.batch_rows=16", "data.held_out=0.1", "run.threads=1", "run.progress=false"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = tmp_path / "sft"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["held_out_loss_end"] < 0.8 * summary["held_out_loss_start"]
    assert summary["rows_train"] + summary["rows_held_out"] == 160 and summary["rows_dropped"] == 0
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert tokenizer.chat_template and model.config.vocab_size >= len(tokenizer)
    rows = runs.read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, summary["steps"] + 1))
    assert "held_out_loss" in rows[-1]


def test_sft_stopped_by_a_signal_resumes_to_the_same_weights(tmp_path, tiny_model_dir, monkeypatch):
    from aha.stages import sft as sft_stage

    data = traces(tmp_path / "traces.jsonl", 64)
    common = ["sft", str(data), f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "sft.batch_rows=16",
              "run.threads=1", "run.progress=false", "run.save_every=100", "sft.lr=1e-3", "sft.epochs=2"]
    assert CliRunner().invoke(app, [*common, "run.name=straight"]).exit_code == 0
    real = sft_stage._Trainer.train_step

    def preempted(self, step, epoch, examples):
        if step == 3:  # SIGTERM arrives mid-step: the step finishes, a checkpoint is written
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, step, epoch, examples)

    monkeypatch.setattr(sft_stage._Trainer, "train_step", preempted)
    stopped = CliRunner().invoke(app, [*common, "run.name=split"])
    assert stopped.exit_code == 143 and "aha sft --resume" in stopped.output
    assert runs.latest_checkpoint(tmp_path / "split").name == "checkpoint-3"
    monkeypatch.setattr(sft_stage._Trainer, "train_step", real)
    refused = CliRunner().invoke(app, ["sft", "--resume", str(tmp_path / "split"), "sft.lr=0.1"])
    assert refused.exit_code == 2 and "sft.lr" in refused.output and "--allow-changes" in refused.output
    resumed = CliRunner().invoke(app, ["sft", "--resume", str(tmp_path / "split")])
    assert resumed.exit_code == 0, resumed.output
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs.read_jsonl(tmp_path / "straight" / "metrics.jsonl") == [
        {**r, "seconds/update": r2["seconds/update"], "tokens_per_second": r2["tokens_per_second"]}
        for r, r2 in zip(runs.read_jsonl(tmp_path / "split" / "metrics.jsonl"),
                         runs.read_jsonl(tmp_path / "straight" / "metrics.jsonl"))]


def test_dataset_directory_needs_datasets_or_loads(tmp_path, tiny_model_dir):
    datasets = pytest.importorskip("datasets")
    rows = [{"problem": "1 // 1", "solution": " <answer>1</answer>"}] * 4
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    _, tokenizer = load_model_dir(tiny_model_dir)
    data = load_dataset(DataConfig(path=str(tmp_path / "ds"), held_out=0.25), tokenizer, 0)
    assert len(data.train) == 3 and len(data.held_out) == 1


def test_sft_weights_change(tmp_path, tiny_model_dir):
    data = traces(tmp_path / "traces.jsonl", 32)
    args = ["sft", str(data), f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "sft.epochs=1",
            "run.threads=1", "run.progress=false"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(tmp_path / "sft" / "model" / "model.safetensors"))
    assert [k for k in before if torch.equal(before[k], after[k])] == []


def test_a_shared_template_prefix_runs_once_and_trains_the_same_run(tmp_path, tiny_model_dir):
    """`aha sft` on templated rows: with `sft.share_prefix` fewer tokens go through the model than
    the rows hold, and losses, held-out losses and weights match the run without it up to rounding."""
    data = traces(tmp_path / "traces.jsonl", 48, instruction=INSTRUCTION)
    common = ["sft", str(data), f"model.path={tiny_model_dir}", f"run.out_dir={tmp_path}", "sft.batch_rows=16",
              "sft.lr=3e-3", "sft.epochs=1", "data.held_out=0.2", "run.threads=1", "run.progress=false"]
    for shared in (True, False):
        flag = str(shared).lower()
        result = CliRunner().invoke(app, [*common, f"run.name=shared-{flag}", f"sft.share_prefix={flag}"])
        assert result.exit_code == 0, result.output
    on, off = (runs.read_jsonl(tmp_path / name / "metrics.jsonl") for name in ("shared-true", "shared-false"))
    assert len(on) == len(off) >= 2
    for a, b in zip(on, off):
        assert a["row_tokens"] == b["row_tokens"] == b["forward_tokens"] > a["forward_tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    # the held-out loss is taken at the epoch's end, in the last row of each run
    assert on[-1]["held_out_loss"] == pytest.approx(off[-1]["held_out_loss"], rel=1e-4)
    w_on = load_file(str(tmp_path / "shared-true" / "model" / "model.safetensors"))
    w_off = load_file(str(tmp_path / "shared-false" / "model" / "model.safetensors"))
    for name in w_off:
        torch.testing.assert_close(w_on[name], w_off[name], rtol=1e-3, atol=1e-4, msg=name)
