"""The writer's own C++ kernels (model/serving/*.cpp, listed in kernels.h), compiled by PyTorch on first use as one
module and kept for later runs.

They are an option, never a need: where they cannot run or be built (a CPU without AVX2, no C++ compiler, no
ninja, a failed build), one line on stderr says why and PyTorch's own operations do their work, more slowly.
"""
import functools
import os
import shutil
import sys
from pathlib import Path

import torch

FOLDER = Path(__file__).parent
SOURCES = ["row_products.cpp", "row_attention.cpp", "written_token.cpp", "kernels.cpp"]
FLAGS = ["-O3", "-mavx2", "-mfma", "-fopenmp"]
NAME = "writer_kernels"


@functools.cache
def writer_kernels():
    """The compiled module (kernels.cpp binds it), or None where it cannot run or be built here; then one line on
    stderr says why, and what the writer does instead."""

    def unavailable(why: str) -> None:
        print(f"note: the writer multiplies with oneDNN and attends with PyTorch's attention, not with its own "
              f"kernels (model/serving/*.cpp): {why}", file=sys.stderr, flush=True)
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
    from torch.utils import cpp_extension  # imports setuptools: only where the kernels are built

    # A folder per PyTorch release: a build for another release's headers must not be loaded.
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    build = Path(root) / f"{NAME}-torch{torch.__version__}"
    build.mkdir(parents=True, exist_ok=True)
    if not (build / f"{NAME}.so").exists():
        print("compiling the writer's kernels, model/serving/*.cpp (once, about a minute) ...", file=sys.stderr,
              flush=True)
    try:  # ninja rebuilds what changed, headers included
        return cpp_extension.load(NAME, [str(FOLDER / source) for source in SOURCES], build_directory=str(build),
                                  extra_cflags=FLAGS)
    except Exception as error:  # a compiler or linker message: the writer still works, without our kernels
        return unavailable(f"the build failed ({type(error).__name__}: {str(error).strip().splitlines()[-1][:300]})")
