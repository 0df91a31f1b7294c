"""Rollouts from vLLM on a GPU, colocated with the trainer in its process (TRL's "colocate" mode).

Written against vLLM 0.25's public API (the extra allows 0.16–0.25, the range TRL's GRPO runs its
colocate mode on) and NOT run here: this machine has no GPU and cannot install vLLM. What it uses:
`LLM(..., distributed_executor_backend="external_launcher")` (the engine runs in this process, so
`LLM.apply_model` hands the trainer's tensors to the model's own `load_weights` without copying them
through a pipe), `logprobs_mode="processed_logprobs"`, `skip_tokenizer_init`,
`generation_config="vllm"`, `enable_sleep_mode`; `LLM.generate` on token-id prompts with one
`SamplingParams(n, temperature, top_p, max_tokens, seed, stop_token_ids, ignore_eos, logprobs=0,
detokenize=False)` per prompt; `LLM.sleep(level)`, `LLM.wake_up(tags)`, `LLM.reset_prefix_cache()`.

How it keeps the contract (`aha.rollout.base`):
- log-probs: vLLM's *processed* log-probs of the sampled token, i.e. under softmax(logits / T) as
  aha's torch engine returns them. With top_p < 1 vLLM also renormalises over the nucleus, so they
  then exceed aha's by −log(nucleus mass); the trainer logs the gap (`rollout_logprob_gap`), and the
  config refuses top_p < 1 with grpo.mu > 1, where they would be used as π_old.
- stopping: aha's tokenizer is the truth (vLLM loads none), so EOS goes into `stop_token_ids`
  with the task's stop tokens; the stop token stays in `ids`, the text is aha's tokenizer's decode.
- seeds: each prompt's request is seeded from (params.seed, the prompt's index in the step), so a
  prompt draws the same noise whatever else is in the batch (up to vLLM's batch numerics).

Weight sync and sleep (the peer bugs it avoids): `load_weights` wakes the weights BEFORE loading —
a level-1 sleeper restores its CPU backup on waking, which would overwrite weights loaded while
asleep, and a level-2 sleeper has no weight memory to load into — then resets the prefix cache, so
no prompt prefix computed by the old weights is reused. Weights never come back from disk: after a
level-2 sleep with no update since, the engine re-syncs from the policy module it was built for
(TRL reloaded the checkpoint there and sampled the starting policy all run long: TRL #5312). There
is no NCCL in this path: the sync is an in-process copy.

Server mode (vLLM on other GPUs, weights pushed over NCCL after each update) is
`aha.rollout.vllm_server` (the server, `aha vllm-serve`) and `aha.rollout.vllm_server_engine`
(`rollout.engine=vllm_server`, the trainer's client).
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from aha.rollout.base import Completion, RolloutEngine, SamplingParams

INSTALL_HINT = "rollout.engine=vllm needs `pip install 'aha-rl[vllm]'` and a CUDA GPU"
DTYPES = ("bfloat16", "float16", "float32")
# Names the trainer's modules may carry that the plain HF architecture (which vLLM's loaders read) does
# not: torch.compile, activation checkpointing, FSDP wrappers, peft's saved copies.
_WRAPPER_PARTS = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "modules_to_save.default.")


class VLLMEngine(RolloutEngine):
    def __init__(self, model, tokenizer, *, max_batch: int = 256, bf16: bool = False, model_dir: str | None = None,
                 dtype: str | None = None, gpu_memory_utilization: float = 0.3, max_model_len: int | None = None,
                 sleep: bool = False, sleep_level: int = 1, enforce_eager: bool = False, llm=None, params_cls=None):
        """`model`: the policy module (weights are synced from it after a level-2 sleep);
        `model_dir`: the HF directory vLLM builds from (default: the one `model` was loaded from).
        `dtype`: default bfloat16 under model.precision=bf16-mixed, else float32. `max_batch`: vLLM's
        max_num_seqs. `sleep`: sleep between generate calls (level 1 offloads the weights to CPU,
        level 2 drops them), freeing the GPU for the update. `llm`, `params_cls`: injected by tests."""
        if sleep_level not in (1, 2):
            raise ValueError(f"vllm engine: sleep_level must be 1 or 2, got {sleep_level!r}")
        self.policy, self.tokenizer = model, tokenizer
        self.sleep, self.sleep_level = sleep, sleep_level
        self._asleep: set[str] = set()  # vLLM memory tags released by the last sleep and not woken since
        self._weights_valid = True
        if llm is None:
            vllm = _import_vllm()
            path = _model_dir(model, model_dir)
            _refuse_several_processes()
            _single_process_rendezvous()
            llm = vllm.LLM(
                model=str(path), dtype=dtype or ("bfloat16" if bf16 else "float32"),
                gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, max_num_seqs=max_batch,
                enable_sleep_mode=sleep, enforce_eager=enforce_eager,
                # In this process: weights go to the model by reference, and there is no second one to hang.
                distributed_executor_backend="external_launcher",
                logprobs_mode="processed_logprobs",  # after temperature: the distribution the trainer scores
                generation_config="vllm",  # no sampling defaults from the checkpoint: aha's params are all
                skip_tokenizer_init=True,  # aha's tokenizer decodes; vLLM needs none for token-id prompts
            )
            params_cls = vllm.SamplingParams
        self.llm, self.params_cls = llm, params_cls

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[Completion]:
        if not prompts:
            return []
        refuse_empty_prompts(prompts, "vllm engine")
        self._wake_for_generation()
        try:
            eos = self.tokenizer.eos_token_id
            requests = [self.params_cls(**sampling_kwargs(params, n, eos, seed))
                        for seed in prompt_seeds(params, n, len(prompts))]
            outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], requests, use_tqdm=False)
            return completions_from_outputs(outputs, n, self.tokenizer, stop_set(params, eos))
        finally:
            if self.sleep:
                self._sleep()

    def load_weights(self, state_dict) -> None:
        """Copy the trainer's weights into vLLM's model (merged LoRA weights: see `vllm_weights`)."""
        weights = vllm_weights(state_dict)
        self._wake(("weights",))  # first: see the module docstring
        self.llm.apply_model(lambda model: model.load_weights(weights))
        self._weights_valid = True
        if self.llm.reset_prefix_cache() is False:  # older versions return None
            raise RuntimeError("vllm engine: vLLM refused to reset its prefix cache (requests still running?); "
                               "prompt prefixes computed by the old weights would be reused")

    def _wake_for_generation(self) -> None:
        self._wake(("weights",))
        if not self._weights_valid:  # a level-2 sleep dropped them and no update came since
            self.load_weights(self.policy.state_dict())
        self._wake(("kv_cache",))

    def _wake(self, tags: tuple[str, ...]) -> None:
        tags = [t for t in tags if t in self._asleep]
        if tags:
            _empty_cuda_cache()  # what the update freed, so waking does not run out of memory
            self.llm.wake_up(tags=tags)
            self._asleep -= set(tags)

    def _sleep(self) -> None:
        self.llm.sleep(level=self.sleep_level)
        self._asleep = {"weights", "kv_cache"}
        if self.sleep_level == 2:
            self._weights_valid = False


def sampling_kwargs(params: SamplingParams, n: int, eos_id: int | None, seed: int) -> dict:
    """vLLM `SamplingParams` arguments for one prompt's `n` samples."""
    return dict(n=n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                seed=seed, stop_token_ids=sorted(stop_set(params, eos_id)), ignore_eos=params.ignore_eos,
                logprobs=0,  # the sampled token's log-prob only
                detokenize=False)


