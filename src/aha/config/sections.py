"""The config sections every stage shares (run, model, task, prompt, rollout, eval) and each stage's
own; every section checks itself in `validate(key)`, and each stage config checks the cross-field
rules. Numbers that change the algorithm are global (prompts per step, samples per prompt, batch
rows per optimizer step); micro-batch sizes only change speed and memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aha.config import checks
from aha.config.base import PRESETS, ConfigError


@dataclass(frozen=True)
class RunConfig:
    name: str = "zero-tiny"
    out_dir: str = "runs"
    seed: int = 0
    threads: int = 0  # 0 = every core this process may use
    save_every: int = 50  # steps between checkpoints (one is always written at the end)
    samples_per_step: int = 8  # completions logged to samples.jsonl each step
    progress: bool = True
    log_to: list = field(default_factory=list)  # extra metric loggers: tensorboard, wandb
    # Consecutive steps whose loss or gradient is not finite (each skipped, weights untouched)
    # before the run stops with an error, its last checkpoint intact.
    max_bad_steps: int = 3

    def validate(self, key: str) -> None:
        checks.run_name(f"{key}.name", self.name)
        checks.writable_dir(f"{key}.out_dir", self.out_dir)
        checks.at_least(f"{key}.seed", self.seed, 0)
        checks.at_least(f"{key}.threads", self.threads, 0, "0 = all usable cores")
        checks.at_least(f"{key}.save_every", self.save_every, 1)
        checks.at_least(f"{key}.samples_per_step", self.samples_per_step, 0)
        checks.at_least(f"{key}.max_bad_steps", self.max_bad_steps, 1)
        from aha.observe.loggers import LOGGERS

        for name in self.log_to:
            checks.registered(f"{key}.log_to", name, LOGGERS)


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters (peft) on the named linear layers; r = 0 trains every weight (the default)."""

    r: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                          "gate_proj", "up_proj", "down_proj"])

    def validate(self, key: str) -> None:
        checks.at_least(f"{key}.r", self.r, 0, "0 = no adapters, full fine-tuning")
        checks.positive(f"{key}.alpha", self.alpha)
        checks.within(f"{key}.dropout", self.dropout, 0.0, 1.0)
        if self.r and not self.target_modules:
            raise ConfigError(f"{key}.target_modules: name at least one linear layer (e.g. q_proj)")


@dataclass(frozen=True)
class ModelConfig:
    SHORTHAND = "path"  # `model=DIR` means `model.path=DIR`
    path: str = "embedded"  # "embedded" = the built-in tiny base model; else an HF causal-LM directory
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # how the weights are stored
    # How the matmuls run. "bf16-mixed": fp32 master weights, bf16 rollout, reference and update
    # (autocast) — 2.5× the fp32 matmul rate on CPUs with AVX-512-bf16/AMX, the usual choice on GPUs.
    # "fp32" stays the default: reproducible run to run on one machine, bf16-less CPUs included.
    precision: Literal["fp32", "bf16-mixed"] = "fp32"
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    # Recompute each decoder layer in the backward instead of keeping its activations (memory only;
    # the update's unpadded forward, i.e. Qwen2/Llama/Qwen3/Mistral-style decoders).
    gradient_checkpointing: bool = False

    def validate(self, key: str, chat_template: bool = False) -> None:
        if self.path != "embedded":  # the embedded tokenizer ships a chat template
            checks.model_dir(f"{key}.path", self.path, chat_template)
        self.lora.validate(f"{key}.lora")

    @property
    def bf16(self) -> bool:
        """Decided here once: every matmul-running part takes this flag."""
        return self.precision == "bf16-mixed"


