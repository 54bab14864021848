"""The mapping diagram: transformers' GPT2LMHeadModel and ours side by side, an arrow per tensor.

Drawn from the mapping table (model/plan.py's rows), so it is right for every model size and every
bug: block 0 expanded, the other blocks folded into one line, each arrow coloured by what the load
does (copy, transpose with .t(); the tie drawn once, as a bracket from our lm_head to our wte), and
what a bug changes in red. A pure function of its inputs, returning HTML with an inline SVG; every
name in it is escaped.
"""
from collections import Counter
from dataclasses import dataclass
from html import escape

LINE_COLOURS = {"copy": "#2563eb", "transpose": "#b45309", "tied": "#15803d", "bug": "#e11d48", "folded": "#6b7280"}
ARROW_LABELS = {"copy": "copy", "transpose": ".t()", "tied": "tied"}  # a mistake's own ops show as it names them
LEGEND = {"copy": "copy: the same layout on both sides",
          "transpose": ".t(): Conv1D's (in, out) becomes nn.Linear's (out, in)",
          "tied": "tied: lm_head is wte, one tensor",
          "bug": "what the bug changes"}
ROW_HEIGHT = 24
TOP = 64  # room for the two column titles
INDENT = 14
CHAR_WIDTH = 7.9  # of the 13px monospace font: where the shapes start, after the longest name
GAP = 150  # between the two trees, where the arrows run
TIE_MARGIN = 110  # right of our tree, where the tie's bracket runs
PAD = 12


@dataclass
class Line:
    """One line of both trees: a module's name and class, or one of its tensors and that tensor's arrow."""
    path: tuple  # module path, "h.0" kept as one part: ("transformer", "h.0", "attn", "c_attn")
    tensor: str | None = None  # "weight" or "bias"; None on a module's own line
    row: dict | None = None  # the mapping row of this tensor
    folded: list | None = None  # on the line of the folded blocks: their rows


def diagram_html(rows: list[dict], reference_types: dict, our_types: dict) -> str:
    """The diagram of `rows` (model.plan.load_plan), each module shown with its class in the two models
    (module name → class name, "" for the model itself): a legend, then the SVG, scrollable on a phone."""
    counts = Counter("bug" if _wrong(row) else row["op"] for row in rows)
    legend = "".join(f"<span class='chip' style='background:#f3f4f6'>"
                     f"<span class='swatch' style='background:{LINE_COLOURS[op]}'></span>{escape(label)} ×{counts[op]}"
                     f"</span> " for op, label in LEGEND.items() if counts[op])
    return (f"<div class='legend'>{legend}</div>"
            f"<div class='diagram' tabindex='0' role='group' aria-label='the mapping diagram (scrolls sideways)'>"
            f"{_svg(_lines(rows), rows, reference_types, our_types)}</div>")


def _wrong(row: dict) -> bool:
    """The load does something else than the correct mapping here, or refuses to load it."""
    return row["bug"] or row["problem"] is not None


def _lines(rows: list[dict]) -> list[Line]:
    """Both trees, line by line: each module on its own line, then its tensors; the blocks after h.0 folded."""
    lines = [Line(())]  # the model itself
    folded: list[dict] = []
    for row in rows:
        *path, tensor = _parts(row["ours"])
        if _block(row["ours"]) not in (None, "h.0"):
            if not folded:
                lines.append(Line(("transformer", "h.1"), folded=folded))
            folded.append(row)
            continue
        known = {line.path for line in lines}
        lines += [Line(tuple(path[:depth])) for depth in range(1, len(path) + 1) if tuple(path[:depth]) not in known]
        lines.append(Line(tuple(path), tensor, row))
    return lines


def _parts(name: str) -> list[str]:
    """'transformer.h.0.attn.c_attn.weight' → ['transformer', 'h.0', 'attn', 'c_attn', 'weight']."""
    parts = name.split(".")
    if parts[:2] == ["transformer", "h"]:
        parts[1:3] = [f"h.{parts[2]}"]
    return parts


