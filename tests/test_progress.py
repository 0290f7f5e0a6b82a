"""progress_bar: a text bar on a terminal, a widget and no stderr in Jupyter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from nbval.plugin import get_sanitize_patterns

from shared.progress import ProgressBar, in_jupyter, progress_bar

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


# --- on a terminal (pytest is one) ----------------------------------------

def test_pytest_is_not_jupyter():
    assert not in_jupyter()


def test_an_enabled_bar_is_drawn_on_stderr(capsys):
    with progress_bar(3, "jobs", "job") as bar:
        for _ in range(3):
            bar.update()

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "jobs" in captured.err and "3/3" in captured.err and "job/s" in captured.err
    assert bar.n == 3


@pytest.mark.parametrize(("total", "enabled"), [(3, False), (3, None), (0, True)])
def test_disabled_short_or_empty_bars_print_nothing(capsys, total, enabled):
    with progress_bar(total, "quiet", "job", enabled=enabled) as bar:
        bar.update(total)

    assert capsys.readouterr() == ("", "")
    assert bar.n == total  # it still counts


def test_a_delayed_bar_appears_once_the_work_takes_long(capsys, monkeypatch):
    monkeypatch.setattr("shared.progress.DELAY_SECONDS", 0.0)
    with progress_bar(2, "slow", "job", enabled=None) as bar:
        bar.update(2)

    assert "2/2" in capsys.readouterr().err


@pytest.mark.parametrize(("total", "enabled", "complaint"), [
    (-1, True, "total must be"), (2.5, True, "total must be"),
    (3, "yes", "enabled must be"),
])
def test_bad_arguments_are_refused(total, enabled, complaint):
    with pytest.raises(ValueError, match=complaint):
        ProgressBar(total, "bad", enabled=enabled)


# --- inside a real Jupyter kernel -------------------------------------------

NOTEBOOK_CELLS = [
    """\
import time
from flask import Flask
import shared.progress
from shared.load import run_load
from shared.progress import progress_bar
from shared.web import BackgroundServer

app = Flask("tiny")
app.add_url_rule("/", "ok", lambda: "ok", methods=["POST"])
server = BackgroundServer(app).start()""",
    """\
result = run_load(server.url + "/", n=8, concurrency=2, label="tiny", progress=True)
print(result.summary().count, "answers")""",
    """\
with progress_bar(4, "quick", "job", enabled=None) as bar:  # done before the delay
    bar.update(4)""",
    """\
shared.progress.DELAY_SECONDS = 0.2
with progress_bar(5, "slow", "job", enabled=None) as bar:  # outlasts the delay
    for _ in range(5):
        time.sleep(0.1)
        bar.update()""",
    """\
with progress_bar(3, "cut short", "job") as bar:
    bar.update(1)
server.stop()""",
]


def sanitize(text: str) -> str:
    """What nbval does to each output with tests/nbval_sanitize.cfg."""
    for regex, replace in get_sanitize_patterns(SANITIZE.read_text()):
        text = re.sub(regex, replace, text)
    return text


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook above, run by nbclient as `make notebooks` does, and saved."""
    notebook = new_notebook(cells=[new_code_cell(source) for source in NOTEBOOK_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    NotebookClient(notebook, kernel_name="python3", timeout=60,
                   record_timing=False).execute()
    path = tmp_path_factory.mktemp("progress") / "progress.ipynb"
    nbformat.write(notebook, path)
    return path, notebook


def widget_outputs(cell) -> list[dict]:
    return [output for output in cell.outputs if WIDGET in output.get("data", {})]


def widget_models(notebook, output) -> dict[str, dict]:
    """The bar's models by name (HBox, FloatProgress, its Layout), as saved."""
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    box = state[output["data"][WIDGET]["model_id"]]
    def model(reference: str) -> dict:
        return state[reference.removeprefix("IPY_MODEL_")]

    models = {"box": box["state"], "box_layout": model(box["state"]["layout"])["state"]}
    for child in box["state"]["children"]:
        child = model(child)
        if child["model_name"] == "FloatProgressModel":
            models["progress"] = child["state"]
    return models


@pytest.mark.timeout(120)
def test_a_notebook_gets_widget_bars_and_no_stderr(executed):
    _, notebook = executed

    streams = [output for cell in notebook.cells for output in cell.outputs
               if output.output_type == "stream"]
    assert [output.name for output in streams] == ["stdout"]
    assert streams[0].text == "8 answers\n"
    assert [len(widget_outputs(cell)) for cell in notebook.cells] == [0, 1, 1, 1, 1]


@pytest.mark.timeout(120)
def test_each_bar_stores_its_starting_line_which_sanitizes_to_a_constant(executed):
    _, notebook = executed

    texts = [sanitize(output["data"]["text/plain"])
             for cell in notebook.cells for output in widget_outputs(cell)]
    assert texts == [
        "tiny: PERCENT|          | 0/8 [ELAPSED]",
        "quick: PERCENT|          | 0/4 [ELAPSED]",
        "slow: PERCENT|          | 0/5 [ELAPSED]",
        "cut short: PERCENT|          | 0/3 [ELAPSED]",
    ]


@pytest.mark.timeout(120)
def test_bars_end_green_or_red_and_short_work_stays_hidden(executed):
    _, notebook = executed
    tiny, quick, slow, cut = (widget_models(notebook, widget_outputs(cell)[0])
                              for cell in notebook.cells[1:])

    assert (tiny["progress"]["value"], tiny["progress"]["bar_style"]) == (8, "success")
    assert slow["progress"]["value"] == 5
    assert (cut["progress"]["value"], cut["progress"]["bar_style"]) == (1, "danger")
    assert quick["box_layout"]["display"] == "none"  # finished within the delay
    assert slow["box_layout"].get("display") is None  # shown once the delay passed
    assert tiny["box_layout"].get("display") is None


@pytest.mark.timeout(120)
def test_nbval_strict_mode_accepts_a_rerun_of_the_stored_notebook(executed):
    path, _ = executed
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
         "--nbval-cell-timeout", "60", "--rootdir", str(path.parent), str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=110)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout
    assert "unhandled iopub msg" not in run.stdout
