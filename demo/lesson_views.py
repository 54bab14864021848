"""What the lesson's own steps show: the shape quiz, the class's tally, the parameter anatomy, the losses.

Pure functions of what model/ computes (a Question and its Grade, the tally's counts, the
ParameterAnatomy and ParagraphLosses as dicts), so every view is testable without a server.
Every name and answer in them is escaped.
"""
from html import escape

from model.lesson.quiz import Grade, Question, answer_text

# What the page calls each tensor the quiz asks about (model.lesson.quiz.ASKED's roles).
QUESTION_LABELS = {
    "c_attn": "attention c_attn",
    "attn.c_proj": "attention c_proj",
    "c_fc": "MLP c_fc",
    "mlp.c_proj": "MLP c_proj",
    "lm_head": "token embedding / lm_head",
    "layernorm": "a LayerNorm",
}
# What the page calls each group of the anatomy, and its colour (model.lesson.anatomy's groups).
GROUP_LABELS = {
    "token_embedding": ("token embedding (wte = lm_head)", "#60a5fa"),
    "position_embedding": ("position embedding (wpe)", "#a78bfa"),
    "attention": ("attention", "#f59e0b"),
    "mlp": ("MLP", "#34d399"),
    "layernorms": ("LayerNorms", "#f472b6"),
}


# --- predict the shape ---------------------------------------------------------------------------

def question_html(question: Question) -> str:
    row = question.row
    return (f"<div class='quiz-question'><p>The reference's <code>{escape(row.reference)}</code> is "
            f"<b>{list(row.reference_shape)}</b>.</p>"
            f"<p>What shape is our <code>{escape(row.name)}</code>, and what does the load do?</p></div>")


def grade_html(grade: Grade) -> str:
    """✓ or ✗ for the shape and for the operation, the slip behind a wrong answer, then why."""
    verdict = "Right" if grade.right else "Not quite"
    marks = (f"{_mark(grade.shape_right)} shape {list(grade.shape)} · "
             f"{_mark(grade.op_right)} {escape(grade.op)}")
    hint = f"<p class='hint'>{escape(grade.hint)}</p>" if grade.hint else ""
    return (f"<div class='card {'pass' if grade.right else 'fail'}' role='status'><div class='big'>{verdict}: "
            f"{marks}</div>{hint}<p>{escape(grade.reason)}</p></div>")


def refusal_html(message: str) -> str:
    """An answer that could not be read: what to type instead."""
    return (f"<div class='card fail' role='status'><div class='big'>Cannot read that answer</div>"
            f"<p>{escape(message)}</p></div>")


def tally_html(question: Question, counts: dict[str, int]) -> str:
    """The class's answers to `question`: "19 of 27 said [2304, 768] transpose", then a bar per answer."""
    total = sum(counts.values())
    if not total:
        return "<div class='tally'><p class='muted'>No answers yet: the count starts with the first one.</p></div>"
    right = answer_text(question.row.shape, question.row.op)
    headline = f"<b>{counts.get(right, 0)} of {total}</b> said <b>{escape(right)}</b> (right)"
    bars = "".join(
        f"<div class='tally-row{' right' if answer == right else ''}'>"
        f"<span class='tally-answer'>{'✓ ' if answer == right else ''}{escape(answer)}</span>"
        f"<span class='tally-bar' style='width:{100 * count / total:.1f}%'></span>"
        f"<span class='tally-count'>{count}</span></div>" for answer, count in counts.items())
    return f"<div class='tally'><p class='tally-headline'>{headline}</p>{bars}</div>"


# --- parameter anatomy ---------------------------------------------------------------------------

def anatomy_html(anatomy: dict, model_name: str) -> str:
    """Where the parameters live (one bar split by group, then a table), and the three totals people quote."""
    groups, tied = anatomy["groups"], anatomy["tied"]
    shown = [(*GROUP_LABELS[group], count) for group, count in groups.items()]
    segments = "".join(f"<span style='width:{100 * count / tied:.2f}%;background:{colour}' "
                       f"title='{escape(label)}: {count:,}'></span>" for label, colour, count in shown)
    rows = "".join(f"<tr><td><span class='swatch' style='background:{colour}'></span>{escape(label)}</td>"
                   f"<td>{count:,}</td><td>{100 * count / tied:.1f}&nbsp;%</td></tr>" for label, colour, count in shown)
    wte, wpe = anatomy["token_embedding"], anatomy["position_embedding"]
    totals = [
        (tied, "every tensor once: wte and lm_head are one tensor. transformers' <code>num_parameters()</code> "
               "and the model card count this way."),
        (anatomy["untied"], f"= {tied:,} + {wte:,}: lm_head counted again, as a sum over the state dict's "
                            f"tensors does (<code>lm_head.weight</code> and <code>transformer.wte.weight</code> are "
                            f"two names there)."),
        (anatomy["without_embeddings"], f"= {tied:,} − {wte:,} (wte) − {wpe:,} (wpe): without the embeddings, "
                                        f"as scaling-law papers count (the embeddings are looked up, not computed)."),
    ]
    quoted = "".join(f"<li><b>{count:,}</b> ({_millions(count)}) {text}</li>" for count, text in totals)
    return (f"<div class='anatomy'><h3>Where {escape(model_name)}'s {tied:,} parameters live</h3>"
            f"<div class='anatomy-bar' role='img' aria-label='parameters by group'>{segments}</div>"
            f"<table><tr><th>group</th><th>parameters</th><th>share</th></tr>{rows}</table>"
            f"<h3>One model, three totals</h3><ul class='facts'>{quoted}</ul></div>")