@dataclass(frozen=True)
class PretrainConfig:
    """How the embedded base model is built (ignored when model.path is an HF directory)."""

    documents: int = 160_000  # corpus size: problems with traces (plus fact lines, if facts_share > 0)
    facts_share: float = 0.0  # share of documents that are plain fact lines (products, comparisons)
    # Share of documents that are general requests answered in a web-like quality mix (the
    # `general_bilingual` task's corpus): the general text a real base brings from its pretraining.
    # R1's later stages (non-reasoning SFT rows, a reward model on the base's body, all-scenario RL)
    # assume a base that can read such requests; without them they are out-of-vocabulary bytes.
    general_share: float = 0.0
    epochs: int = 1
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 50
    vocab_size: int = 640
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    mlp: int = 384
    seed: int = 0

    def validate(self, key: str) -> None:
        for name in ("documents", "epochs", "batch_size", "vocab_size", "hidden", "layers", "heads", "kv_heads", "mlp"):
            checks.at_least(f"{key}.{name}", getattr(self, name), 1)
        checks.within(f"{key}.facts_share", self.facts_share, 0.0, 1.0)
        checks.within(f"{key}.general_share", self.general_share, 0.0, 1.0)
        if self.facts_share + self.general_share > 1.0:
            raise ConfigError(f"{key}: facts_share ({self.facts_share}) + general_share ({self.general_share}) "
                              "must be at most 1 (they are shares of the same documents)")
        checks.positive(f"{key}.lr", self.lr)
        checks.at_least(f"{key}.warmup_steps", self.warmup_steps, 0)
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ConfigError(f"{key}: hidden ({self.hidden}) must be a multiple of heads ({self.heads}) and heads "
                              f"a multiple of kv_heads ({self.kv_heads})")


# The bilingual miniature's base (zero-bilingual, r1-tiny, `aha r1`, `aha rm`): 640k division traces, so
# that it learns its Chinese checks are more reliable than its English ones (bench/step_reliability.py:
# +1.5 points at 80k, +13.7 at 640k), + 160k general requests, so R1's general stages can read theirs.
BILINGUAL_PRETRAIN = PretrainConfig(documents=800_000, general_share=0.2)


@dataclass(frozen=True)
class TaskConfig:
    name: str = "division"
    options: dict = field(default_factory=dict)  # passed to the task's constructor

    def validate(self, key: str) -> None:
        checks.task_options(key, self.name, self.options)


@dataclass(frozen=True)
class PromptConfig:
    # "r1-zero" (Table 1 of the paper, verbatim), "plain" (the question alone), "chat" (the
    # tokenizer's chat template, one user turn), or any text holding {prompt}.
    template: str = "r1-zero"

    def validate(self, key: str) -> None:
        from aha.template import check_template

        try:
            check_template(self.template)
        except ValueError as err:
            raise ConfigError(f"{key}.template: {err}") from None


