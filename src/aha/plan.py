"""`aha plan RECIPE`: what a GRPO recipe costs before any GPU is rented — parameters, optimizer
state, activations and rollout KV cache per device, tokens and FLOPs per step, wall time at a
stated MFU and dollars at a stated price per GPU-hour. Pure arithmetic on the model's config
(a local HF directory's config.json, or a shape shipped in `aha/recipes/models/`).

Assumptions, stated once (each is a knob or a row in the table):
- Mixed-precision AdamW as in ZeRO's accounting: bf16 weights and gradients (2 + 2 bytes per
  parameter) and fp32 master weights, momentum and variance (12 bytes per trainable parameter).
  ZeRO stage 0 is aha's replicated data parallelism; stage 3 is close to aha's FSDP2 sharding
  (`aha.train.sharding`: weights, gradients and optimizer state sharded — but aha keeps fp32
  weights, and its rollouts gather the full weights on every device, which this table does not
  add); stages 1-2 are DeepSpeed's (`aha.train.zero_ds`, deepspeed-zero2.yaml).
- Activations per layer and token: 34·hidden bytes (bf16, flash attention, no recomputation;
  Korthikanti et al. 2022) or 2·hidden with gradient checkpointing, plus the logits (10 bytes per
  token and vocabulary entry: bf16 logits, fp32 log-softmax and its gradient). Dense rule; an MoE's
  routed MLP activations are counted as a dense MLP's.
- The rollout's KV cache holds every sample of the device's share at full length (prompt +
  max_new_tokens); MLA models cache the compressed latent (kv_lora_rank + rope dims).
- FLOPs: 2·N_active per token forward, 3× that forward + backward, plus attention 2·L·ctx·heads·
  (d_qk + d_v) per token forward; mean context = prompt + half the mean response. Rollout and
  update run at their own MFU (decoding is memory-bound: far below the update's).
- Evaluations, checkpoints and weight syncs are not counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# bf16 dense peak (no sparsity) and memory per GPU.
GPUS = {"H100": (989e12, 80), "H800": (989e12, 80), "H200": (989e12, 141), "A100": (312e12, 80), "B200": (2250e12, 192),
        "L40S": (362e12, 48)}


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder config that decide memory and FLOPs."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    # Mixture of experts (0 experts: dense) and multi-head latent attention (0 kv_lora_rank: plain GQA)
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    moe_intermediate: int = 0
    dense_layers: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope: int = 0
    qk_rope: int = 0
    v_head_dim: int = 0

    @classmethod
    def from_config(cls, c: dict) -> "Shape":
        heads = c["num_attention_heads"]
        moe = c.get("n_routed_experts") or 0
        return cls(
            model_type=c.get("model_type", "?"), hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads,
            kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim") or c["hidden_size"] // heads,
            intermediate=c["intermediate_size"], vocab=c["vocab_size"], tied=bool(c.get("tie_word_embeddings", False)),
            # Qwen2 has q/k/v biases whatever its config says; others follow attention_bias.
            qkv_bias=c.get("model_type") == "qwen2" or bool(c.get("attention_bias", False)),
            experts=moe, experts_per_token=c.get("num_experts_per_tok") or 0 if moe else 0,
            shared_experts=c.get("n_shared_experts") or 0, moe_intermediate=c.get("moe_intermediate_size") or 0,
            dense_layers=c.get("first_k_dense_replace", 0) if moe else 0, q_lora_rank=c.get("q_lora_rank") or 0,
            kv_lora_rank=c.get("kv_lora_rank") or 0, qk_nope=c.get("qk_nope_head_dim") or 0,
            qk_rope=c.get("qk_rope_head_dim") or 0, v_head_dim=c.get("v_head_dim") or 0)

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    def attention_params(self) -> int:
        h = self.hidden
        if self.mla:  # DeepSeek-V2/V3: low-rank q, compressed kv (+ its norms), per-head up-projections
            qk = self.qk_nope + self.qk_rope
            q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.heads * qk) if self.q_lora_rank \
                else h * self.heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope) + self.kv_lora_rank \
                + self.kv_lora_rank * self.heads * (self.qk_nope + self.v_head_dim)
            return q + kv + self.heads * self.v_head_dim * h
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        bias = (q + 2 * kv) if self.qkv_bias else 0
        return h * q + 2 * h * kv + q * h + bias

    def mlp_params(self, layer: int) -> tuple[int, int]:
        """(total, active per token) of layer `layer`'s MLP (gated: gate, up, down)."""
        if not self.experts or layer < self.dense_layers:
            n = 3 * self.hidden * self.intermediate
            return n, n
        expert = 3 * self.hidden * self.moe_intermediate
        router = self.experts * self.hidden  # gate weight (its score-correction bias is a buffer)
        shared = self.shared_experts * expert
        return self.experts * expert + shared + router, self.experts_per_token * expert + shared + router

    def params(self) -> tuple[int, int]:
        """(total, active per token) parameters, embeddings and head included."""
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        norms = 2 * self.hidden * self.layers + self.hidden
        attn = self.attention_params() * self.layers
        mlps = [self.mlp_params(i) for i in range(self.layers)]
        base = embed + norms + attn
        return base + sum(t for t, _ in mlps), base + sum(a for _, a in mlps)

    def kv_values_per_token(self) -> int:
        """Values cached per token over all layers (what one more token of context costs)."""
        per_layer = (self.kv_lora_rank + self.qk_rope) if self.mla else 2 * self.kv_heads * self.head_dim
        return per_layer * self.layers

    def attention_flops_per_token(self, context: float) -> float:
        """Forward FLOPs of one token's attention scores and weighted sum over `context` keys."""
        qk, v = (self.qk_nope + self.qk_rope, self.v_head_dim) if self.mla else (self.head_dim, self.head_dim)
        return 2 * self.layers * context * self.heads * (qk + v)

    def lora_params(self, r: int, targets: list[str]) -> int:
        """Adapter parameters r·(in + out) per targeted projection (dense GQA layouts)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        io = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, self.intermediate), "up_proj": (h, self.intermediate), "down_proj": (self.intermediate, h)}
        return self.layers * sum(r * sum(io[t]) for t in targets if t in io)


def shipped_shapes() -> dict[str, Path]:
    """Model id (as in model.path) -> the shipped config.json copy."""
    folder = resources.files("aha") / "recipes" / "models"
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            out[json.loads(entry.read_text())["_name_or_path"]] = Path(str(entry))
    return out


def load_shape(model_path: str) -> tuple[Shape, str]:
    """The shape from a local HF directory's config.json, else from the shipped copy of a known id."""
    local = Path(model_path) / "config.json"
    if local.is_file():
        return Shape.from_config(json.loads(local.read_text())), str(local)
    known = shipped_shapes()
    if model_path in known:
        return Shape.from_config(json.loads(known[model_path].read_text())), f"aha's copy of {model_path}'s config"
    raise ValueError(f"model.path {model_path!r}: no config.json there and not a known model "
                     f"({', '.join(sorted(known))}); download it, or give a directory holding its config.json")


