"""demo/diagram.py: the two module trees side by side, an arrow per tensor, drawn from the mapping table."""
import re
import xml.etree.ElementTree as ET

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from demo.diagram import LINE_COLOURS, diagram_html
from model.gpt import GPT, GPTConfig
from model.lesson.plan import load_plan
from model.loading.mistakes import MISTAKES
from tests.checkpoints import GPT2_SMALL, ODD

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module", params=[GPT2_SMALL, ODD], ids=["gpt2", "odd"])
def models(request):
    """A reference and our GPT of this shape, on the meta device: shapes and classes, no memory."""
    with torch.device("meta"):
        reference = GPT2LMHeadModel(GPT2Config(**request.param))
        ours = GPT(GPTConfig.from_hf(reference.config))
    return reference, ours


def draw(models, bug=None, reference_types=None) -> ET.Element:
    """The diagram for `bug`, parsed: it must be well-formed XML."""
    reference, ours = models
    types = reference_types or {name: type(m).__name__ for name, m in reference.named_modules()}
    our_types = {name: type(m).__name__ for name, m in ours.named_modules()}
    html = diagram_html(load_plan(reference, MISTAKES.get(bug)), types, our_types)
    return ET.fromstring(f"<div>{html}</div>")


def arrows(diagram: ET.Element) -> list[ET.Element]:
    return [g for g in diagram.iter(f"{SVG}g") if "arrow" in g.get("class", "").split()]


def texts(element: ET.Element) -> list[str]:
    return [text.text for text in element.iter(f"{SVG}text")]


def label(arrow: ET.Element) -> str:
    return arrow.find(f"{SVG}text").text


def test_one_arrow_per_tensor_of_block_0_and_outside_the_blocks_and_one_for_the_folded_blocks(models):
    reference, ours = models
    config = ours.config
    diagram = draw(models)
    shown = [name for name in ours.state_dict() if not re.match(r"transformer\.h\.[1-9]", name)]
    assert len(arrows(diagram)) == len(shown) + 1
    labels = [label(arrow) for arrow in arrows(diagram)]
    assert labels.count(".t()") == 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj of block 0
    assert labels.count("tied: one tensor") == 1  # the tie, drawn once
    assert labels.count(f"{12 * (config.n_layer - 1)} arrows, as h.0") == 1
    last = config.n_layer - 1
    assert {f"h.1 … h.{last}: {last} × GPT2Block", f"h.1 … h.{last}: {last} × Block"} <= set(texts(diagram))


def test_both_trees_show_each_tensor_in_their_own_layout(models):
    _, ours = models
    width, inner, vocab = ours.config.n_embd, ours.config.n_inner, ours.config.vocab_size
    shown = texts(draw(models))
    for ours_shape, theirs_shape in [([3 * width, width], [width, 3 * width]), ([inner, width], [width, inner])]:
        assert str(ours_shape) in shown and str(theirs_shape) in shown
    assert shown.count(str([vocab, width])) == 3  # the reference's wte, ours, and our lm_head (its is wte's)
    assert {"c_attn: Conv1D", "c_attn: Linear", "= wte.weight"} <= set(shown)


def test_a_silent_bug_turns_the_arrows_it_changes_red(models):
    layers = models[1].config.n_layer
    diagram = draw(models, "not_transposed")
    red = [arrow for arrow in arrows(diagram) if "bug" in arrow.get("class")]
    assert [label(arrow) for arrow in red] == ["copy", f"{layers - 1} of {12 * (layers - 1)} changed"]
    assert all(path.get("stroke") == LINE_COLOURS["bug"] for arrow in red for path in arrow.iter(f"{SVG}path"))
    assert "transformer.h.0.attn.c_proj.weight" in red[0].find(f"{SVG}title").text
    assert "what the bug changes ×" in "".join(diagram.itertext())


def test_a_bug_in_block_0_alone_leaves_the_folded_blocks_grey(models):
    red = [label(arrow) for arrow in arrows(draw(models, "scrambled")) if "bug" in arrow.get("class")]
    assert red == ["raw memory"]


def test_a_head_left_at_init_breaks_the_tie(models):
    labels = [label(arrow) for arrow in arrows(draw(models, "not_loaded"))]
    assert "left at init: untied" in labels and "tied: one tensor" not in labels


def test_a_refused_architecture_shows_which_shapes_do_not_fit(models):
    _, ours = models
    diagram = draw(models, "cannot_hold")
    refused = [arrow for arrow in arrows(diagram) if label(arrow) == "✗ refused"]
    assert len(refused) == 3  # block 0's c_fc weight and bias, and its mlp.c_proj weight
    assert str([ours.config.n_inner + 1, ours.config.n_embd]) in texts(diagram)


def test_names_are_escaped(models):
    reference, _ = models
    evil = {name: "<script>alert(1)</script>" for name, _ in reference.named_modules()}
    diagram = draw(models, reference_types=evil)  # parses: no element came from the names
    assert diagram.find(f".//{SVG}script") is None
    assert "c_attn: <script>alert(1)</script>" in texts(diagram)
