"""The machine a run measured: CPU, cores, memory, the libraries and their versions, the device."""
import platform
from pathlib import Path

import psutil
import torch
import transformers

GB = 1e9


def machine(device: torch.device) -> dict:
    info = {
        "cpu": _cpu_name(), "cores": psutil.cpu_count(logical=True), "memory_gb": psutil.virtual_memory().total / GB,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "blas": _blas(), "device": str(device),
        "vector_instructions": _vector_instructions(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _vector_instructions() -> list[str]:
    """The CPU's wide-vector and bfloat16 instruction sets (Linux), which decide the kernels' paths."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [flag for flag in flags.split(":", 1)[1].split() if flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")]


def bfloat16_instructions(machine: dict) -> bool:
    return any(flag in machine.get("vector_instructions", []) for flag in ("avx512_bf16", "amx_bf16"))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    parts = ["MKL" if torch.backends.mkl.is_available() else "no MKL",
             "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"]
    return ", ".join(parts)