@dataclass(frozen=True)
class Hardware:
    gpus: int = 8
    memory_gb: float = 80.0
    peak_flops: float = 989e12
    mfu: float = 0.35  # of the update (and the reference forward)
    rollout_mfu: float = 0.10  # of the generation: memory-bound decoding
    price: float = 2.0  # $ per GPU-hour
    zero: int = 0  # 0 = replicated; 1-3 = DeepSpeed ZeRO (aha.train.zero_ds); 3 ≈ aha's FSDP2 sharding too
    gradient_checkpointing: bool = False


GiB = 1024**3


def _sharded(nbytes: float, shard: bool, gpus: int) -> float:
    return nbytes / gpus if shard else nbytes


def memory_per_device(shape: Shape, hw: Hardware, *, trainable: int, reference: bool, micro_tokens: int,
                      rollout_seqs: float, seq_len: int, separate_rollout_copy: bool) -> dict[str, float]:
    """Bytes per device of each resident item, and the peak: training state + the larger of the
    update's activations and the rollout's KV cache (the two phases alternate)."""
    total, _ = shape.params()
    z, d = hw.zero, hw.gpus
    rows = {
        "weights (bf16)": _sharded(2 * total, z >= 3, d),
        "gradients (bf16)": _sharded(2 * trainable, z >= 2, d),
        "optimizer: fp32 master + Adam m, v": _sharded(12 * trainable, z >= 1, d),
        "reference model (bf16)": _sharded(2 * total, z >= 3, d) if reference else 0.0,
        "rollout engine's own weights (bf16)": 2 * total if separate_rollout_copy else 0.0,
    }
    per_layer = (2 if hw.gradient_checkpointing else 34) * shape.hidden * micro_tokens
    recompute = 34 * shape.hidden * micro_tokens if hw.gradient_checkpointing else 0  # one layer live again
    rows["activations (one micro-batch)"] = per_layer * shape.layers + recompute + 10 * micro_tokens * shape.vocab
    rows["rollout KV cache (bf16)"] = 2 * shape.kv_values_per_token() * seq_len * rollout_seqs
    resident = sum(v for k, v in rows.items() if not k.startswith(("activations", "rollout KV")))
    rows["peak"] = resident + max(rows["activations (one micro-batch)"], rows["rollout KV cache (bf16)"])
    return rows


