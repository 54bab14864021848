"""model/plan.py: the mapping table a load would walk, marked as the real loader will treat each row."""
import pytest

from model.bugs import BUGS
from model.gpt import GPT
from model.mapping import WeightMismatchError, mapping_for
from model.plan import load_plan


def test_the_correct_plan_is_the_mapping_table_with_nothing_to_refuse(tiny_reference, tiny_student):
    plan = load_plan(tiny_reference)
    assert [{k: v for k, v in row.items() if k != "problem"} for row in plan] == \
        [row.to_dict() for row in mapping_for(tiny_student, tiny_reference)]
    assert all(row["problem"] is None and not row["bug"] for row in plan)


@pytest.mark.parametrize("bug", [name for name, bug in BUGS.items() if not bug.silent])
def test_the_rows_a_loud_bug_marks_are_those_the_loader_refuses(tiny_reference, bug):
    with pytest.raises(WeightMismatchError) as refusal:
        GPT.from_hf(tiny_reference, bug)
    plan = load_plan(tiny_reference, bug)
    assert [row["ours"] for row in plan if row["problem"]] == refusal.value.keys
    assert [row["problem"] for row in plan if row["problem"]] == refusal.value.mismatches


@pytest.mark.parametrize("bug", [name for name, bug in BUGS.items() if bug.silent])
def test_a_silent_bug_changes_rows_that_all_load(tiny_reference, tiny_student, bug):
    GPT.from_hf(tiny_reference, bug)  # loads without a complaint
    plan = load_plan(tiny_reference, bug)
    changed = [row.ours for row in mapping_for(tiny_student, tiny_reference, bug) if row.bug]
    assert [row["ours"] for row in plan if row["bug"]] == changed
    assert bool(changed) is not BUGS[bug].near_miss  # exact_gelu's weights are all right: no row changes
    assert all(row["problem"] is None for row in plan)
