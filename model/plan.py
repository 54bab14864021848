"""The mapping table a load would walk, looked at before anything loads: what the mapping diagram draws.

A bug either changes what some rows do (they come back with bug=True and the wrong op) or changes
the architecture the weights go into (ffn_off_by_one: our MLP a unit wider), which no row shows
until its shapes are held against the reference's. So the plan is built over the architecture the
load would build, shapes only, and each row says why the loader would refuse it, if it would.
"""
import torch

from model.bugs import broken_config
from model.gpt import GPT, GPTConfig
from model.mapping import mapping_for, shape_problem


def load_plan(reference, bug: str | None = None) -> list[dict]:
    """Each row of the mapping table a load with `bug` walks, as a dict, with `problem`: why the shape
    check refuses it, or None where it loads (rightly, or, for a silent bug, wrongly)."""
    config = broken_config(GPTConfig.from_hf(reference.config), bug)
    with torch.device("meta"):  # shapes only: nothing is allocated, nothing loaded
        student = GPT(config)
    theirs = reference.state_dict()
    return [{**row.to_dict(), "problem": shape_problem(row, theirs)} for row in mapping_for(student, reference, bug)]
