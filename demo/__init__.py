"""The classroom app: our GPT with OpenAI's GPT-2 weights, writing English and proving it is right.

`demo/` only shows what `model/` computes; `model/` never imports it.
"""
# On a ZeroGPU Space the `spaces` package must be imported before torch: importing any module of demo/
# runs this line first.
from demo import gpu  # noqa: F401
