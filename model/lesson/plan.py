"""The mapping table a load would walk, looked at before anything loads: what the mapping diagram draws.

A mistake either changes what some rows do (they come back with bug=True and the mistake's op) or
changes the architecture the weights go into (cannot_hold: our MLP a unit wider), which no row shows
until its shapes are held against the reference's. So the plan is built over the architecture the
load would build, shapes only, and each row says why the loader would refuse it, if it would.
"""
import torch

from model.gpt import GPT, GPTConfig
from model.loading.mapping import mapping_for, shape_problem


def load_plan(reference, mistake=None) -> list[dict]:
    """Each row of the mapping table a load with `mistake` (model/loading/mistakes.py) walks, as a dict, with
    `problem`: why the shape check refuses it, or None where it loads (rightly, or, for a silent mistake,
    wrongly)."""
    config = GPTConfig.from_hf(reference.config)
    if mistake is not None:
        config = mistake.config(config)
    with torch.device("meta"):  # shapes only: nothing is allocated, nothing loaded
        model = GPT(config)
    theirs = reference.state_dict()
    return [{**row.to_dict(), "problem": shape_problem(row, theirs)} for row in mapping_for(model, reference, mistake)]