@dataclass(frozen=True)
class RolloutConfig:
    engine: str = "torch"  # registered engine (aha.rollout.ENGINES)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    max_batch: int = 256  # samples decoded at once (speed/memory only)
    # Passed to the engine's constructor: for engine=openai base_url (required), model_name,
    # concurrency, timeout, max_retries (aha.rollout.openai_engine); for engine=vllm / vllm_server see
    # aha.rollout.VLLM_OPTIONS / VLLM_SERVER_OPTIONS.
    options: dict = field(default_factory=dict)
    # Sampling noise: "batch" (one stream per call) or "row" (keyed by each sample's row in the
    # step, so 1 and N processes draw the same samples; always used with several processes).
    noise: Literal["batch", "row"] = "batch"

    def validate(self, key: str) -> None:
        from aha.rollout import ENGINES


        checks.registered(f"{key}.engine", self.engine, ENGINES)
        if self.engine == "openai" and not self.options.get("base_url"):
            raise ConfigError(f"{key}.options.base_url: required with {key}.engine=openai (e.g. http://127.0.0.1:8000/v1)")
        if self.engine == "vllm":
            self._validate_vllm(key)
        if self.engine == "vllm_server":
            self._validate_vllm_server(key)
        checks.at_least(f"{key}.temperature", self.temperature, 0.0)
        checks.within(f"{key}.top_p", self.top_p, 0.0, 1.0, low_open=True)
        checks.at_least(f"{key}.max_new_tokens", self.max_new_tokens, 1)
        checks.at_least(f"{key}.max_batch", self.max_batch, 1)

    def _validate_vllm(self, key: str) -> None:
        """Options by name and range, then whether this machine can run vLLM at all — before any
        model loads (a CPU machine without vllm learns it in a second, not after the base loads)."""
        from aha.rollout import VLLM_OPTIONS, vllm_unavailable

        o = self.options
        unknown = sorted(set(o) - set(VLLM_OPTIONS))
        if unknown:
            raise ConfigError(f"{key}.options: {', '.join(unknown)} not taken by {key}.engine=vllm "
                              f"(valid: {', '.join(VLLM_OPTIONS)})")
        if "gpu_memory_utilization" in o:
            checks.within(f"{key}.options.gpu_memory_utilization", o["gpu_memory_utilization"], 0.0, 1.0, low_open=True)
        if o.get("max_model_len") is not None:
            checks.at_least(f"{key}.options.max_model_len", o["max_model_len"], 1)
        if o.get("sleep_level", 1) not in (1, 2):
            raise ConfigError(f"{key}.options.sleep_level: expected 1 (weights to CPU) or 2 (weights dropped), "
                              f"got {o['sleep_level']!r}")
        if o.get("dtype") not in (None, "bfloat16", "float16", "float32"):
            raise ConfigError(f"{key}.options.dtype: expected bfloat16, float16 or float32, got {o['dtype']!r}")
        reason = vllm_unavailable()
        if reason:
            raise ConfigError(f"{key}.engine=vllm needs `pip install 'aha-rl[vllm]'` and a CUDA GPU ({reason})")


    def _validate_vllm_server(self, key: str) -> None:
        """Options by name, type and range; the NCCL transport needs vllm and CUDA in the trainer too.
        Whether the server answers is checked when the engine starts (a bounded wait for /health)."""
        from aha.rollout import VLLM_SERVER_OPTIONS, vllm_unavailable

        o = self.options
        unknown = sorted(set(o) - set(VLLM_SERVER_OPTIONS))
        if unknown:
            raise ConfigError(f"{key}.options: {', '.join(unknown)} not taken by {key}.engine=vllm_server "
                              f"(valid: {', '.join(VLLM_SERVER_OPTIONS)})")
        url = o.get("base_url")
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ConfigError(f"{key}.options.base_url: expected an http(s):// URL of `aha vllm-serve`, got {url!r}")
        for port in ("port", "group_port"):
            if port in o and not (isinstance(o[port], int) and 1 <= o[port] <= 65535):
                raise ConfigError(f"{key}.options.{port}: expected a port number in [1, 65535], got {o[port]!r}")
        for seconds in ("timeout", "startup_timeout", "sync_timeout"):
            if seconds in o:
                checks.positive(f"{key}.options.{seconds}", o[seconds])
        transport = o.get("weight_transport", "nccl")
        if transport not in ("nccl", "http"):
            raise ConfigError(f"{key}.options.weight_transport: expected nccl (trainer on its own GPU) or http "
                              f"(same GPU as the server, or no CUDA), got {transport!r}")
        reason = vllm_unavailable() if transport == "nccl" else None
        if reason:
            raise ConfigError(f"{key}.options.weight_transport=nccl needs vllm and a CUDA GPU in the trainer's "
                              f"process too ({reason}); install `aha-rl[vllm]`, or set "
                              f"{key}.options.weight_transport=http")


@dataclass(frozen=True)
class EvalConfig:
    problems: int = 200  # held-out problems
    k: int = 4  # samples per problem: pass@1 is averaged over them
    temperature: float = 0.6
    top_p: float = 0.95
    every: int = 50  # steps between held-out evaluations during training (0 = start and end only)
    during_problems: int = 100  # smaller held-out set for the periodic evaluations

    def validate(self, key: str) -> None:
        checks.at_least(f"{key}.problems", self.problems, 1)
        checks.at_least(f"{key}.k", self.k, 1)
        checks.at_least(f"{key}.temperature", self.temperature, 0.0)
        checks.within(f"{key}.top_p", self.top_p, 0.0, 1.0, low_open=True)
        checks.at_least(f"{key}.every", self.every, 0, "0 = at the start and end only")
        checks.at_least(f"{key}.during_problems", self.during_problems, 1)