def _block(name: str) -> str | None:
    """'h.3' for a tensor of block 3, None for one outside the blocks."""
    parts = _parts(name)
    return parts[1] if len(parts) > 2 and parts[1].startswith("h.") else None


def _svg(lines: list[Line], rows: list[dict], reference_types: dict, our_types: dict) -> str:
    """Both trees, one line of text each side per Line, then the arrows between them and the tie beside ours."""
    blocks = len({_block(row["ours"]) for row in rows} - {None})
    left = [_label(line, reference_types, blocks, ours=False) for line in lines]
    right = [_label(line, our_types, blocks, ours=True) for line in lines]
    # Each side: names (indented by depth), then shapes in a column after the longest name.
    name_width = INDENT + max(INDENT * len(line.path) + len(name) * CHAR_WIDTH
                              for labels in (left, right) for line, (name, _) in zip(lines, labels))
    side = name_width + max(len(shape) for _, shape in left + right) * CHAR_WIDTH
    right_x = PAD + side + GAP
    width, height = right_x + side + TIE_MARGIN, TOP + ROW_HEIGHT * len(lines)
    y = {id(line): TOP + ROW_HEIGHT * i for i, line in enumerate(lines)}
    parts = [f"<rect width='{width:.0f}' height='{height}' fill='#ffffff'/>",
             *_title(PAD, "transformers' GPT2LMHeadModel", "Conv1D: each weight stored (in, out)"),
             *_title(right_x, "ours: GPT", "nn.Linear: each weight stored (out, in)")]
    for line, (left_name, left_shape), (right_name, right_shape) in zip(lines, left, right):
        at, indent = y[id(line)], INDENT * len(line.path)
        shape_css = "wrong" if line.row is not None and _wrong(line.row) else ""
        parts += [_text(PAD + indent, at, left_name), _text(PAD + name_width, at, left_shape),
                  _text(right_x + indent, at, right_name), _text(right_x + name_width, at, right_shape, shape_css)]
    parts += _arrows(lines, y, PAD + side, right_x - 6, right_x + side)
    summary = ", ".join(f"{count} {op}" for op, count in Counter(row["op"] for row in rows).items())
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width:.0f} {height}' width='{width:.0f}' "
            f"height='{height}' style='min-width:{width:.0f}px' role='img' aria-labelledby='mapping-title'>"
            f"<title id='mapping-title'>The mapping: {len(rows)} tensors, {escape(summary)}</title>"
            f"{_markers()}{''.join(parts)}</svg>")


def _arrows(lines: list[Line], y: dict, start: float, end: float, tie_x: float) -> list[str]:
    """An arrow from each reference tensor across to ours; lm_head, which takes wte's tensor, gets the tie."""
    line_of = {line.row["ours"]: line for line in lines if line.row is not None}
    arrows = []
    for line in lines:
        if line.folded is not None:
            arrows.append(_folded_arrow(start, end, y[id(line)], line.folded))
        elif line.row is not None and line.row["reference"] != line.row["ours"]:
            arrows.append(_tie(tie_x, y[id(line_of[line.row["reference"]])], y[id(line)], line.row))
        elif line.row is not None:
            arrows.append(_arrow(start, end, y[id(line)], line.row))
    return arrows


def _title(x: float, title: str, layout: str) -> list[str]:
    return [_text(x, TOP - 38, title, "title"), _text(x, TOP - 20, layout, "layout")]


def _label(line: Line, types: dict, blocks: int, ours: bool) -> tuple[str, str]:
    """(the module's name and class, or the tensor's name; the tensor's shape) on one side of a line."""
    if line.folded is not None:
        others = "h.1" if blocks == 2 else f"h.1 … h.{blocks - 1}"
        return f"{others}: {blocks - 1} × {types.get('transformer.h.1', '')}", f"{len(line.folded)} tensors, folded"
    if line.tensor is None:
        return f"{line.path[-1] if line.path else 'model'}: {types.get('.'.join(line.path), '')}", ""
    row = line.row
    if not ours and row["reference"] != row["ours"]:  # transformers ties too: its lm_head has no tensor of its own
        return line.tensor, f"= {row['reference'].removeprefix('transformer.')}"
    return line.tensor, str(row["our_shape"] if ours else row["reference_shape"])


