"""The zoo: each layout of tests/students/ correct, and each mistake of the catalogue written into them as code
(the lines a student would write instead), with the loader the check runs, if any.

    python -m tests.students.zoo ./zoo      # writes every student's file there, to try by hand
"""
import sys
from pathlib import Path

HERE = Path(__file__).parent
LAYOUTS = {"nanogpt": "load_hf_weights", "scratch_book": "load_weights_into_gpt", "lecture": None, "torch_modules": "load_gpt2"}

BOOK_BLOCK = """        shortcut = x
        x = self.norm1(x)
        x = self.att(x)
        x = self.drop_shortcut(x)
        x = x + shortcut

        shortcut = x
        x = self.norm2(x)
        x = self.ff(x)
        x = self.drop_shortcut(x)
        x = x + shortcut"""
MHA_BLOCK = """        h = self.norm_1(x)
        x = x + self.attention(h, h, h, attn_mask=future, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))"""

# (layout, the mistake's id): [(what the layout says, what the student wrote instead)], and whether the
# check runs the layout's loader (the load mistakes are in it).
MISTAKES_AS_CODE = {
    ("nanogpt", "exact_gelu"): ([('nn.GELU(approximate="tanh")', "nn.GELU()")], False),
    ("nanogpt", "missing_causal_mask"): ([("is_causal=True", "is_causal=False")], False),
    ("nanogpt", "missing_position_embedding"): ([("self.transformer.drop(tok_emb + pos_emb)",
                                                  "self.transformer.drop(tok_emb)")], False),
    ("nanogpt", "not_transposed"): ([('transposed = ["attn.c_attn.weight", "attn.c_proj.weight", ',
                                      'transposed = ["attn.c_attn.weight", ')], True),
    ("nanogpt", "scrambled"): ([("sd[k].copy_(sd_hf[k].t())",
                                 "sd[k].copy_(sd_hf[k].reshape(sd[k].shape) if 'c_attn' in k else sd_hf[k].t())")], True),
    ("scratch_book", "exact_gelu"): ([("            GELU(),", "            nn.GELU(),")], False),
    ("scratch_book", "post_layernorm"): ([(BOOK_BLOCK, "        x = self.norm1(x + self.drop_shortcut(self.att(x)))\n"
                                                       "        x = self.norm2(x + self.drop_shortcut(self.ff(x)))")], False),
    ("scratch_book", "attention_scale"): ([("attn_scores / keys.shape[-1] ** 0.5", "attn_scores / keys.shape[-1]")],
                                          False),
    ("scratch_book", "layernorm_eps"): ([("self.eps = 1e-5", "self.eps = 1e-12")], False),
    ("scratch_book", "missing_final_layernorm"): ([("        x = self.final_norm(x)\n", "")], False),
    ("scratch_book", "qkv_order"): ([('q_w, k_w, v_w = torch.chunk(d[f"transformer.h.{b}.attn.c_attn.weight"]',
                                      'k_w, q_w, v_w = torch.chunk(d[f"transformer.h.{b}.attn.c_attn.weight"]')], True),
    ("scratch_book", "not_transposed"): ([('d[f"transformer.h.{b}.attn.c_proj.weight"].T)',
                                           'd[f"transformer.h.{b}.attn.c_proj.weight"])')], True),
    ("scratch_book", "not_loaded"): ([('    gpt.out_head.weight = assign(gpt.out_head.weight, d["transformer.wte.weight"])'
                                       '\n', "")], True),
    ("scratch_book", "wrong_tensor"): ([('d[f"transformer.h.{b}.mlp.c_fc.weight"].T)',
                                         'd["transformer.h.0.mlp.c_fc.weight"].T)')], True),
    ("lecture", "relu"): ([('nn.GELU(approximate="tanh")', "nn.ReLU()")], False),
    ("lecture", "attention_scale"): ([("q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5",
                                       "q @ k.transpose(-2, -1) * C ** -0.5")], False),  # the lecture's first version
    ("lecture", "missing_causal_mask"): ([('        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))\n',
                                           "")], False),
    ("lecture", "layernorm_eps"): ([("self.ln1 = nn.LayerNorm(n_embd)", "self.ln1 = nn.LayerNorm(n_embd, eps=1e-12)"),
                                    ("self.ln2 = nn.LayerNorm(n_embd)", "self.ln2 = nn.LayerNorm(n_embd, eps=1e-12)")],
                                   False),
    ("lecture", "cannot_hold"): ([("bias=True)", "bias=False)")], False),  # the lecture's own key, query and value
    ("lecture", "missing_final_layernorm"): ([("        x = self.ln_f(x)\n", "")], False),
    ("lecture", "missing_position_embedding"): ([("x = tok_emb + pos_emb", "x = tok_emb")], False),
    ("lecture", "unknown"): ([("x = x + self.sa(self.ln1(x))", "x = x + 2 * self.sa(self.ln1(x))")], False),
    ("torch_modules", "exact_gelu"): ([('nn.GELU(approximate="tanh")', "nn.GELU()")], False),
    ("torch_modules", "relu"): ([('nn.GELU(approximate="tanh")', "nn.ReLU()")], False),
    ("torch_modules", "missing_causal_mask"): ([("attn_mask=future, ", "")], False),
    ("torch_modules", "post_layernorm"): ([(MHA_BLOCK, "        x = self.norm_1(x + self.attention(x, x, x, attn_mask="
                                                       "future, need_weights=False)[0])\n"
                                                       "        return self.norm_2(x + self.mlp(x))")], False),
    ("torch_modules", "scrambled"): ([("layer.attention.in_proj_weight.copy_(block.attn.c_attn.weight.t())",
                                       "layer.attention.in_proj_weight.copy_(block.attn.c_attn.weight.reshape("
                                       "layer.attention.in_proj_weight.shape))")], True),
    ("torch_modules", "qkv_order"): ([("layer.attention.in_proj_weight.copy_(block.attn.c_attn.weight.t())",
                                       "q, k, v = block.attn.c_attn.weight.chunk(3, dim=1)\n"
                                       "        layer.attention.in_proj_weight.copy_(torch.cat([v, k, q], dim=1).t())")],
                                     True),
    ("torch_modules", "not_loaded"): ([("    model.positions.copy_(gpt2.wpe.weight.unsqueeze(0))\n", "")], True),
    ("torch_modules", "wrong_tensor"): ([("for layer, block in zip(model.layers, gpt2.h):",
                                          "for layer in model.layers:\n        block = gpt2.h[0]")], True),
}


def source(layout: str, mistake: str | None = None) -> str:
    """The layout's code, with the mistake written into it."""
    code = (HERE / f"{layout}.py").read_text()
    for written, instead in (MISTAKES_AS_CODE[layout, mistake][0] if mistake else []):
        if written not in code:
            raise ValueError(f"{layout}.py no longer says {written!r}: update the zoo")
        code = code.replace(written, instead)
    return code


def write_student(folder: Path, layout: str, mistake: str | None = None) -> tuple[Path, str | None]:
    """The student's file in `folder`, and the loader the check runs with it (None: the check loads)."""
    path = Path(folder) / f"{layout}{'_' + mistake if mistake else ''}.py"
    path.write_text(source(layout, mistake))
    runs_loader = MISTAKES_AS_CODE[layout, mistake][1] if mistake else False
    return path, LAYOUTS[layout] if runs_loader else None


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "zoo")
    folder.mkdir(parents=True, exist_ok=True)
    for layout in LAYOUTS:
        print(write_student(folder, layout)[0])
    for layout, mistake in MISTAKES_AS_CODE:
        path, loader = write_student(folder, layout, mistake)
        print(path, f"--loader {loader}" if loader else "")
