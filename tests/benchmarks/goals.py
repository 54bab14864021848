"""The speed goals the issues set (4: ours against transformers; 23: against CTranslate2, and bfloat16 that
pays), each a threshold in GOALS, and what a run measured against it.

Every goal's text is written from GOALS, so a threshold is stated in one place only.
"""
from tests.benchmarks.machine import bfloat16_instructions

GOALS = {
    "speedup_float32": 1.0,      # ours / generate, tokens/s, float32 (with identical greedy tokens)
    "bandwidth_fraction": 0.85,  # of the memory-bandwidth ceiling, float32
    "speedup_half": 1.25,        # ours / generate, tokens/s, bfloat16 and float16
    "first_token_ratio": 1.0,    # theirs / ours, time to the first token of the longest prompt, float32
    "app_rss_gb": 1.3,           # the app's resident memory: start-up, every bug verified, gradio imported
    "peer_stream": 1.0,          # ours / CTranslate2 float32, one stream's tokens/s, float32 (identical tokens)
    "peer_class": 2.0,           # CTranslate2 float32's batch / our engine, a class's seconds, float32
    "bfloat16_over_float32": 1.8,  # our bfloat16 / our float32, one stream's tokens/s, on a CPU with bf16 instructions
}


def goals(results: dict) -> list[dict]:
    """One row per goal: {goal, measured, met}; met is None where this machine cannot measure it."""
    f32 = results["dtypes"]["float32"]
    gen = f32["generation"]
    ratio = min(gen[n]["median_ratio"] for n in gen)
    identical = all(gen[n]["identical"] for n in gen)
    rows = [_goal(f"float32 tokens/s >= {GOALS['speedup_float32']:.1f}x generate, identical tokens",
                  f"{ratio:.2f}x (lower of {_lengths(gen)}), identical: {identical}",
                  ratio >= GOALS["speedup_float32"] and identical)]
    c = f32["ceiling"]
    fraction = c["fraction_of_read_ceiling"]
    rows.append(_goal(f">= {GOALS['bandwidth_fraction']:.0%} of the memory-bandwidth ceiling (float32)",
                      f"{fraction:.0%} ({c['fraction_if_only_matrix_products']:.0%} if only the matrix-vector "
                      f"products took time, {c['fraction_with_sum_pace_products']:.0%} if they read as fast as a sum)",
                      fraction >= GOALS["bandwidth_fraction"]))
    for dtype in ("bfloat16", "float16"):
        if dtype in results["dtypes"]:
            gen = results["dtypes"][dtype]["generation"]
            ratio = min(gen[n]["median_ratio"] for n in gen)
            rows.append(_goal(f"{dtype} tokens/s >= {GOALS['speedup_half']:.2f}x generate in {dtype}",
                              f"{ratio:.2f}x (lower of {_lengths(gen)})", ratio >= GOALS["speedup_half"]))
    longest = max(f32["first_token"], key=int)
    first = f32["first_token"][longest]
    rows.append(_goal(f"first token, {longest}-token prompt, >= {GOALS['first_token_ratio']:.1f}x the reference's "
                      "speed (float32)",
                      f"ours {first['ours_median_s']*1e3:.0f} ms vs {first['reference_median_s']*1e3:.0f} ms "
                      f"({first['median_ratio']:.2f}x)", first["median_ratio"] >= GOALS["first_token_ratio"]))
    probe = results["startup"].get("float32")
    memory_goal = (f"app resident memory <= {GOALS['app_rss_gb']:.1f} GB (start-up, every bug verified, "
                   "gradio imported)")
    if probe and probe["rss_app_gb"] is None:
        rows.append(_goal(memory_goal, f"not measured: gradio is not installed here "
                                       f"({probe['rss_after_every_bug_gb']:.2f} GB without it)", None))
    elif probe:
        rows.append(_goal(memory_goal, f"{probe['rss_app_gb']:.2f} GB", probe["rss_app_gb"] <= GOALS["app_rss_gb"]))
    return rows + peer_goals(results)


def peer_goals(results: dict) -> list[dict]:
    """Issue 23's goals: where CTranslate2 was measured, and where bfloat16 was."""
    rows = []
    if (peers := results.get("peers")) is not None:
        stream = peers["stream"]["float32"]
        rows.append(_goal(f"one stream, float32 tokens/s >= {GOALS['peer_stream']:.1f}x CTranslate2 float32, "
                          "identical tokens", f"{stream['median_ratio']:.2f}x, identical: {stream['identical']}",
                          stream["median_ratio"] >= GOALS["peer_stream"] and stream["identical"]))
        together = peers["class"]["float32 vs float32"]
        rows.append(_goal(f"a class of {peers['class_size']} x {peers['class_tokens']}, our engine in float32 >= "
                          f"{GOALS['peer_class']:.1f}x CTranslate2 float32's batch",
                          f"{together['median_ratio']:.2f}x ({together['ours_median_s']:.1f} s against "
                          f"{together['reference_median_s']:.1f} s), identical: {together['identical']}"
                          + _floor(peers.get("class_floor"), together["reference_median_s"]),
                          together["median_ratio"] >= GOALS["peer_class"]))
    if (half := results.get("bfloat16_over_float32")) is not None:
        bf16 = bfloat16_instructions(results["machine"])
        rows.append(_goal(f"one stream, bfloat16 tokens/s >= {GOALS['bfloat16_over_float32']:.1f}x our float32 (a CPU "
                          "with bfloat16 instructions)", f"{half['median_ratio']:.2f}x"
                          + ("" if bf16 else " (this CPU has no bfloat16 instructions)"),
                          half["median_ratio"] >= GOALS["bfloat16_over_float32"] if bf16 else None))
    return rows


def _floor(floor: dict | None, theirs_s: float) -> str:
    """How far ahead of CTranslate2's batch the class's float32 arithmetic lets any engine be (arithmetic.py)."""
    if floor is None:  # a run from before the floor was measured
        return ""
    return (f"; its float32 products alone take {floor['seconds']:.1f} s at this CPU's fastest rate measured, so no "
            f"float32 engine is more than {theirs_s / floor['seconds']:.2f}x ahead ({floor['step_seconds']:.1f} s and "
            f"{theirs_s / floor['step_seconds']:.2f}x at the rate our products held over a whole step)")


def _lengths(generation: dict) -> str:
    return "/".join(str(n) for n in generation)


def _goal(goal: str, measured: str, met: bool | None) -> dict:
    return {"goal": goal, "measured": measured, "met": None if met is None else bool(met)}
