"""The proof that a model computes GPT-2's function: the chain of evidence, its reports, naming the mistake."""