def grpo_plan(cfg, shape: Shape, hw: Hardware, prompt_tokens: int, fill: float) -> dict:
    """Per-step and whole-run memory, tokens, FLOPs, time and dollars for a `ZeroConfig`."""
    g, r = cfg.grpo, cfg.rollout
    total, active = shape.params()
    lora = cfg.model.lora
    trainable = shape.lora_params(lora.r, list(lora.target_modules)) if lora.r else total
    samples = g.prompts_per_step * g.group_size
    seq_len = prompt_tokens + r.max_new_tokens
    micro_tokens = min(g.micro_batch_tokens, g.micro_batch_size * seq_len)
    memory = memory_per_device(shape, hw, trainable=trainable, reference=g.beta > 0, micro_tokens=micro_tokens,
                               rollout_seqs=samples / hw.gpus, seq_len=seq_len,
                               separate_rollout_copy=r.engine != "torch")
    generated = samples * r.max_new_tokens * fill
    prompts = g.prompts_per_step * prompt_tokens  # once per group: prefill and aha's shared-prompt update
    context = prompt_tokens + r.max_new_tokens * fill / 2
    forward = 2 * active * (prompts + generated) + shape.attention_flops_per_token(context) * generated
    rollout_flops = forward
    update_flops = 3 * forward * g.mu + (forward if g.beta > 0 else 0.0)
    cluster = hw.gpus * hw.peak_flops
    step_seconds = rollout_flops / (cluster * hw.rollout_mfu) + update_flops / (cluster * hw.mfu)
    hours = step_seconds * g.steps / 3600
    return {
        "model": {"parameters": total, "active_parameters": active, "trainable_parameters": trainable},
        "memory_bytes": memory, "fits": memory["peak"] <= hw.memory_gb * GiB,
        "step": {"samples": samples, "generated_tokens": generated, "prompt_tokens": prompts,
                 "rollout_flops": rollout_flops, "update_flops": update_flops, "seconds": step_seconds},
        "run": {"steps": g.steps, "tokens": (generated + prompts) * g.steps,
                "flops": (rollout_flops + update_flops) * g.steps, "hours": hours,
                "gpu_hours": hours * hw.gpus, "dollars": hours * hw.gpus * hw.price},
    }


def _si(x: float, unit: str = "") -> str:
    for scale, prefix in ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:,.2f} {prefix}{unit}"
    return f"{x:,.0f} {unit}".rstrip()


