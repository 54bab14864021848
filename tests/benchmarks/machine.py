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
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


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