@dataclass(frozen=True)
class GRPOConfig:
    preset: str = ""  # e.g. "r1": the paper's settings, applied under the recipe's own values
    steps: int = 200
    prompts_per_step: int = 16  # global: changes the algorithm
    group_size: int = 8  # G samples per prompt; global
    # Rows per forward/backward, per device: speed/memory only (accumulation is derived). The token
    # cap below is what bounds memory; one micro-batch for the demo's 16 × 8 rows halves its kernels.
    micro_batch_size: int = 128
    micro_batch_tokens: int = 16384  # and at most this many padded tokens per micro-batch (speed/memory only)
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    beta: float = 0.0  # KL coefficient; 0 loads no reference model
    eps_low: float = 0.2
    eps_high: float = 0.2
    advantage: str = "grpo"  # registered estimator: grpo | dr_grpo | rloo
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum-norm
    mu: int = 1  # inner updates on one batch of rollouts
    ref_reset_every: int = 0  # replace the reference by the policy every N steps (0 = never)
    # DAPO's dynamic sampling: drop groups whose rewards are all equal (no signal) and refill the
    # step with fresh prompts, for at most `sampling_rounds` generations per step.
    dynamic_sampling: bool = False
    sampling_rounds: int = 3

    def validate(self, key: str) -> None:
        from aha.algo.advantages import ADVANTAGES
        from aha.algo.losses import LOSS_AGGREGATIONS

        checks.registered(f"{key}.advantage", self.advantage, ADVANTAGES)
        checks.registered(f"{key}.loss_agg", self.loss_agg, LOSS_AGGREGATIONS)
        for name in ("steps", "prompts_per_step", "micro_batch_size", "micro_batch_tokens", "mu", "sampling_rounds"):
            checks.at_least(f"{key}.{name}", getattr(self, name), 1)
        # Group-relative advantages of a group of one are zero: every step would train on nothing.
        checks.at_least(f"{key}.group_size", self.group_size, 2, "group-relative advantages need ≥ 2 samples")
        checks.positive(f"{key}.lr", self.lr)
        checks.positive(f"{key}.max_grad_norm", self.max_grad_norm)
        for name in ("weight_decay", "warmup_steps", "beta", "eps_high", "ref_reset_every"):
            checks.at_least(f"{key}.{name}", getattr(self, name), 0)
        checks.within(f"{key}.eps_low", self.eps_low, 0.0, 1.0)


# The judge's instruction; {question} and {summary} are filled in (see aha.rewards.judge).
DEFAULT_JUDGE_PROMPT = (
    "You grade how helpful an assistant's answer to a user's request is. A helpful answer gives the right "
    "content, in the language of the request, directly, without padding.\n\nRequest: {question}\n"
    "Answer: {summary}\n\nRate the answer from 1 (useless) to 10 (perfect). Reply with the number only."
)


@dataclass(frozen=True)
class RewardModelSection:
    """Where the `reward_model` reward's scores come from (R1's all-scenario RL): a one-label
    `…ForSequenceClassification` directory (`aha rm`'s RUN/model) or an LLM judge behind an
    OpenAI-compatible endpoint. Either scores the summary only."""

    path: str = ""  # reward model directory
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = 64  # texts scored per forward (speed/memory only)
    judge_url: str = ""  # e.g. http://127.0.0.1:8000/v1
    judge_model: str = ""  # default: the endpoint's first listed model
    judge_prompt: str = DEFAULT_JUDGE_PROMPT  # must hold {summary}; {question} is optional
    judge_api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (never the key itself)
    judge_concurrency: int = 8
    judge_timeout: float = 60.0
    judge_max_retries: int = 5
    judge_max_tokens: int = 16

    def validate(self, key: str) -> None:
        if self.path and self.judge_url:
            raise ConfigError(f"{key}: set path (a reward model) or judge_url (an LLM judge), not both")
        if self.path:
            checks.model_dir(f"{key}.path", self.path)
        if self.judge_url and not self.judge_url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.judge_url: expected an http(s):// OpenAI-compatible base URL, got {self.judge_url!r}")
        if "{summary}" not in self.judge_prompt:
            raise ConfigError(f"{key}.judge_prompt: must contain the placeholder {{summary}} (and may hold {{question}})")
        for name in ("batch_size", "judge_concurrency", "judge_max_tokens"):
            checks.at_least(f"{key}.{name}", getattr(self, name), 1)
        checks.at_least(f"{key}.judge_max_retries", self.judge_max_retries, 0)
        checks.positive(f"{key}.judge_timeout", self.judge_timeout)


