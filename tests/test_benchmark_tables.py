"""The benchmark's tables in tests/benchmarks/README.md are the committed run's JSON, rendered."""
import json

import pytest

from tests.benchmarks.tables import BEGIN, END, README, ROOT, main, render, with_tables

RESULTS = ROOT / "tests/benchmarks/results/speed-cpu.json"


def test_the_readme_tables_are_rendered_from_the_committed_run():
    readme = README.read_text()
    expected = with_tables(readme, render(json.loads(RESULTS.read_text()), "tests/benchmarks/results/speed-cpu.json"))
    assert readme == expected, "tests/benchmarks/README.md's tables were edited by hand, or the JSON changed: run " \
                               "python -m tests.benchmarks.tables tests/benchmarks/results/speed-cpu.json"


def test_rewriting_the_tables_leaves_the_rest_of_the_file_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Before\n\n{BEGIN}\nstale tables\n{END}\n\n## After\n")
    assert main([str(RESULTS), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# Before\n\n{BEGIN}\n") and text.endswith(f"{END}\n\n## After\n")
    assert "stale tables" not in text and "| float32 | ours | transformers |" in text


def test_a_file_without_the_markers_is_an_error_that_names_them(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# No markers here\n")
    assert main([str(RESULTS), "--readme", str(readme)]) == 2
    assert BEGIN in capsys.readouterr().err
    assert readme.read_text() == "# No markers here\n"


@pytest.mark.parametrize("content", ["not json", "{}"], ids=["not JSON", "not the benchmark's"])
def test_a_json_that_is_not_a_benchmark_run_is_an_error(tmp_path, capsys, content):
    results = tmp_path / "speed.json"
    results.write_text(content)
    assert main([str(results), "--readme", str(tmp_path / "README.md")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
