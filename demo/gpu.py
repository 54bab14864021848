"""ZeroGPU: on a Hugging Face Space with ZeroGPU hardware, work holds a GPU only while it runs.

The `spaces` package exists only on such Spaces, and must be imported before torch starts CUDA, so
demo/__init__.py imports this module before any other module of demo/ can import torch.
"""
try:
    import spaces
except ImportError:
    spaces = None

GPU_SECONDS = 120  # the longest a call may hold the GPU: a 512-token generation, or a verification


def on_gpu(fn):
    """`fn`, holding a ZeroGPU GPU while it runs; everywhere else, `fn` itself."""
    return spaces.GPU(duration=GPU_SECONDS)(fn) if spaces is not None else fn
