"""What the terminal table (model/proof/text.py) and the Verify tab (demo/views.py) both say about a
report: one formula for the log axis, one wording of each sentence, one way to fold the blocks.

Pure functions of the report's dict (`VerificationReport.to_dict()`); neither drawing computes a fact.
"""
import math
import re

AXIS_DECADES = (-8, 3)  # log10 of the tolerance axis' ends: below float32's noise, above a gross mistake's diff


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"  # in every font, unlike the emoji


def axis_fraction(value: float) -> float:
    """Where `value` sits on the tolerance axis, from 0 (its low end, or below) to 1 (its high end, or above)."""
    low, high = AXIS_DECADES
    return min(max(math.log10(max(value, 10.0 ** low)) - low, 0) / (high - low), 1)


def tolerance_marks(report: dict) -> list[tuple[str, float]]:
    """The tolerances a report is measured against, tightest first: (whose, atol), all at the same rtol."""
    return [("lesson", report["lesson_atol"]), ("project", report["tolerance"]["atol"]),
            ("loose", report["loose_atol"])]


def tolerance_points(report: dict) -> list[dict]:
    """What the tolerance axis places: our model in float32 (the noise floor), in each lower precision,
    and the broken load if any, each as {kind, label, max_abs_logit_diff, atol_needed, greedy_tokens_agree}
    (kind: the dtype, or "bug"; a refused load's numbers are None)."""
    keys = ("max_abs_logit_diff", "atol_needed", "greedy_tokens_agree")
    points = [{"kind": row["dtype"], "label": row["dtype"] + (": the noise floor" if row["dtype"] == "float32" else ""),
               **{key: row[key] for key in keys}} for row in report["precision"]]
    if (b := report["broken"]) is not None:
        points.append({"kind": "bug", "label": f"bug {b['bug']}", **{key: b[key] for key in keys}})
    return points


def caught_at(point: dict, marks: list[tuple[str, float]]) -> list[bool]:
    """At each tolerance, whether allclose tells this point from the reference (it needs a larger atol)."""
    return [point["atol_needed"] > atol for _, atol in marks]


# --- every tensor, in sentences -----------------------------------------------------------------------

def audit_sentences(report: dict) -> list[dict]:
    """One sentence per load on its tensors' audit: {ok, load, text, wrong}, wrong the names NOT OK.

    ok is None where there is nothing to audit (a refused load)."""
    correct = report["mapping"]
    equal, shared = sum(row["values_equal"] for row in correct), sum(row["shares_memory"] for row in correct)
    sentences = [dict(ok=equal == len(correct), load="Correct load", wrong=[],
                      text=f"{equal} of {len(correct)} tensors hold exactly the reference's values (transposed where "
                           f"the table says); {shared} are its very memory, {len(correct) - shared} a copy.")]
    broken = report["broken"]
    if broken is not None:
        load = f"Broken load ({broken['bug']})"
        wrong = [row["ours"] for row in broken["mapping"] if not row["values_equal"]]
        if broken["refused"]:
            sentences.append(dict(ok=None, load=load, wrong=[],
                                  text="refused by the mapping. No tensor was loaded, so there is none to check."))
        elif wrong:
            sentences.append(dict(ok=False, load=load, wrong=wrong,
                                  text=f"{len(wrong)} tensor(s) NOT OK, the other {len(broken['mapping']) - len(wrong)} OK."))
        else:
            sentences.append(dict(ok=True, load=load, wrong=[],
                                  text="every tensor OK. The weights are right; the architecture is not. No check of "
                                       "a tensor can see that, only the logits can: that is why they are the test."))
    return sentences


def where_it_diverges(report: dict, emphasis=str) -> str:
    """Where the broken load's residual stream first leaves the reference's, in words; emphasis(text) marks
    the layer's name as the drawing does (HTML: bold and escaped)."""
    layer = report["broken"]["first_divergent_layer"]
    if layer is None:  # every hidden state matches, so the logits differ in the head alone
        return "Every layer matches: the output head (lm_head) makes the difference."
    return f"First diverges at {emphasis(report['layer_names'][layer])}."


# --- one name for a parameter of many blocks ------------------------------------------------------

LAYER_INDEX = re.compile(r"\.(\d+)(\.|$)")


def block_pattern(name: str) -> tuple[str, int | None]:
    """'transformer.h.3.attn.c_attn.weight' -> ('transformer.h.{}.attn.c_attn.weight', 3); None outside blocks.

    The first number between dots is the block, whatever the model calls its list of blocks."""
    match = LAYER_INDEX.search(name)
    if match is None:
        return name, None
    return name[:match.start()] + ".{}" + match[2] + name[match.end():], int(match[1])


def folded_name(pattern: str, blocks: list[int | None]) -> str:
    """One name for a parameter of several blocks: transformer.h.0–11.attn.c_attn.weight."""
    if blocks == [None]:
        return pattern
    if len(blocks) > 1 and blocks == list(range(blocks[0], blocks[-1] + 1)):
        return pattern.format(f"{blocks[0]}–{blocks[-1]}")
    return pattern.format(",".join(map(str, blocks)))


def fold_blocks(rows: list[dict], key, name: str = "ours") -> list[tuple[str, list[dict]]]:
    """Rows (dicts, named by row[name]) that differ only in their block and agree on key(row), as one
    (folded name, rows). In the model's order: a row a mistake changes stays in its place, between the
    rows of its neighbours."""
    groups: dict[tuple, list[dict]] = {}
    order: dict[str, int] = {}  # name pattern -> its place in the model
    for row in rows:
        pattern, _ = block_pattern(row[name])
        order.setdefault(pattern, len(order))
        groups.setdefault((pattern, key(row)), []).append(row)

    def place(group):
        (pattern, _), members = group
        return order[pattern], block_pattern(members[0][name])[1] or 0

    return [(folded_name(pattern, [block_pattern(row[name])[1] for row in members]), members)
            for (pattern, _), members in sorted(groups.items(), key=place)]


def folded_names(names: list[str]) -> list[str]:
    """Parameter names that differ only in their block, folded into one each."""
    return [folded for folded, _ in fold_blocks([{"ours": name} for name in names], key=lambda row: None)]
