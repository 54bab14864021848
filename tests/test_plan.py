"""model/lesson/plan.py: the mapping table a load would walk, marked as the real loader will treat each row."""
import pytest

from model.lesson.plan import load_plan
from model.loading.mapping import WeightMismatchError, load_gpt, mapping_for
from model.loading.mistakes import DEMONSTRATIONS, MISTAKES


def test_the_correct_plan_is_the_mapping_table_with_nothing_to_refuse(tiny_reference, tiny_ours):
    plan = load_plan(tiny_reference)
    assert [{k: v for k, v in row.items() if k != "problem"} for row in plan] == \
        [row.to_dict() for row in mapping_for(tiny_ours, tiny_reference)]
    assert all(row["problem"] is None and not row["bug"] for row in plan)


@pytest.mark.parametrize("bug", [name for name in DEMONSTRATIONS if MISTAKES[name].refused])
def test_the_rows_a_loud_bug_marks_are_those_the_loader_refuses(tiny_reference, bug):
    with pytest.raises(WeightMismatchError) as refusal:
        load_gpt(tiny_reference, MISTAKES[bug])
    plan = load_plan(tiny_reference, MISTAKES[bug])
    assert [row["ours"] for row in plan if row["problem"]] == refusal.value.keys
    assert [row["problem"] for row in plan if row["problem"]] == refusal.value.mismatches


@pytest.mark.parametrize("bug", [name for name in DEMONSTRATIONS if not MISTAKES[name].refused])
def test_a_silent_bug_changes_rows_that_all_load(tiny_reference, tiny_ours, bug):
    mistake = MISTAKES[bug]
    load_gpt(tiny_reference, mistake)  # loads without a complaint
    plan = load_plan(tiny_reference, mistake)
    changed = [row.name for row in mapping_for(tiny_ours, tiny_reference, mistake) if row.bug]
    assert [row["ours"] for row in plan if row["bug"]] == changed
    assert bool(changed) is (mistake.kind == "load")  # an architecture mistake's weights are all right
    assert all(row["problem"] is None for row in plan)
