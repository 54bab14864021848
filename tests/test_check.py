"""Check your own GPT: the zoo of student GPTs (tests/students/) judged through `python -m model.check`, a
notebook and `check()`: every layout verified without a mapping written, every mistake named first."""
import json
import sys

import pytest
import torch

from model import check as check_cli
from model.check import check
from model.loading.reference import load_reference
from model.proof.diagnosis import fingerprint
from model.proof.structure import map_by_structure
from tests.checkpoints import ZOO
from tests.students.zoo import HERE, LAYOUTS, MISTAKES_AS_CODE, source, write_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_check(capsys, path, zoo_dir, *args) -> tuple[int, dict | str, str]:
    """`python -m model.check PATH --model ZOO --json ...` in this process: (exit status, report, stderr)."""
    code = check_cli.main([str(path), "--model", str(zoo_dir), "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else out, err


def named(report: dict) -> list[str]:
    """The ids of the mistakes named, the root cause first (notes left out)."""
    return [diagnosis["id"] for diagnosis in report["diagnoses"] if not diagnosis["note"]]


def zoo_model(layout: str, mistake: str | None = None, **shape):
    """A zoo student's model built in this process, as a student builds it in a notebook."""
    namespace = {"__name__": f"zoo_{layout}"}
    exec(compile(source(layout, mistake), f"{layout}.py", "exec"), namespace)
    sys.modules[namespace["__name__"]] = type(sys)(namespace["__name__"])
    sys.modules[namespace["__name__"]].__dict__.update(namespace)
    if layout == "nanogpt":
        return namespace, namespace["GPT"](namespace["GPTConfig"](block_size=64, vocab_size=50257, n_layer=2, n_head=4,
                                                                   n_embd=64))
    return namespace, namespace["GPTModel"]({**namespace["GPT_CONFIG_124M"], "context_length": 64, "emb_dim": 64,
                                             "n_heads": 4, "n_layers": 2, "drop_rate": 0.0, "qkv_bias": True})


# --- every layout, correct: verified without a mapping written ---------------------------------------

# Each layout loaded by the check, and those with a loader of their own by it too.
LOADS = [(layout, None) for layout in LAYOUTS] + [(layout, loader) for layout, loader in LAYOUTS.items() if loader]


@pytest.mark.parametrize("layout, loader", LOADS, ids=[f"{layout}-{loader or 'the check'}" for layout, loader in LOADS])
def test_every_layout_is_verified_with_the_mapping_found_from_its_structure(capsys, zoo_dir, tmp_path, layout, loader):
    path, _ = write_student(tmp_path, layout)
    code, report, err = run_check(capsys, path, zoo_dir, *(["--loader", loader] if loader else []))
    assert (code, report["verified"], named(report)) == (0, True, []), err
    assert report["max_abs_logit_diff"] < report["tolerance"]["atol"]
    assert report["greedy_tokens_agree"] == report["greedy_tokens"] == 32
    assert all(component["ok"] is not False for component in report["components"])
    assert report["text"]["student"] == report["text"]["reference"]


EXPECTED_OPS = {  # what each layout's mapping holds: found by name, or by structure, and how each loads
    "nanogpt": ({"name"}, {"copy", "transpose", "tied"}),
    "scratch_book": ({"structure"}, {"copy", "transpose", "split"}),
    "lecture": ({"name", "structure"}, {"copy", "transpose", "split"}),  # its ln_f is GPT-2's ln_f
    "torch_modules": ({"structure"}, {"copy", "transpose"}),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_mapping_says_what_was_found_by_name_and_what_by_structure(capsys, zoo_dir, tmp_path, layout):
    path, _ = write_student(tmp_path, layout)
    _, report, _ = run_check(capsys, path, zoo_dir)
    by = {row["by"] for row in report["mapping"] if row["reference"] != "transformer.wte.weight"}
    assert (by, {row["op"] for row in report["mapping"]}) == EXPECTED_OPS[layout]
    reference_keys = [key for key, _ in report["keys"]["reference"]]
    assert {row["reference"] for row in report["mapping"]} <= set(reference_keys)
    assert [row["student"] for row in report["mapping"]] == [key for key, _ in report["keys"]["student"]]


def test_query_key_and_value_per_head_are_splits_of_c_attn(zoo_reference):
    _, model = zoo_model("scratch_book")
    rows = {row.name: row for row in map_by_structure(model, zoo_reference).rows}
    d = ZOO["n_embd"]
    assert rows["trf_blocks.1.att.W_key.weight"].columns == (d, 2 * d)
    assert rows["trf_blocks.1.att.W_value.bias"].columns == (2 * d, 3 * d)
    namespace = {"__name__": "zoo_lecture_heads"}
    exec(compile(source("lecture"), "lecture.py", "exec"), namespace)
    namespace.update(n_embd=d, n_head=ZOO["n_head"], n_layer=ZOO["n_layer"], block_size=ZOO["n_positions"])
    rows = {row.name: row for row in map_by_structure(namespace["GPTLanguageModel"](), zoo_reference).rows}
    head_size = d // ZOO["n_head"]
    assert rows["blocks.0.sa.heads.2.value.weight"].columns == (2 * d + 2 * head_size, 2 * d + 3 * head_size)
    assert rows["blocks.0.sa.heads.0.query.weight"].columns == (0, head_size)


def test_the_report_prints_both_key_lists_side_by_side_and_every_check(capsys, zoo_dir, tmp_path):
    path, _ = write_student(tmp_path, "scratch_book")
    assert check_cli.main([str(path), "--model", str(zoo_dir)]) == 0
    out, err = capsys.readouterr()
    assert "tok_emb.weight [50257, 64]" in out and "transformer.wte.weight [50257, 64]" in out
    assert "trf_blocks.0–1.att.W_query.weight" in out and "← split [0:64]" in out
    assert "OK  h.0–1.attn" in out and out.rstrip().endswith("VERIFIED: your GPT computes GPT-2's function")
    assert "note  not_tied" in out  # a copy of wte in its own out_head: the same function, twice the memory
    assert err.count("checking: ") >= 6  # a line of progress for every stage


# --- every mistake, named first --------------------------------------------------------------------

@pytest.mark.slow  # the whole zoo: the fast subset names a few of them below
@pytest.mark.parametrize("layout, mistake", MISTAKES_AS_CODE, ids=[f"{l}-{m}" for l, m in MISTAKES_AS_CODE])
def test_every_mistake_is_named_first_by_its_id(capsys, zoo_dir, tmp_path, layout, mistake):
    path, loader = write_student(tmp_path, layout, mistake)
    code, report, err = run_check(capsys, path, zoo_dir, *(["--loader", loader] if loader else []))
    assert code == 1 and not report["verified"], err
    first = next(diagnosis for diagnosis in report["diagnoses"] if not diagnosis["note"])
    assert first["id"] == mistake, report["diagnoses"]
    evidence = first["evidence"]
    if "max_abs_diff_to_variant" in evidence:  # the mistake's own computation reproduces theirs, within noise
        assert evidence["max_abs_diff_to_variant"] < report["tolerance"]["atol"] < evidence["max_abs_diff_to_gpt2"]


def test_a_mistake_is_named_where_it_is_in_the_students_own_names(capsys, zoo_dir, tmp_path):
    path, _ = write_student(tmp_path, "scratch_book", "exact_gelu")
    _, report, _ = run_check(capsys, path, zoo_dir)
    assert report["diagnoses"][0]["where"] == ["trf_blocks.0.ff.layers", "trf_blocks.1.ff.layers"]
    path, loader = write_student(tmp_path, "scratch_book", "not_transposed")
    _, report, _ = run_check(capsys, path, zoo_dir, "--loader", loader)
    assert report["diagnoses"][0]["where"] == ["trf_blocks.0.att.out_proj.weight", "trf_blocks.1.att.out_proj.weight"]
    assert "(in, out)" in report["diagnoses"][0]["evidence"]["holds"]


def test_a_forms_mistake_says_which_form(capsys, zoo_dir, tmp_path):
    path, _ = write_student(tmp_path, "lecture", "attention_scale")
    _, report, _ = run_check(capsys, path, zoo_dir)
    assert report["diagnoses"][0]["evidence"]["form"] == "divided by √n_embd"  # C ** -0.5, C the width


def test_what_cannot_hold_gpt2_is_said_per_parameter(capsys, zoo_dir, tmp_path):
    path, _ = write_student(tmp_path, "scratch_book")
    small = '{**GPT_CONFIG_124M, "context_length": 64, "emb_dim": 64, "n_heads": 4, "n_layers": 2}'
    code, report, _ = run_check(capsys, path, zoo_dir, "--build", f"GPTModel({small})")  # its own qkv_bias=False
    assert code == 1 and named(report) == ["cannot_hold"]
    assert report["problems"] == [f"trf_blocks.{i}: key/query/value have no bias: GPT-2's c_attn has 192 bias values "
                                  f"per block — use bias=True" for i in range(2)]
    code, report, _ = run_check(capsys, path, zoo_dir, "--build", f"GPTModel({{**{small}, 'qkv_bias': True, "
                                                                  f"'context_length': 32}})")
    assert code == 1 and report["problems"] == ["pos_emb.weight: [32, 64] cannot hold GPT-2's transformer.wpe.weight "
                                                "[64, 64]: build it with a context of 64 positions (block_size, "
                                                "context_length)"]


# --- a notebook --------------------------------------------------------------------------------------

def test_a_notebook_runs_only_what_defines_things_and_its_loader_is_audited(capsys, zoo_dir):
    code, report, _ = run_check(capsys, HERE / "lesson.ipynb", zoo_dir, "--loader", "load_weights_into_gpt")
    assert (code, report["verified"]) == (0, True)
    why = {item["code"]: item["why"] for item in report["skipped"]}
    assert why["!pip install tiktoken transformers"] == "a shell command"
    assert why["for step in range(100):"] == "trains"
    assert why['gpt_hf = GPT2LMHeadModel.from_pretrained("gpt2")'] == "downloads"
    assert why["print(NEW_CONFIG)"] == "prints"
    assert why["model = GPTModel(NEW_CONFIG)"].startswith("it runs code")
    assert all(row["values_equal"] for row in report["mapping"])  # every tensor their loader put in place


def test_a_notebooks_mistake_is_named(capsys, zoo_dir, tmp_path):
    notebook = json.loads((HERE / "lesson.ipynb").read_text())
    for cell in notebook["cells"]:
        cell["source"] = [line.replace("            GELU(),", "            nn.GELU(),") for line in cell["source"]]
    (tmp_path / "lesson.ipynb").write_text(json.dumps(notebook))
    code, report, _ = run_check(capsys, tmp_path / "lesson.ipynb", zoo_dir, "--loader", "load_weights_into_gpt")
    assert code == 1 and named(report)[0] == "exact_gelu"


# --- check() in a notebook -------------------------------------------------------------------------

def test_check_in_a_notebook_names_the_mistake_and_shows_as_html(zoo_dir):
    _, model = zoo_model("nanogpt", "exact_gelu")
    report = check(model, reference=str(zoo_dir), progress=lambda line: None)
    assert not report.verified and report.to_dict()["diagnoses"][0]["id"] == "exact_gelu"
    assert "NOT OK  exact_gelu" in str(report) and "NOT VERIFIED" in report._repr_html_()


def test_with_their_loader_nothing_of_theirs_is_changed_by_the_check(zoo_reference):
    namespace, model = zoo_model("scratch_book")
    model.train()
    report = check(model, reference=zoo_reference, loader=namespace["load_weights_into_gpt"], progress=lambda _: None)
    assert report.verified
    loaded = {name: fingerprint(p) for name, p in model.named_parameters()}
    check(model, reference=zoo_reference, loader=lambda model, reference: None, progress=lambda _: None)
    assert model.training  # their model's mode is given back
    assert all(torch.equal(fingerprint(p), loaded[name]) for name, p in model.named_parameters())


def test_loading_through_the_mapping_leaves_the_reference_as_it_was(zoo_reference):
    before = {name: fingerprint(t) for name, t in zoo_reference.state_dict().items()}
    _, model = zoo_model("scratch_book")
    assert check(model, reference=zoo_reference, progress=lambda _: None).verified
    assert all(torch.equal(fingerprint(t), before[name]) for name, t in zoo_reference.state_dict().items())


def test_a_loader_that_changes_gpt2_itself_cannot_be_checked(zoo_reference):
    namespace, model = zoo_model("scratch_book")

    def transposes_in_place(model, sd):
        square = sd["transformer.h.0.attn.c_proj.weight"]
        square.copy_(square.t().clone())  # a student's shortcut: it rewrites GPT-2's own memory

    with pytest.raises(ValueError, match="changed GPT-2's own tensors"):
        check(model, reference=load_reference(str(zoo_reference.name_or_path), "cpu"), loader=transposes_in_place,
              progress=lambda _: None)


# --- what cannot be checked: exit 2, one line --------------------------------------------------------

BAD_FILES = {
    "syntax-error": ("class GPT(nn.Module)\n    pass\n", "line 1: expected ':'"),
    "no-model-class": ("import torch\nx = 1\n", "no single model class found"),
    "forward-raises": (source("lecture").replace("x = self.ln_f(x)", "x = self.ln_f(x) + undefined_name"),
                       "your forward raised NameError: name 'undefined_name' is not defined"),
    "wrong-size": (source("lecture").replace("for _ in range(n_layer)", "for _ in range(n_layer + 1)"),
                   "the model has 3 blocks (blocks), the reference 2: build it with n_layer=2"),
    "file-does-not-run": ("import torch\nraise RuntimeError('needs a GPU')\n", "does not run: RuntimeError: needs a GPU"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_cannot_be_checked_exits_2_with_one_line(capsys, zoo_dir, tmp_path, name):
    text, says = BAD_FILES[name]
    (tmp_path / "mine.py").write_text(text)
    code, out, err = run_check(capsys, tmp_path / "mine.py", zoo_dir)
    lines = [line for line in err.splitlines() if not line.startswith(("checking: ", "Loading weights"))]
    assert (code, out) == (2, "") and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err


def test_an_unknown_loader_names_the_functions_there_are(capsys, zoo_dir, tmp_path):
    path, _ = write_student(tmp_path, "scratch_book")
    code, _, err = run_check(capsys, path, zoo_dir, "--loader", "load_weights")
    assert code == 2 and "no function 'load_weights' in scratch_book.py: its functions are assign, load_weights_into_gpt" in err


@pytest.mark.slow
def test_a_gpt2_sized_student_is_checked(capsys, gpt2_dir, tmp_path):
    """The size a class checks (time and memory: python -m tests.benchmarks.check)."""
    path, loader = write_student(tmp_path, "scratch_book")
    code, report, _ = run_check(capsys, path, gpt2_dir, "--loader", loader)
    assert code == 0 and report["verified"] and len(report["keys"]["reference"]) == 149
