"""aha's vLLM worker extension: what each of vLLM's GPU workers does to take the trainer's weights.

vLLM mixes this class into its workers (`LLM(worker_extension_cls=EXTENSION)`), and aha's server
(`aha.rollout.vllm_server`) calls its methods on every worker at once with `LLM.collective_rpc`.
Written against vLLM's API as of 0.16–0.25 (`worker_extension_cls`, `collective_rpc`, a worker's
`device` and `model_runner.model.load_weights`, `StatelessProcessGroup`, `PyNcclCommunicator`) and
NOT run here: this machine has no GPU and cannot install vLLM.

The group: vLLM's tensor-parallel workers are ranks 0…tp-1 (their rank in vLLM's world group) and
the trainer is the last rank, tp; worker 0 hosts the rendezvous store on the server's machine, so
the trainer only needs the server's address. Every step of the rendezvous is bounded by `timeout`
(the store's), so a trainer that never joins — or joins with another world size — fails the call
instead of leaving the server hung inside NCCL's initialisation.
"""

from __future__ import annotations

EXTENSION = "aha.rollout.vllm_worker.WeightSyncExtension"


def nccl_group(host: str, port: int, rank: int, world_size: int, device, timeout: float):
    """A NCCL communicator over `world_size` processes that joined at host:port (rank 0 listens).
    Apart from torch.distributed's global group, so a trainer launched with torchrun can hold both."""
    from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
    from vllm.distributed.utils import StatelessProcessGroup

    group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size,
                                         store_timeout=max(1, int(timeout)))
    # NCCL's unique id travels through the store (bounded by its timeout); once every rank has it,
    # all of them are alive and ncclCommInitRank returns.
    return PyNcclCommunicator(group, device=device)


class WeightSyncExtension:
    """Methods vLLM adds to each GPU worker (`self.device`, `self.model_runner` are the worker's)."""

    _weight_comm = None
    _trainer_rank = None

    def init_weight_sync(self, host: str, port: int, world_size: int, timeout: float) -> int:
        """Join the trainer's weight group; returns this worker's rank in it. A new trainer (a run
        restarted against the same server) replaces the previous group."""
        from vllm.distributed.parallel_state import get_world_group

        self.close_weight_sync()
        rank = get_world_group().rank
        self._weight_comm = nccl_group(host, port, rank, world_size, self.device, timeout)
        self._trainer_rank = world_size - 1
        return rank

    def update_weights(self, tensors: list) -> int:
        """Receive the tensors the trainer broadcasts, in the announced order ([name, dtype, shape]
        each), and load each into the model. A tensor that fails to load does not end the loop: the
        rest are still received — a worker that stopped listening would leave the trainer blocked
        in its next broadcast — and the first failure is raised once all of them have arrived."""
        import torch

        if self._weight_comm is None:
            raise RuntimeError("no weight group: the trainer must call /weights/init before /weights/update")
        failure = None
        on_cuda = torch.device(self.device).type == "cuda"
        for name, dtype, shape in tensors:
            weight = torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
            # On the stream the load below runs on: received before it is read.
            stream = {"stream": torch.cuda.current_stream()} if on_cuda else {}
            self._weight_comm.broadcast(weight, src=self._trainer_rank, **stream)
            if failure is None:
                try:
                    self.model_runner.model.load_weights(weights=[(name, weight)])
                except Exception as err:  # reported after the loop, see above
                    failure = f"{name}: {type(err).__name__}: {err}"
            del weight
        if on_cuda:
            torch.cuda.synchronize()
        if failure:
            raise RuntimeError(f"loading the trainer's weights failed at {failure}")
        return len(tensors)

    def load_weights_file(self, path: str) -> int:
        """Load a safetensors file of (vLLM-named) weights: the transport without NCCL, for a
        trainer on the server's own GPU (NCCL refuses two ranks on one device) or without CUDA."""
        from safetensors.torch import load_file

        weights = load_file(path, device=str(self.device))
        self.model_runner.model.load_weights(weights=list(weights.items()))
        return len(weights)

    def close_weight_sync(self) -> None:
        if self._weight_comm is not None:
            self._weight_comm = None
            self._trainer_rank = None
