"""Loading the reference, the mapping table, and the loader that walks it."""
import time

import pytest
import torch
from huggingface_hub import constants
from transformers.pytorch_utils import Conv1D

from model.loading.mapping import WeightMismatchError, load_gpt, named_table
from model.loading.mistakes import MISTAKES
from model.loading.reference import ModelLoadError, load_reference, resolve_device
from tests.checkpoints import (
    GPT2_PARAMETERS,
    missing,
    not_gpt2,
    pickle_only,
    truncated,
    without_config,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the reference -------------------------------------------------------------------------------

def test_reference_is_a_float32_gpt2_in_eval_mode_on_the_device_asked_for(tiny_reference):
    assert not tiny_reference.training
    assert {(p.dtype, p.device.type, p.requires_grad) for p in tiny_reference.parameters()} == {
        (torch.float32, "cpu", False)}


@pytest.mark.parametrize("cuda, mps, picked", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, picked):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto").type == picked


def test_unknown_device_is_refused():
    with pytest.raises(ModelLoadError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.parametrize("make, says", [
    (without_config, "has no config.json"),
    (pickle_only, "--allow-pickle"),
    (truncated, "truncated or damaged"),
    (not_gpt2, "is a 'bert' checkpoint, not GPT-2"),
    (missing, "no folder at"),
], ids=lambda value: getattr(value, "__name__", None))
def test_a_folder_that_cannot_be_loaded_gives_one_clear_line(tiny_dir, tmp_path, make, says):
    with pytest.raises(ModelLoadError, match=says) as refused:
        load_reference(str(make(tiny_dir, tmp_path)), "cpu")
    assert "\n" not in str(refused.value)
    assert refused.value.__cause__ is None  # and no "During handling ... another exception" wall:
    assert refused.value.__context__ is None or refused.value.__suppress_context__


def test_pickle_checkpoint_loads_when_allowed(tiny_dir, tiny_reference, tmp_path):
    reference = load_reference(str(pickle_only(tiny_dir, tmp_path)), "cpu", allow_pickle=True)
    assert all(torch.equal(tensor, tiny_reference.state_dict()[name]) for name, tensor in reference.state_dict().items())


def test_hub_id_without_network_or_cache_fails_fast_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="no network and no cached copy") as refused:
        load_reference("gpt2", "cpu")
    assert time.monotonic() - start < 15  # not the hub's half-minute of retries
    assert "save_pretrained" in str(refused.value) and "\n" not in str(refused.value)


# --- the mapping table ---------------------------------------------------------------------------

def test_mapping_has_one_row_per_parameter_name_of_ours(tiny_ours, tiny_reference):
    rows = named_table(tiny_ours, tiny_reference)
    assert [row.name for row in rows] == list(tiny_ours.state_dict())
    assert {row.reference for row in rows} <= tiny_reference.state_dict().keys()


def test_mapping_shapes_are_the_two_tensors_shapes(tiny_ours, tiny_reference):
    ours, theirs = tiny_ours.state_dict(), tiny_reference.state_dict()
    for row in named_table(tiny_ours, tiny_reference):
        assert (row.shape, row.reference_shape) == (tuple(ours[row.name].shape), tuple(theirs[row.reference].shape))


def test_mapping_transposes_exactly_the_conv1d_weights_and_ties_lm_head(tiny_ours, tiny_reference):
    conv1d = {f"{name}.weight" for name, m in tiny_reference.named_modules() if isinstance(m, Conv1D)}
    rows = named_table(tiny_ours, tiny_reference)
    assert {row.name for row in rows if row.op == "transpose"} == conv1d
    tied = [(row.name, row.reference) for row in rows if row.op == "tied"]
    assert tied == [("lm_head.weight", "transformer.wte.weight")]
    assert {row.op for row in rows} == {"copy", "transpose", "tied"}


def test_every_loaded_parameter_is_its_reference_tensor_after_the_rows_operation(tiny_ours, tiny_reference):
    ours, theirs = tiny_ours.state_dict(), tiny_reference.state_dict()
    for row in named_table(tiny_ours, tiny_reference):
        expected = theirs[row.reference].t() if row.op == "transpose" else theirs[row.reference]
        assert torch.equal(ours[row.name], expected), row.name


def test_loading_shares_the_references_memory_instead_of_copying(tiny_ours, tiny_reference):
    ours, theirs = tiny_ours.state_dict(), tiny_reference.state_dict()
    for row in named_table(tiny_ours, tiny_reference):
        assert ours[row.name].data_ptr() == theirs[row.reference].data_ptr(), row.name


def test_full_size_parameter_counts_are_gpt2s(gpt2_ours, gpt2_reference):
    assert gpt2_ours.num_parameters() == sum(p.numel() for p in gpt2_reference.parameters()) == GPT2_PARAMETERS


def test_full_size_lm_head_is_wte_after_loading(gpt2_ours):
    assert gpt2_ours.lm_head.weight is gpt2_ours.transformer.wte.weight


def test_a_misfit_is_refused_before_anything_loads_naming_key_and_both_shapes(tiny_reference):
    n_embd = tiny_reference.config.n_embd
    with pytest.raises(WeightMismatchError) as refused:
        load_gpt(tiny_reference, MISTAKES["cannot_hold"])
    first = refused.value.mismatches[0]
    assert refused.value.keys[0] == "transformer.h.0.mlp.c_fc.weight"
    assert first.startswith("shape mismatch at transformer.h.0.mlp.c_fc.weight")
    assert f"ours [{4 * n_embd + 1}, {n_embd}], reference [{n_embd}, {4 * n_embd}]" in first
    assert first in str(refused.value)
