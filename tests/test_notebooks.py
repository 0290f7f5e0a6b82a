"""`make notebooks` re-executes notebooks in place, in their own folder."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from shared.notebooks import execute_in_place


def test_execute_in_place_stores_fresh_outputs_without_timing_metadata(tmp_path):
    (tmp_path / "data.txt").write_text("from the notebook's folder")
    notebook = new_notebook(cells=[
        new_code_cell("print(open('data.txt').read())"),
        new_code_cell("6 * 7"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    path = tmp_path / "demo.ipynb"
    nbformat.write(notebook, path)

    seconds = execute_in_place(path, timeout=60)

    ran = nbformat.read(path, as_version=4)
    first, second = ran.cells
    assert first.outputs[0]["text"] == "from the notebook's folder\n"
    assert second.outputs[0]["data"]["text/plain"] == "42"
    assert "execution" not in first.metadata  # no timestamps to churn diffs
    assert seconds > 0