def stop_set(params: SamplingParams, eos_id: int | None) -> set[int]:
    """Token ids that end a sample: the task's stop tokens, and EOS unless ignore_eos (as the torch engine)."""
    eos = () if params.ignore_eos or eos_id is None else (eos_id,)
    return {*eos, *params.stop_token_ids}


def refuse_empty_prompts(prompts: list[list[int]], who: str) -> None:
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(f"{who}: prompt {i} is empty (vLLM needs at least one prompt token)")


def prompt_seeds(params: SamplingParams, n: int, count: int) -> list[int]:
    """One seed per prompt of this call. With row-keyed noise the step's rows are global: prompt i
    of this call is prompt `row_offset // n + i` of the step, wherever it is sampled."""
    first = params.row_offset // n if params.row_offset is not None else 0
    return [request_seed(params.seed, first + i) for i in range(count)]


def request_seed(seed: int, index: int) -> int:
    """A 63-bit seed per (call seed, prompt index): unrelated streams for neighbouring seeds and prompts
    (seed + index would hand step s's prompt 1 the noise of step s + 1's prompt 0)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def completions_from_outputs(outputs, n: int, tokenizer, stops: set[int]) -> list[Completion]:
    """vLLM's `RequestOutput`s (one per prompt, in prompt order) → aha Completions grouped by prompt."""
    completions = []
    for prompt_index, request in enumerate(outputs):
        samples = sorted(request.outputs, key=lambda s: s.index)
        if len(samples) != n:
            raise RuntimeError(f"vllm engine: asked for n={n} samples of prompt {prompt_index}, got {len(samples)}")
        completions += [_completion(prompt_index, s, tokenizer, stops) for s in samples]
    return completions


