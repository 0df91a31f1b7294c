import pytest
import torch

from aha.config import PretrainConfig
from aha.stages.pretrain import pretrain
from aha.tasks import get_task

TINY = PretrainConfig(documents=512, batch_size=64, lr=3e-3, warmup_steps=2, vocab_size=300,
                      hidden=32, layers=2, heads=2, kv_heads=1, mlp=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A very small embedded-style base (seconds to build): tokenizer + Qwen2 in an HF directory."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-base")
    pretrain(TINY, get_task("division"), out)
    return out