def _millions(count: int) -> str:
    return f"{count / 1e6:,.0f}M" if count >= 1e6 else f"{count / 1e3:,.0f}k"


# --- the weights are the knowledge ---------------------------------------------------------------

def losses_html(losses: dict, random_weights_loaded: bool) -> str:
    """The three models' loss on the fixed paragraph, against a uniform guess; what it means."""
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{loss['cross_entropy']:.4f}</td><td>{_perplexity(loss['perplexity'])}</td></tr>"
        for label, loss in [("ours (the loaded weights)", losses["ours"]),
                            ("the reference (transformers)", losses["reference"]),
                            ("ours, random initialisation", losses["random_init"])])
    difference = abs(losses["ours"]["cross_entropy"] - losses["reference"]["cross_entropy"])
    tolerance = losses["tolerance"]
    equal = (f"{_mark(losses['ours_equals_reference'])} Ours and the reference differ by {difference:.2g}: "
             f"{'equal' if losses['ours_equals_reference'] else 'NOT equal'} within the tolerance "
             f"(atol {tolerance['atol']:g}, rtol {tolerance['rtol']:g}).")
    return (f"<div class='losses'><p>Mean cross-entropy on the paragraph's {losses['tokens']} tokens (each predicts "
            f"the next), and its perplexity, e<sup>loss</sup>:</p>"
            f"<table><tr><th>model</th><th>cross-entropy (nats)</th><th>perplexity</th></tr>{rows}"
            f"<tr class='muted'><td>a uniform guess: ln {losses['vocab_size']:,}</td>"
            f"<td>{losses['uniform_guess']:.4f}</td><td>{losses['vocab_size']:,}</td></tr></table><p>{equal}</p>"
            f"{_what_it_means(losses, random_weights_loaded)}</div>")


def _perplexity(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def _what_it_means(losses: dict, random_weights_loaded: bool) -> str:
    ours, random = losses["ours"], losses["random_init"]
    if random_weights_loaded:
        return ("<p class='offline-note'><b>Both are random here:</b> the app could not load the real weights, so "
                "ours and the reference carry random weights too, and all three sit near the uniform guess. Start "
                "the app with the real weights to see what they know.</p>")
    if ours["cross_entropy"] < random["cross_entropy"]:
        return (f"<p>With random weights the same class is about as unsure as a uniform guess, as if choosing among "
                f"{random['perplexity']:,.0f} tokens at each step; with the loaded weights, among "
                f"{_perplexity(ours['perplexity'])}. The architecture is the vessel, the weights are the knowledge.</p>")
    return ("<p>These weights predict this paragraph no better than random ones do: whatever they learned, it "
            "was not English like this.</p>")


def _mark(ok: bool) -> str:
    return f"<b class='{'pass' if ok else 'fail'}'>{'✓' if ok else '✗'}</b>"


# --- the class board -----------------------------------------------------------------------------

def board_html(counts: dict, summaries: dict[str, str]) -> str:
    """The class board for the projector: how many match GPT-2, then each mistake that holds the others back.

    counts: ClassBoard.counts(); summaries: each mistake's sentence, by id."""
    total = counts["total"]
    if not total:
        return "<div class='board'><p class='muted'>No GPT submitted yet: the board fills as students submit.</p></div>"
    judged = total - counts["other_weights"]
    rows = [("pass", f"<b>{counts['verified']}</b>", "match GPT-2: verified")]
    rows += [("near", f"<b>{n}</b>", f"near miss: <code>{escape(mistake)}</code> — {escape(summaries.get(mistake, ''))}")
             for mistake, n in counts["near_miss"].items()]
    rows += [("fail", f"<b>{n}</b>", f"<code>{escape(mistake)}</code> — {escape(summaries.get(mistake, ''))}")
             for mistake, n in counts["wrong"].items()]
    if counts["other_weights"]:
        rows.append(("muted", f"<b>{counts['other_weights']}</b>", "computed with other weights than this app's: "
                                                                   "counted apart, not judged"))
    lines = "".join(f"<div class='board-row {css}'><span class='board-count'>{count}</span>"
                    f"<span class='board-what'>{what}</span></div>" for css, count, what in rows)
    return (f"<div class='board'><p class='board-headline'><b>{counts['verified']} of {judged}</b> match GPT-2"
            f"{f' ({total} submitted)' if judged != total else ''}</p>{lines}</div>")


def board_snippet(url: str) -> str:
    """What a notebook with only gradio_client runs to submit its GPT to the board at `url`."""
    return f'''# Your GPT `model`, with GPT-2's weights in it, and `gpt_hf`, the GPT2LMHeadModel you loaded them from.
import uuid
import torch
from gradio_client import Client

board = Client("{url}")
question = board.predict(api_name="/board_question")
model.eval()
with torch.no_grad():
    out = model(torch.tensor([question["prompt_tokens"]]))  # nanoGPT: model(idx, targets=idx), for every position
logits = out[0] if isinstance(out, tuple) else getattr(out, "logits", out)
logits = logits[0][:, question["token_ids"]].tolist()  # every position, the entries the board asks for
weights = float(gpt_hf.transformer.wte.weight[:64, :64].double().sum())  # which weights you used
me = globals().setdefault("board_id", uuid.uuid4().hex)  # the same id each time: your latest submission counts
print(board.predict(me, logits, weights, api_name="/submit_logits")["message"])'''
