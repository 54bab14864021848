"""The course's GPT, OpenAI's GPT-2 weights in it, and the proof that it computes GPT-2's function.

The story of the lesson, in five files:
    gpt.py                  the model: GPTConfig, attention, MLP, Block, GPT
    loading/reference.py    transformers' GPT-2 with OpenAI's weights, from the hub or a folder
    loading/mapping.py      the mapping table: every GPT-2 tensor -> ours (copy, transpose, tied), and the loader
    loading/mistakes.py     the catalogue of mistakes a load or an architecture can make
    proof/evidence.py       the chain of evidence, for any model: tensors, components, layers, logits, tokens

Around it: proof/ (our GPT's report, a student's check, naming the mistake), serving/ (the model that
writes, the classroom engine, text), lesson/ (the quiz, the diagram's plan, parameter anatomy, weights
= knowledge), tokenizer.py, sampling.py, and the command lines: verify.py, generate.py, check.py.
"""
