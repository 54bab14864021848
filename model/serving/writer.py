"""The model that writes: our correctly loaded GPT, laid out for the speed of writing a token.

Verification always checks the float32 model that shares the reference's memory; this file only
changes how the same weights are stored and multiplied, never what they are.
"""
import torch
from transformers import GPT2LMHeadModel

from model.gpt import GPT
from model.loading.mapping import load_gpt
from model.serving import products
from model.serving.written_token import use_written_token_step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str, device: torch.device):
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if device.type != "cpu":
        return
    if dtype == "float16":
        raise ValueError("float16 is for GPUs; on the CPU use --dtype "
                         + ("bfloat16" if products.bfloat16_available() else "float32"))
    if dtype == "bfloat16" and not products.bfloat16_available():
        raise ValueError(f"this CPU cannot write in bfloat16: its widest vector instructions are "
                         f"{torch.backends.cpu.get_cpu_capability()}: oneDNN's bfloat16 products need AVX-512 or "
                         f"AVX-NE-CONVERT, and our own (row_products.cpp, AVX2) could not be built (a note above says "
                         f"why); use --dtype float32 (verification is float32 either way)")


def in_dtype(model: GPT, dtype: str) -> GPT:
    """`model` (in place) with every parameter a copy in `dtype`, in nn.Linear's own (out, in) layout, not
    GPT-2's (in, out): a GPU's half-precision products read that layout faster, and oneDNN packs it.
    The tied matrix stays one parameter."""
    for param in model.parameters():
        param.data = param.data.to(DTYPES[dtype], memory_format=torch.contiguous_format)
    return model


def load_writer(reference: GPT2LMHeadModel, dtype: str = "float32") -> GPT:
    """Our correctly loaded GPT that writes, laid out for writing many rows at once.

    On the CPU the products give a row the same bits alone or among others (model/serving/products.py: our
    own kernel, or oneDNN's), and so does a written token's step, one C++ call a layer where the products are ours
    (model/serving/written_token.py): the classroom engine relies on it. The products pack a copy of each matrix
    (ours also computes the MLP's GELU at the end of its first product); elsewhere float32 shares the reference's
    memory. bfloat16 and float16 are a copy, which halves the bytes read per token. On CUDA it turns cuDNN's
    attention off for the whole process.
    """
    device = reference.device
    check_dtype(dtype, device)
    if device.type == "cuda":
        # In half precision SDPA would pick cuDNN's attention, which builds a plan for each new sequence
        # length, and writing reaches a new length every token (tests/benchmarks/cuda_check.sh measures it).
        torch.backends.cuda.enable_cudnn_sdp(False)
    model = load_gpt(reference)
    if dtype != "float32":
        model = in_dtype(model, dtype)
    if device.type == "cpu" and products.available():
        model = products.gelu_in_products(products.use_row_invariant_products(model))
    return use_written_token_step(model)