@dataclass(frozen=True)
class ZeroConfig:
    """`aha zero`: GRPO from a base model (the embedded one is pretrained first when needed)."""

    # Settings a resumed run may change without --allow-changes: they move the finish line or
    # change speed and logging, never the algorithm.
    FREE_ON_RESUME = ("grpo.steps", "run.save_every", "run.progress", "run.threads", "run.samples_per_step",
                      "run.log_to", "run.max_bad_steps", "rollout.max_batch", "grpo.micro_batch_size",
                      "grpo.micro_batch_tokens", "eval.every", "eval.during_problems", "model.gradient_checkpointing",
                      "reward_model.batch_size", "reward_model.judge_concurrency", "reward_model.judge_timeout",
                      "reward_model.judge_max_retries")

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    rewards: dict = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.2})
    eval: EvalConfig = field(default_factory=EvalConfig)
    reward_model: RewardModelSection = field(default_factory=RewardModelSection)  # for rewards.reward_model

    def validate(self) -> None:
        for name in ("run", "pretrain", "task", "prompt", "rollout", "grpo", "eval", "reward_model"):
            getattr(self, name).validate(name)
        self.model.validate("model", chat_template=self.prompt.template == "chat")
        checks.rewards("rewards", self.rewards)
        if self.rewards.get("reward_model") and not (self.reward_model.path or self.reward_model.judge_url):
            raise ConfigError("reward_model.path: required when rewards weighs reward_model — a reward model "
                              "directory (an `aha rm` run's model/), or set reward_model.judge_url to an LLM judge")
        if self.rollout.engine == "openai":  # its completions carry no log-probs (NaN)
            raise ConfigError("rollout.engine: 'openai' returns no log-probs, which GRPO's update needs; use 'torch'")
        if self.rollout.engine in ("vllm", "vllm_server") and self.rollout.top_p < 1 and self.grpo.mu > 1:
            # vLLM's log-probs are then the nucleus-renormalised ones, not log π_old at the temperature.
            raise ConfigError(f"rollout.top_p < 1 with rollout.engine={self.rollout.engine} and grpo.mu > 1: vLLM's log-probs are "
                              "renormalised over the top-p nucleus and would be used as π_old; use top_p=1 or mu=1")


# Named GRPO settings. "r1": DeepSeek-R1 (arXiv 2501.12948) as reported second-hand by peers.
PRESETS.update({
    "r1": {"beta": 0.001, "group_size": 16, "prompts_per_step": 32, "eps_low": 0.2, "eps_high": 0.2,
           "ref_reset_every": 400, "advantage": "grpo", "loss_agg": "seq-mean-token-mean"},
    "dr_grpo": {"advantage": "dr_grpo", "loss_agg": "seq-mean-token-sum-norm", "beta": 0.0},
    "dapo": {"eps_low": 0.2, "eps_high": 0.28, "loss_agg": "token-mean", "beta": 0.0, "dynamic_sampling": True},
})


def changed_settings(old: Any, new: Any, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (old, new)} for every leaf that differs between two configs of one class."""
    import dataclasses

    out: dict[str, tuple] = {}
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if dataclasses.is_dataclass(a):
            out.update(changed_settings(a, b, f"{prefix}{f.name}."))
        elif a != b:
            out[f"{prefix}{f.name}"] = (a, b)
    return out
