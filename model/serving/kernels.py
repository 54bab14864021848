"""The writer's own C++ kernels (model/serving/*.cpp), compiled by PyTorch on first use and kept for later runs.

Each is an option, never a need: where one cannot run or be built (a CPU without AVX2, no C++ compiler, no
ninja, a failed build), one line on stderr says why and PyTorch's own operations do its work, more slowly.
"""
import functools
import os
import shutil
import sys
from pathlib import Path

import torch

FOLDER = Path(__file__).parent
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp"]


@functools.cache
def load_kernel(name: str, what: str, instead: str):
    """The compiled module of `name`.cpp (`what` it computes), or None where it cannot run or be built here; then
    one line on stderr says why, and that the writer `instead` ("multiplies with oneDNN")."""
    source = FOLDER / f"{name}.cpp"

    def unavailable(why: str) -> None:
        print(f"note: the writer {instead}, not {source.name}: {why}", file=sys.stderr, flush=True)
        return None

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):  # AVX2's instructions; AVX-512 CPUs have them
        return None
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return unavailable(f"no C++ compiler ({compiler!r} is not on PATH)")
    if shutil.which("ninja") is None:
        try:  # pip's ninja: its binary sits beside the package, on PATH only in an activated environment
            import ninja
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:
            return unavailable("ninja is missing (pip install ninja)")
    from torch.utils import cpp_extension  # imports setuptools: only where a kernel is built

    # A folder per PyTorch release: a build for another release's headers must not be loaded.
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    build = Path(root) / f"{name}-torch{torch.__version__}"
    build.mkdir(parents=True, exist_ok=True)
    if not (build / f"{name}.so").exists():
        print(f"compiling {source.name}, {what} (once, about half a minute) ...", file=sys.stderr, flush=True)
    try:
        return cpp_extension.load(name, [str(source)], build_directory=str(build), extra_cflags=FLAGS)
    except Exception as error:  # a compiler or linker message: the writer still works, without this kernel
        return unavailable(f"the build failed ({type(error).__name__}: {str(error).strip().splitlines()[-1][:300]})")
