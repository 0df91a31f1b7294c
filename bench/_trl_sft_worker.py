"""TRL side of `vs_trl_sft.py`; runs in the bench venv (`torch` CPU + `trl`), aha's `src` on the path.

    python bench/_trl_sft_worker.py MODEL_DIR DATA_JSONL SETTINGS_JSON PRECISION CONFIG

CONFIG: "padded" (right-padded batches of `batch_rows` rows), "padding_free" (the same rows
flattened into one sequence; transformers builds the block-diagonal causal mask from the position
ids, so no row attends to another, SDPA included), "packed" (BFD packing into `pack_length`-token
sequences, padding-free; `per_device_train_batch_size` packs chosen to hold ~`batch_rows` rows).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

import _common as C  # noqa: E402
from aha.models.loading import load_tokenizer  # noqa: E402


def main() -> None:
    model_dir, data_path, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    precision, config = sys.argv[4], sys.argv[5]
    rows, steps = settings["batch_rows"], settings["steps"] + settings["warmup"]
    torch.set_num_threads(settings["threads"])
    # aha's loader: transformers 5's AutoTokenizer would re-tokenize this custom tokenizer with
    # Qwen2's pre-tokenizer (see aha.models.loading.load_tokenizer) — other ids than the model knows.
    tok = load_tokenizer(Path(model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    data = Dataset.from_list([json.loads(line) for line in Path(data_path).read_text().splitlines()])
    batch = rows
    if config == "packed":
        mean = sum(len(tok(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in data) / len(data)
        batch = max(1, round(rows * mean / settings["pack_length"]))
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="aha-bench-trl-sft-"), use_cpu=True, bf16=precision == "bf16-mixed",
        fp16=False, gradient_checkpointing=False, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        learning_rate=settings["lr"], adam_beta2=settings["beta2"], weight_decay=0.0,
        max_grad_norm=settings["max_grad_norm"], lr_scheduler_type="constant", warmup_steps=0, max_steps=steps,
        logging_steps=1, save_strategy="no", report_to="none", seed=settings["seed"], dataloader_num_workers=0,
        disable_tqdm=True, train_sampling_strategy="sequential", shuffle_dataset=False, completion_only_loss=True,
        packing=config == "packed", padding_free=config != "padded",
        max_length=None if config == "padding_free" else (settings["pack_length"] if config == "packed" else 4096),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    counts: list[tuple[int, int]] = []
    compute_loss = trainer.compute_loss

    def counted(model_, inputs, *a, **k):  # the real tokens and trained tokens of each micro-batch
        if "attention_mask" in inputs:
            n = int(inputs["attention_mask"].sum())
        else:
            n = int(inputs["position_ids"].numel())
        counts.append((n, int((inputs["labels"] != -100).sum())))
        return compute_loss(model_, inputs, *a, **k)

    trainer.compute_loss = counted
    records, losses = [], []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            records.append({"step_s": now - self.t, "tokens": sum(c[0] for c in counts),
                            "completion_tokens": sum(c[1] for c in counts)})
            counts.clear()
            self.t = now

        def on_log(self, args_, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    trainer.add_callback(Clock())
    trainer.train()
    for rec, loss in zip(records, losses):
        rec["loss"] = loss
    C.emit({"side": "trl", "config": config, "precision": precision, "per_device_batch": batch, "steps": records,
            "peak_rss_mb": C.peak_rss_mb()})


if __name__ == "__main__":
    main()