def _completion(prompt_index: int, sample, tokenizer, stops: set[int]) -> Completion:
    ids = list(sample.token_ids)
    if sample.finish_reason not in ("stop", "length"):  # before the log-probs: they are missing then too
        raise RuntimeError(f"vllm engine: a sample of prompt {prompt_index} ended with finish_reason="
                           f"{sample.finish_reason!r} (expected 'stop' or 'length')")
    return completion_from_sample(prompt_index, ids, sampled_logprobs(ids, sample.logprobs), sample.finish_reason,
                                  tokenizer, stops)


def completion_from_sample(prompt_index: int, ids: list[int], logprobs: list[float], vllm_finish: str, tokenizer,
                           stops: set[int], who: str = "vllm engine") -> Completion:
    """One vLLM sample (its token ids, the sampled tokens' log-probs, vLLM's finish reason) as an aha
    Completion; shared by the colocated engine and the server engine (which gets the three over HTTP)."""
    if vllm_finish not in ("stop", "length"):
        raise RuntimeError(f"{who}: a sample of prompt {prompt_index} ended with finish_reason="
                           f"{vllm_finish!r} (expected 'stop' or 'length')")
    if len(logprobs) != len(ids):
        raise RuntimeError(f"{who}: expected one log-prob per generated token ({len(ids)}), got {len(logprobs)}")
    ended = bool(ids) and ids[-1] in stops
    if vllm_finish == "stop" and not ended:
        raise RuntimeError(f"{who}: prompt {prompt_index}: vLLM reports a stop but the last token "
                           f"{ids[-1:]} is no stop token of {sorted(stops)}")
    # A stop token drawn as the budget's last token ended the sample: "stop", as the torch engine says.
    finish = "stop" if ended else "length"
    # Decode without the final EOS, but keep a stop token like </answer> in the text (as the torch engine).
    text_ids = ids[:-1] if ended and ids[-1] == tokenizer.eos_token_id else ids
    return Completion(prompt_index=prompt_index, ids=ids, logprobs=[float(x) for x in logprobs],
                      text=tokenizer.decode(text_ids, skip_special_tokens=False), finish_reason=finish,
                      extra={"vllm_finish_reason": vllm_finish})


def sampled_logprobs(ids: list[int], steps) -> list[float]:
    """The sampled token's log-prob at each step (`steps[t]` maps token id → vLLM `Logprob`)."""
    if steps is None or len(steps) != len(ids):
        got = "none" if steps is None else len(steps)
        raise RuntimeError(f"vllm engine: expected one log-prob per generated token ({len(ids)}), got {got}")
    return [float(step[token].logprob) for token, step in zip(ids, steps)]


def vllm_weight_name(name: str) -> str | None:
    """The HF name vLLM's `load_weights` reads for a trainer state-dict entry; None for peft's own
    tensors (lora_A/B, a saved module's original copy), which vLLM's plain model does not have."""
    if ".lora_" in name or ".original_module." in name:
        return None
    name = name.removeprefix("base_model.model.")  # a PeftModel's wrapper
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name.replace(".base_layer.", ".")  # peft's adapted layer keeps the base weight one level down


def vllm_weights(state_dict) -> list[tuple[str, object]]:
    """(name, tensor) pairs for vLLM. Adapters must already be merged into the base weights (peft's
    `merge_adapter`, or `aha.models.lora.merged_state_dict`, which the LoRA engine wrapper sends): the
    adapter tensors are dropped here, so an unmerged state dict would push the bare base."""
    pairs = [(vllm_weight_name(k), v) for k, v in state_dict.items()]
    return [(k, v.detach()) for k, v in pairs if k is not None]


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (vllm is not installed: {err})") from err
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"{INSTALL_HINT} (torch sees no CUDA device)")
    return vllm


def _model_dir(model, model_dir: str | None) -> Path:
    path = Path(model_dir or getattr(model, "name_or_path", "") or "")
    if not (path / "config.json").is_file():
        raise ValueError(f"vllm engine: {str(path) or '(none)'} is not the policy's Hugging Face directory; "
                         "set rollout.options.model_dir")
    return path


def _refuse_several_processes() -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ValueError(f"rollout.engine=vllm runs in one trainer process for now (WORLD_SIZE={world}); "
                         "launch without torchrun/accelerate, or use rollout.engine=torch")


def _single_process_rendezvous() -> None:
    """external_launcher reads the torchrun variables; one process is rank 0 of 1 on a free local port."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
