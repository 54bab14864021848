"""The classroom app: our GPT with OpenAI's GPT-2 weights, writing English and proving it is right.

`demo/` only shows what `model/` computes; `model/` never imports it.
"""
