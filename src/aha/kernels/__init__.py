"""aha's compiled CPU kernels, built on first use with the machine's own compiler.

The fused decode layer (`decode_cpu.cpp`) is C++ compiled by `torch.utils.cpp_extension` into the
torch extensions cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``): once per
CPU type, torch installation and source, ≈ 15–30 s. Where no compiler is found or the build fails,
`decode_ops` returns None and the rollout runs the PyTorch-level decoder instead (same results
within float tolerance, slower); the reason is said once. ``AHA_CPU_KERNELS=0`` turns them off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import threading
from pathlib import Path

import torch

# The kernel reads K/V in blocks of this many columns (kBlock in the source): head_dim, the prompt
# columns and the cache capacity it is given are multiples.
BLOCK = 16
_SOURCE = Path(__file__).with_name("decode_cpu.cpp")
_lock = threading.Lock()
_state: dict[str, object] = {}


def _build_tag(flags: list[str]) -> str:
    """The extension's name carries what its binary depends on, so each combination builds once into
    its own directory of the shared cache:
    - the kernel's source and compiler flags: two versions of aha (two checkouts, an upgrade) would
      otherwise load each other's binary, whose ops may take other arguments — torch's own check
      only rebuilds when the source path's content changes, and two checkouts are two paths
      sharing one name;
    - the CPU's feature flags (built with -march=native): a cache shared between machines (a
      network home) never loads code for another CPU;
    - the torch installation and Python: two venvs with their own torch (the benchmarks' TRL venv
      beside aha's) would otherwise rebuild the same name over each other, ≈ 13 s per switch."""
    key = f"{platform.machine()} {sys.version} {torch.__version__} {Path(torch.__file__).parent}"
    key += hashlib.sha1(_SOURCE.read_bytes()).hexdigest() + " ".join(flags)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                key += line
                break
    except OSError:
        pass
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def _ninja_on_path() -> bool:
    """torch's builder runs `ninja` from PATH; the pip package's binary sits in the venv's bin, which
    is not on PATH when the venv's python is called directly (as `make` does)."""
    if shutil.which("ninja"):
        return True
    try:
        import ninja
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("ninja") is not None


def disabled_reason() -> str | None:
    if os.environ.get("AHA_CPU_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return "AHA_CPU_KERNELS=0"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler on PATH (install g++ for the faster rollout)"
    if not _ninja_on_path():
        return "no ninja (pip install ninja)"
    return None


def decode_ops():
    """`torch.ops.aha_decode` (ops `decode_layer`, `rms_norm`), or None where it cannot be built."""
    with _lock:
        if "ops" in _state:
            return _state["ops"]
        ops, why = None, disabled_reason()
        if why is None:
            try:
                ops = build()
            except Exception as error:  # a failed build must never stop a run: the plain path remains
                why = f"build failed: {_first_error(error)}"
        if ops is None and why != "AHA_CPU_KERNELS=0":
            print(f"aha: the fused CPU decode kernel is off — {why}; sampling runs the PyTorch decoder.", file=sys.stderr)
        _state["ops"] = ops
        return ops


def _first_error(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    # the compiler's own "file:line: error: …" line where there is one, not ninja's summary
    return next((line.strip() for line in lines if "error:" in line), lines[-1])[:300]


def build(variant: str = "", extra_cflags: tuple[str, ...] = ()):
    """Compile (or load from the cache) the kernel as `torch.ops.aha_decode{variant}`. The default
    build is `decode_ops`'s; a variant with other flags loads beside it in the same process (the
    tests build "_portable" with -mno-avx512bf16: the path CPUs without AVX512-BF16 take)."""
    from torch.utils import cpp_extension

    namespace = f"aha_decode{variant}"
    flags = ["-O3", "-march=native", "-fopenmp", f"-DAHA_OPS={namespace}", *extra_cflags]
    name = f"{namespace}_{_build_tag(flags)}"
    try:  # a private helper: only to say why the first call takes a while
        built = any(Path(cpp_extension._get_build_directory(name, verbose=False)).glob("*.so"))
    except Exception:
        built = False
    if not built:
        print("aha: compiling the fused CPU decode kernel (once per machine and torch install, ~15–30 s)…",
              file=sys.stderr, flush=True)
    cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=False,
    )
    return getattr(torch.ops, namespace)


def can_prepack() -> bool:
    """oneDNN's blocked weight layout is there (x86/ARM builds of torch with MKLDNN)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def prepack(weight):
    """A (out, in) weight in oneDNN's blocked layout, for `linear` and the decode kernel's matmuls."""
    return torch.ops.mkldnn._reorder_linear_weight(weight)


def linear(x, weight, bias=None):
    """F.linear that also takes a `prepack`ed weight."""
    if weight.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.nn.functional.linear(x, weight, bias)


def key_tiles(k_t, pairs: bool):
    """Keys (…, D, L), L a multiple of BLOCK, in the kernel's layout: tiles of BLOCK columns,
    (…, L/BLOCK, D, BLOCK); with `pairs` (bf16 on AVX512-BF16, `ops.bf16_pairs()`) each tile holds
    (D/2, BLOCK, 2) — neighbouring d side by side — in the same shape."""
    *lead, D, L = k_t.shape
    n = len(lead)
    if pairs:
        tiles = k_t.reshape(*lead, D // 2, 2, L // BLOCK, BLOCK).permute(*range(n), n + 2, n, n + 3, n + 1)
    else:
        tiles = k_t.reshape(*lead, D, L // BLOCK, BLOCK).transpose(-3, -2)
    return tiles.contiguous().view(*lead, L // BLOCK, D, BLOCK)


def value_rows(v, pairs: bool):
    """Values (…, L, D) in the kernel's layout: as they are, or with `pairs` (L/2, D, 2) — rows l and
    l+1 interleaved — in the same shape."""
    if not pairs:
        return v.contiguous()
    *lead, L, D = v.shape
    return v.reshape(*lead, L // 2, 2, D).transpose(-1, -2).contiguous().view(*lead, L, D)
