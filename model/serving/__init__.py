"""Writing text with our GPT: one generation, the whole class in one loop, the model laid out for speed."""