def _text(x: float, y: int, text: str, css: str = "") -> str:
    return f"<text x='{x:.0f}' y='{y}' class='{css}'>{escape(text)}</text>" if text else ""


def _tooltip(row: dict) -> str:
    problem = f" — {row['problem']}" if row["problem"] else ""
    return escape(f"{row['reference']} {row['reference_shape']} → {row['ours']} {row['our_shape']}: "
                  f"{row['op']}{problem}")


def _arrow(x1: float, x2: float, y: int, row: dict) -> str:
    """One tensor's arrow, straight across, labelled with what the load does."""
    kind = "bug" if _wrong(row) else row["op"]
    label = "✗ refused" if row["problem"] else ARROW_LABELS.get(row["op"], row["op"])
    dashed = " stroke-dasharray='6 3'" if row["problem"] else ""
    return (f"<g class='arrow {kind}' data-op='{escape(row['op'])}'><title>{_tooltip(row)}</title>"
            f"<path d='M{x1:.0f},{y - 4} L{x2:.0f},{y - 4}' stroke='{LINE_COLOURS[kind]}' stroke-width='2'{dashed} "
            f"fill='none' marker-end='url(#head-{kind})'/>{_op_text((x1 + x2) / 2, y - 9, label, kind)}</g>")


def _tie(x: float, y_wte: int, y_head: int, row: dict) -> str:
    """The tie, once: a bracket right of our tree, from lm_head's line to wte's (red if a bug unties it)."""
    kind = "bug" if _wrong(row) else "tied"
    label = "tied: one tensor" if kind == "tied" else ARROW_LABELS.get(row["op"], row["op"]) + ": untied"
    bend = x + TIE_MARGIN * 0.45
    dashed = "" if kind == "tied" else " stroke-dasharray='6 3'"
    return (f"<g class='arrow {kind}' data-op='{escape(row['op'])}'><title>{_tooltip(row)}</title>"
            f"<path d='M{x:.0f},{y_head - 4} C{bend:.0f},{y_head - 4} {bend:.0f},{y_wte - 4} {x:.0f},{y_wte - 4}' "
            f"stroke='{LINE_COLOURS[kind]}' stroke-width='2' fill='none'{dashed} "
            f"marker-end='url(#head-{kind})'/>{_op_text(bend, (y_wte + y_head) / 2, label, kind, vertical=True)}</g>")


def _folded_arrow(x1: float, x2: float, y: int, rows: list[dict]) -> str:
    """The folded blocks' arrows as one: grey, or red with how many of them a bug changes."""
    changed = sum(_wrong(row) for row in rows)
    kind = "bug" if changed else "folded"
    label = f"{changed} of {len(rows)} changed" if changed else f"{len(rows)} arrows, as h.0"
    return (f"<g class='arrow {kind}'><path d='M{x1:.0f},{y - 4} L{x2:.0f},{y - 4}' stroke='{LINE_COLOURS[kind]}' "
            f"stroke-width='2' stroke-dasharray='2 3' fill='none' marker-end='url(#head-{kind})'/>"
            f"{_op_text((x1 + x2) / 2, y - 9, label, kind)}</g>")


def _op_text(x: float, y: float, label: str, kind: str, vertical: bool = False) -> str:
    turn = f" transform='rotate(90 {x:.0f} {y:.0f})'" if vertical else ""
    return (f"<text x='{x:.0f}' y='{y:.0f}' class='op'{turn} style='fill:{LINE_COLOURS[kind]}'>"
            f"{escape(label)}</text>")


def _markers() -> str:
    """One arrowhead per colour, of a fixed size."""
    return "<defs>" + "".join(
        f"<marker id='head-{kind}' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='9' markerHeight='9' "
        f"markerUnits='userSpaceOnUse' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='{colour}'/></marker>"
        for kind, colour in LINE_COLOURS.items()) + "</defs>"