def render(plan: dict, hw: Hardware, source: str, title: str):
    """The plan as a rich Table: memory per device, then per-step and whole-run compute and cost."""
    from rich.table import Table

    table = Table(title=title, show_header=True, caption=f"shape from {source}; assumptions: `aha.plan`'s docstring")
    table.add_column("item")
    table.add_column("value", justify="right")
    m = plan["model"]
    table.add_row("parameters (total / active per token)", f"{_si(m['parameters'])} / {_si(m['active_parameters'])}")
    table.add_row("trainable parameters", _si(m["trainable_parameters"]))
    table.add_section()
    zero = {0: "replicated (aha's default)", 3: "ZeRO-3 (DeepSpeed, or ≈ aha's FSDP2 sharding)"}.get(
        hw.zero, f"ZeRO-{hw.zero} (DeepSpeed)")
    for key, value in plan["memory_bytes"].items():
        if key == "peak":
            verdict = "fits" if plan["fits"] else "[bold red]does not fit[/bold red]"
            table.add_row(f"[bold]peak per device[/bold], {zero}", f"[bold]{value / GiB:,.1f} GiB[/bold] of "
                          f"{hw.memory_gb:g}: {verdict}")
        elif value:
            table.add_row(f"  {key}", f"{value / GiB:,.2f} GiB")
    table.add_section()
    s, r = plan["step"], plan["run"]
    table.add_row("samples per step", f"{s['samples']:,}")
    table.add_row("tokens per step (generated + prompts)", f"{_si(s['generated_tokens'])} + {_si(s['prompt_tokens'])}")
    table.add_row("FLOPs per step (rollout / update)", f"{_si(s['rollout_flops'], 'FLOP')} / {_si(s['update_flops'], 'FLOP')}")
    table.add_row(f"seconds per step (MFU rollout {hw.rollout_mfu:g}, update {hw.mfu:g})", f"{s['seconds']:,.1f}")
    table.add_section()
    table.add_row(f"run: {r['steps']:,} steps, tokens", _si(r["tokens"]))
    table.add_row("run: FLOPs", _si(r["flops"], "FLOP"))
    table.add_row(f"run: wall time on {hw.gpus} GPUs", f"{r['hours']:,.1f} h")
    table.add_row(f"run: GPU-hours × ${hw.price:g}", f"{r['gpu_hours']:,.0f} → [bold]${r['dollars']:,.0f}[/bold]")
    return table


def validate_offline(cfg) -> list[str]:
    """Every check of the recipe that needs no download; what needs one (the model directory, a
    task's data file) comes back as notes for the machine that will run it."""
    from aha.config import ConfigError, checks

    notes = []
    for name in ("run", "pretrain", "prompt", "rollout", "grpo", "eval"):
        getattr(cfg, name).validate(name)
    cfg.model.lora.validate("model.lora")
    checks.rewards("rewards", cfg.rewards)
    for what, check in (("model.path", lambda: cfg.model.validate("model", cfg.prompt.template == "chat")),
                        ("task", lambda: cfg.task.validate("task"))):
        try:
            check()
        except ConfigError as err:
            notes.append(f"not checkable here ({what}): {err}")
    return notes


def plan_recipe(recipe: Path | None, overrides: list[str], hw: Hardware, prompt_tokens: int, fill: float):
    """(plan, shape source, notes) for a GRPO recipe; raises ConfigError on an invalid recipe."""
    from aha.config import ZeroConfig, load_config

    cfg = load_config(ZeroConfig, recipe, overrides, validate=False)
    notes = validate_offline(cfg)
    if cfg.model.path == "embedded":
        raise ValueError("model.path is the embedded CPU model: `aha plan` is for GPU recipes (give model.path)")
    shape, source = load_shape(cfg.model.path)
    return cfg, grpo_plan(cfg, shape, hw, prompt_tokens, fill), source, notes
