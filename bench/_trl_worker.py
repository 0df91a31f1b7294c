"""TRL side of `vs_trl.py`; runs in the bench venv (`torch` CPU + `trl`), aha's `src` on the path.

    python bench/_trl_worker.py MODEL_DIR SETTINGS_JSON STEPS WARMUP [TARGET EVAL_EVERY]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

import _common as C  # noqa: E402
from aha.models.loading import load_tokenizer  # noqa: E402


def main() -> None:
    model_dir, settings, steps, warmup = sys.argv[1], C.Settings(**json.loads(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
    target = float(sys.argv[5]) if len(sys.argv) > 5 else None
    eval_every = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    torch.set_num_threads(settings.threads)
    # aha's loader: transformers 5's AutoTokenizer would re-tokenize this custom tokenizer with
    # Qwen2's pre-tokenizer (see aha.models.loading.load_tokenizer) — other ids than the model knows.
    tok = load_tokenizer(Path(model_dir))
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    problems = C.train_problems(settings, steps + warmup)
    data = Dataset.from_dict({"prompt": [C.prompt_text(p) for p in problems], "idx": list(range(len(problems)))})

    ends = {tok.eos_token_id, tok.pad_token_id}

    def reward(completions, idx, completion_ids, **_):
        # TRL decodes with skip_special_tokens=True, which drops the R1 tags (special tokens here) and
        # would score every completion 0; decode the ids as aha's engine does (tags kept, EOS not).
        texts = [tok.decode(_strip_end(ids, ends), skip_special_tokens=False) for ids in completion_ids]
        # TRL truncation flags are not passed to reward functions; forced-length runs score as untruncated.
        return C.rewards(texts, [problems[i] for i in idx], [False] * len(texts), settings.new_tokens)

    stop = tok.encode("</answer>", add_special_tokens=False)
    gen_kwargs = ({"min_new_tokens": settings.new_tokens} if settings.force_length
                  else {"eos_token_id": [tok.eos_token_id, *stop]})
    trl_tok = tok
    if not settings.force_length and len(stop) == 1:
        # TRL masks a completion after the first `processing_class.eos_token_id` only; a row stopped
        # by another id (here `</answer>`, where aha's engine stops) would train on the pads after
        # it — the policy then learns to pad and collapses. So `</answer>` is TRL's EOS.
        # (A second tokenizer object: the held-out evaluation keeps the real EOS.)
        trl_tok = load_tokenizer(Path(model_dir))
        trl_tok.padding_side = "left"
        trl_tok.eos_token = "</answer>"
    args = GRPOConfig(
        output_dir="/tmp/aha-bench-trl", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=settings.prompts * settings.group, num_generations=settings.group,
        gradient_accumulation_steps=1, num_iterations=1, max_completion_length=settings.new_tokens,
        learning_rate=settings.lr, beta=settings.beta, temperature=settings.temperature, top_k=0, top_p=1.0,
        loss_type="dapo", scale_rewards="group", epsilon=0.2, max_grad_norm=1.0, weight_decay=0.0,
        lr_scheduler_type="constant", warmup_steps=0, max_steps=steps + warmup, logging_steps=1,
        save_strategy="no", report_to="none", seed=settings.seed, shuffle_dataset=False,
        dataloader_num_workers=0, generation_kwargs=gen_kwargs, disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=trl_tok)
    phases = _instrument(trainer)
    records, state = [], {"train_s": 0.0, "reached": None}

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            phases.clear()
            self.t0 = time.perf_counter()

        def on_step_end(self, args_, st, control, **k):
            dt = time.perf_counter() - self.t0
            state["train_s"] += dt
            rec = {"step_s": dt, **{f"{k_}_s": phases.get(k_, 0.0) for k_ in ("generation", "ref", "forward")}}
            prepare = phases.get("prepare", 0.0)
            rec["other_s"] = prepare - rec["generation_s"] - rec["ref_s"]  # rewards, tokenising, advantages
            rec["backward_s"] = dt - prepare - rec["forward_s"]  # backward + optimizer step
            records.append(rec)
            if target is not None and eval_every and st.global_step % eval_every == 0:
                acc = C.held_out_accuracy(trainer.model, tok)
                rec["accuracy"] = acc
                if acc >= target and state["reached"] is None:
                    state["reached"] = state["train_s"]
                    control.should_training_stop = True

    trainer.add_callback(Clock())
    trainer.train()
    C.emit({"side": "trl", "steps": records[warmup:], "peak_rss_mb": C.peak_rss_mb(),
            "seconds_to_target": state["reached"], "train_s": state["train_s"]})


def _strip_end(ids, ends: set) -> list[int]:
    ids = list(ids)
    while ids and ids[-1] in ends:
        ids.pop()
    return ids


def _instrument(trainer) -> dict:
    """Wrap TRL's phases with timers: generation, no-grad log-prob forwards (reference/old) and the
    loss forward (log-prob forward with grad + the loss). Whatever else the step spends is backward."""
    phases: dict[str, float] = {}

    def timed(fn, name_of):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                name = name_of()
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    trainer._generate_and_score_completions = timed(trainer._generate_and_score_completions, lambda: "prepare")
    trainer._generate = timed(trainer._generate, lambda: "generation")
    trainer._get_per_token_logps_and_entropies = timed(
        trainer._get_per_token_logps_and_entropies, lambda: "forward" if torch.is_grad_enabled() else "ref"
    )
    return phases


if __name__ == "__main__":
    main()
