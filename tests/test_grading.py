"""The autograder: exercise format, generator, child-process isolation, check()."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from shared.grading import check, generate, registry, runner
from shared.grading.notebooks import grade_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "01_blocking_handlers.ipynb"


# -- helpers --------------------------------------------------------------------

def write_notebook(path: Path, *sources: str, markdown: str | None = "# A lesson") -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    cells = [new_markdown_cell(markdown)] if markdown else []
    nb.cells = cells + [new_code_cell(source) for source in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def solution(name: str) -> str:
    """The reference answer of exercise ``name``, from the solutions notebook."""
    nb = nbformat.read(SOLUTIONS, as_version=4)
    for cell in nb.cells:
        if cell.source.startswith(f"# Exercise: {name}\n"):
            return cell.source
    raise LookupError(name)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.grading", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def rows(stdout: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(notebook, exercise) -> (score, PASS/FAIL, reason) from the CLI's table."""
    table = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=4)
        if len(parts) >= 4 and parts[3] in ("PASS", "FAIL"):
            table[parts[0], parts[1]] = (parts[2], parts[3], parts[4] if len(parts) > 4 else "")
    return table


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc ("R", "S", "Z" for a zombie...), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def wait_for_state(pid: int, allowed: tuple[str | None, ...], within: float = 5.0) -> str | None:
    """Poll until ``pid`` is in one of the ``allowed`` states; return the last state seen."""
    deadline = time.monotonic() + within
    while (state := process_state(pid)) not in allowed and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


# -- the course's own notebooks ---------------------------------------------------

def course_exercises() -> dict[tuple[str, str], int]:
    """(notebook, exercise) -> points, for every lesson the registry grades."""
    expected = {}
    for prefix, module_name in registry.LESSONS.items():
        [notebook] = [p.stem for p in (ROOT / "solutions").glob(f"{prefix}*.ipynb")]
        for exercise in registry.exercises_of(module_name):
            expected[notebook, exercise.name] = exercise.points
    return expected


def test_solutions_get_full_score():
    done = run_cli("solutions", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = course_exercises()
    assert rows(done.stdout) == {key: (f"{points}/{points}", "PASS", "")
                                 for key, points in expected.items()}
    notebooks = len({notebook for notebook, _ in expected})
    assert done.stdout.splitlines()[0].startswith(f"Grading {notebooks} notebook")
    assert done.stdout.splitlines()[-1] == f"Score: {sum(expected.values())}/{sum(expected.values())}"


def test_generated_exercises_score_zero():
    done = run_cli("exercises", timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    table = rows(done.stdout)
    expected = course_exercises()
    assert set(table) == set(expected)
    for score, status, reason in table.values():
        assert (score[0], status, reason) == ("0", "FAIL", "not implemented yet")
    assert done.stdout.splitlines()[-1] == f"Score: 0/{sum(expected.values())}"
    text = (ROOT / "exercises" / "01_blocking_handlers.ipynb").read_text(encoding="utf-8")
    assert "SOLUTION" not in text and "MAX_CONTENT_LENGTH\"]" not in text


def test_committed_exercises_are_up_to_date():
    done = subprocess.run([sys.executable, "-m", "shared.grading.generate", "--check"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exercises/ is up to date" in done.stdout


def test_every_lesson_module_matches_its_prefix():
    names = []
    for prefix, module_name in registry.LESSONS.items():
        module = __import__(module_name, fromlist=["EXERCISES"])
        assert module.NOTEBOOK_PREFIX == prefix
        names += [exercise.name for exercise in module.EXERCISES]
    assert len(names) == len(set(names)), "check(name) needs names unique across lessons"


# -- isolation: every misbehaviour fails its own exercise only -------------------------

def test_misbehaving_cells_fail_alone(tmp_path):
    folder = tmp_path / "nbs"
    write_notebook(folder / "01_a.ipynb",
                   solution("percentile"),
                   "# Exercise: predict_latency\nwhile True:\n    pass\n",
                   "# Exercise: signup_validation\ndef create_signup_app(:\n    pass\n")
    write_notebook(folder / "01_b.ipynb",
                   "# Exercise: percentile\nimport sys\nsys.exit(3)\n",
                   "# Exercise: predict_latency\nimport os\nos._exit(7)\n",
                   solution("signup_validation"))
    flood = ("# Exercise: predict_latency\nimport os, sys\n"
             "for _ in range(20000):\n"
             "    print('PASS Score: 7/7 {\"passed\": true}')\n"
             "    print('2/2 PASS', file=sys.stderr)\n"
             "    os.write(1, b'{\"passed\": true, \"reason\": \"\"}\\n')\n"
             "def predict_latency(k, service_s, threads=1):\n"
             "    return k * service_s / threads\n")
    write_notebook(folder / "01_c.ipynb",
                   "# Exercise: percentile\nraise KeyboardInterrupt\n",
                   flood,
                   "# Exercise: signup_validation\ndef make_app():\n    pass\n")
    write_notebook(folder / "01_d.ipynb", solution("percentile"))
    (folder / "01_e.ipynb").write_text('{"cells": [,]}', encoding="utf-8")
    (folder / "README.ipynb").write_text("not graded", encoding="utf-8")

    started = time.monotonic()
    done = run_cli(str(folder), "--timeout", "2", timeout=60)
    elapsed = time.monotonic() - started

    assert elapsed < 30, f"grading took {elapsed:.1f} s"
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].endswith("timeout 2 s per exercise")
    table = rows(done.stdout)
    assert table["01_a", "percentile"] == ("2/2", "PASS", "")
    assert table["01_a", "predict_latency"] == ("0/2", "FAIL", "stopped after 2 s: does it loop forever?")
    assert table["01_a", "signup_validation"][2].startswith(
        "syntax error in 01_a.ipynb, cell 4, line 2: ")
    assert table["01_b", "percentile"][2] == "called sys.exit(3)"
    assert table["01_b", "predict_latency"][2] == "the process ended early (os._exit?) with exit code 7"
    assert table["01_b", "signup_validation"] == ("3/3", "PASS", "")
    assert table["01_c", "percentile"][2] == "raised KeyboardInterrupt"
    assert table["01_c", "predict_latency"][2] == (
        "predict_latency(1, 0.5, threads=2) returned 0.25, expected 0.5 "
        "(request 1 waits for ceil(1 / 2) = 1 round of 0.5 s)")
    assert table["01_c", "signup_validation"][2] == (
        "create_signup_app is not defined — did you rename it?")
    assert table["01_d", "percentile"] == ("2/2", "PASS", "")
    assert table["01_d", "predict_latency"][2] == (
        "no cell starting with `# Exercise: predict_latency` in 01_d.ipynb")
    for name in ("percentile", "predict_latency", "signup_validation"):
        assert table["01_e", name][2].startswith("01_e.ipynb is not valid JSON (line 1, column 12")
    assert len(table) == 15
    assert done.stdout.splitlines()[-1] == "Score: 7/35"


def test_odd_notebooks_fail_every_exercise_with_the_reason(tmp_path):
    not_a_notebook = tmp_path / "01_list.ipynb"
    not_a_notebook.write_text("[1, 2]", encoding="utf-8")
    reasons = {r.reason for r in grade_notebook(not_a_notebook, "shared.grading.lesson01")}
    assert reasons == {"01_list.ipynb is not a Jupyter notebook (no list of cells)"}

    twice = write_notebook(tmp_path / "01_twice.ipynb", solution("percentile"), solution("percentile"))
    first = next(grade_notebook(twice, "shared.grading.lesson01"))
    assert first.reason == "cells 2, 3 of 01_twice.ipynb all start with `# Exercise: percentile`: keep one"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_timeout_kills_the_child_and_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()

    def spawn(record: str) -> str:
        return ("import os, subprocess\n"
                "helper = subprocess.Popen(['sleep', '60'])\n"
                f"open({str(pids / record)!r}, 'w').write(f'{{os.getpid()}} {{helper.pid}}')\n")

    write_notebook(tmp_path / "nbs" / "01_spawn.ipynb",
                   "# Exercise: percentile\n" + spawn("finished") +
                   solution("percentile").split("\n", 1)[1],
                   "# Exercise: predict_latency\n" + spawn("looping") + "while True:\n    pass\n")
    done = run_cli(str(tmp_path / "nbs"), "--timeout", "2", timeout=60)
    table = rows(done.stdout)
    assert table["01_spawn", "percentile"] == ("2/2", "PASS", ""), done.stdout
    assert table["01_spawn", "predict_latency"][2] == "stopped after 2 s: does it loop forever?"
    for which in ("finished", "looping"):
        child, helper = map(int, (pids / which).read_text().split())
        # Gone for good: the CLI adopts orphans and reaps them, so not even a zombie is left.
        assert wait_for_state(child, (None,)) is None, f"{which}: the grading child survived"
        assert wait_for_state(helper, (None,)) is None, f"{which}: the learner's `sleep 60` survived"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_killed_grader_takes_its_child_along(tmp_path):
    pid_file = tmp_path / "child.pid"
    write_notebook(tmp_path / "nbs" / "01_loop.ipynb",
                   f"# Exercise: percentile\nimport os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                   "while True:\n    pass\n")
    scratch = tmp_path / "tmp"  # a killed grader cannot clean its temporary folder
    scratch.mkdir()
    grader = subprocess.Popen([sys.executable, "-m", "shared.grading", str(tmp_path / "nbs"),
                               "--timeout", "60"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        grader.send_signal(signal.SIGKILL)
        grader.wait()
        # Its new parent is init, which may be slow (or fail) to reap it: a zombie is dead enough.
        assert wait_for_state(child, (None, "Z")) in (None, "Z"), "the child outlived its grader"
    finally:
        grader.kill()
        grader.wait()


# -- the tests of lesson 01 can fail, with precise reasons ---------------------------

WRONG_ANSWERS = [
    ("percentile", "    rank = math.ceil(q / 100 * len(ranked))\n    return ranked[rank - 1]",
     "    return ranked[int(q / 100 * len(ranked))]",
     "percentile([15, 20, 35, 40, 50], 40) returned 35, expected 20 "
     "(nearest rank: ceil(0.40 x 5) = 2nd smallest)"),
    ("percentile", "ranked = sorted(values)", "ranked = values",
     "percentile([50, 15, 40, 20, 35], 40) returned 15, expected 20"),
    ("percentile", "ranked = sorted(values)", "values.sort()\n    ranked = values",
     "percentile([50, 15, 40, 20, 35], 50) changed its input into [15, 20, 35, 40, 50]"),
    ("percentile", "if not 0 < q <= 100:", "if not 0 <= q <= 100:",
     "percentile([1, 2, 3], 0) returned 3, expected ValueError (q must be in (0, 100])"),
    ("percentile", "if not values:", "if False:",
     "percentile([], 50) raised IndexError: list index out of range, expected ValueError (empty input)"),
    ("predict_latency", "math.ceil(k / threads) * service_s", "k // threads * service_s",
     "predict_latency(1, 0.5, threads=2) returned 0.0, expected 0.5"),
    ("predict_latency", "if threads < 1:", "if threads < 0:",
     "predict_latency(1, 0.5, threads=0) raised ZeroDivisionError: division by zero, "
     "expected ValueError (a server needs at least 1 thread)"),
    ("predict_latency", "threads: int = 1", "threads: int",
     "predict_latency(3, 0.5) raised TypeError"),
    ("signup_validation", "request.get_json(silent=True)", "request.get_json()",
     "POST /signup with body '{\"email\": ' answered 400 with text/html"),
    ("signup_validation", '    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES\n', "",
     "POST /signup with a 1,025-byte JSON body answered 201, expected 413"),
    ("signup_validation", "address.fullmatch(email)", "re.match(r'^[^@\\s]+@[^@\\s]+\\.[^@\\s.]+$', email)",
     "POST /signup with body '{\"email\": \"ada@example.com\\n\"}' answered 201, expected 400 "
     "(whitespace, even a trailing newline, is not allowed)"),
    ("signup_validation", "if not isinstance(body, dict):", "if body is None:",
     "POST /signup with body '[1, 2]' raised AttributeError: 'list' object has no attribute 'get' "
     "(a server would answer 500)"),
    ("signup_validation", "return error(f\"the body", "return (f\"the body",
     "POST /signup with a 1,025-byte JSON body answered 413 with text/html"),
    ("signup_validation", 'application/json", 415)', 'application/json", 400)',
     "POST /signup with Content-Type text/plain and body '{\"email\": \"ada@example.com\"}' "
     "answered 400, expected 415"),
]


@pytest.mark.parametrize("name, old, new, reason", WRONG_ANSWERS)
def test_wrong_answers_fail_with_a_precise_reason(name, old, new, reason):
    source = solution(name)
    assert old in source, "the reference solution changed: update this case"
    module_name, exercise = registry.find_exercise(name)
    result = runner.grade(source.replace(old, new), module_name, exercise, "test cell")
    assert not result.passed
    assert result.reason.startswith(reason), result.reason
    assert "\n" not in result.reason


def test_reference_solutions_pass_in_process():
    for name in ("percentile", "predict_latency", "signup_validation"):
        module_name, exercise = registry.find_exercise(name)
        result = runner.grade(solution(name), module_name, exercise, "test cell")
        assert (result.passed, result.reason) == (True, ""), name


# -- the generator ----------------------------------------------------------------------

SOLVED = '''# Exercise: scale
def scale(values, factor=2):
    """Multiply every value."""
    ### BEGIN SOLUTION
    out = []
    for v in values:
        out.append(v * factor)
    ### END SOLUTION
    if values:
        ### BEGIN SOLUTION
        return out
        ### END SOLUTION
    return []'''

STUBBED = '''# Exercise: scale
def scale(values, factor=2):
    """Multiply every value."""
    raise NotImplementedError("Exercise scale: write your answer here")
    if values:
        raise NotImplementedError("Exercise scale: write your answer here")
    return []'''


def generate_in(tmp_path: Path, *flags: str) -> int:
    return generate.main([*flags, "--solutions", str(tmp_path / "solutions"),
                          "--exercises", str(tmp_path / "exercises")])


def test_generator_replaces_blocks_and_clears_outputs(tmp_path, capsys):
    path = write_notebook(tmp_path / "solutions" / "01_x.ipynb", "import math",
                          SOLVED, "### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].execution_count = 4
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nb.cells[2].metadata["tags"] = ["keep-me"]
    nb.cells[2].metadata["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
    nbformat.write(nb, path)

    assert generate_in(tmp_path) == 0
    text = (tmp_path / "exercises" / "01_x.ipynb").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    copy = nbformat.reads(text, as_version=4)
    assert [c.id for c in copy.cells] == [c.id for c in nb.cells]
    assert copy.cells[2].source == STUBBED
    assert copy.cells[3].source == 'raise NotImplementedError("write your answer here")'
    assert copy.cells[1].outputs == [] and copy.cells[1].execution_count is None
    assert copy.cells[2].metadata == {"tags": ["keep-me"]}
    assert "BEGIN SOLUTION" not in text and "append" not in text
    compile(copy.cells[2].source, "stub", "exec")

    capsys.readouterr()
    assert generate_in(tmp_path) == 0  # nothing changed: nothing written
    assert capsys.readouterr().out == ""
    assert generate_in(tmp_path, "--check") == 0
    assert capsys.readouterr().out == f"{tmp_path / 'exercises'}/ is up to date (1 notebook)\n"


def test_check_finds_stale_missing_and_extra_notebooks(tmp_path, capsys):
    for name in ("01_a", "02_b"):
        write_notebook(tmp_path / "solutions" / f"{name}.ipynb", SOLVED)
    assert generate_in(tmp_path) == 0
    exercises = tmp_path / "exercises"
    write_notebook(tmp_path / "solutions" / "01_a.ipynb", SOLVED.replace("factor=2", "factor=3"))
    (exercises / "02_b.ipynb").unlink()
    write_notebook(exercises / "03_orphan.ipynb", "x = 1")
    capsys.readouterr()

    assert generate_in(tmp_path, "--check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{exercises / '01_a.ipynb'} is stale: run `make exercises`",
        f"{exercises / '02_b.ipynb'} is missing: run `make exercises`",
        f"{exercises / '03_orphan.ipynb'} has no source in solutions/: "
        "delete it, or add its solution notebook",
    ]
    assert not (exercises / "02_b.ipynb").exists(), "--check must write nothing"

    assert generate_in(tmp_path) == 1  # writes both, still reports the orphan
    (exercises / "03_orphan.ipynb").unlink()
    capsys.readouterr()
    assert generate_in(tmp_path, "--check") == 0
    assert capsys.readouterr().out.endswith("is up to date (2 notebooks)\n")


@pytest.mark.parametrize("source, where", [
    ("# Exercise: f\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n", "cell 2, line 3"),
    ("# Exercise: f\ndef f():\n    return 1\n    ### END SOLUTION\n", "cell 2, line 4"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "cell 2, line 2"),
    ("# Exercise: f\ndef f():\n    return 1\n", "cell 2 starts with `# Exercise: f` but has no"),
])
def test_generator_rejects_broken_markers(tmp_path, capsys, source, where):
    path = write_notebook(tmp_path / "solutions" / "01_bad.ipynb", source)
    assert generate_in(tmp_path) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}: {where}"), error
    assert not (tmp_path / "exercises").exists()


# -- check() inside a real kernel ------------------------------------------------------------

def test_check_inside_a_kernel(tmp_path):
    wrong = solution("percentile").replace(
        "    rank = math.ceil(q / 100 * len(ranked))\n    return ranked[rank - 1]",
        "    return ranked[int(q / 100 * len(ranked))]")
    path = write_notebook(tmp_path / "try.ipynb",
                          "from shared.grading import check",
                          'check("percentile")',
                          solution("percentile"),
                          'check("percentile")',
                          wrong,
                          'result = check("percentile")\nresult',
                          'print("for learners"); check("predict_latency")',
                          markdown=None)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=60,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in nb.cells]
    assert outputs[0] == []
    assert _stdout(outputs[1]) == "❌ percentile: run the exercise cell above first\n"
    assert _stdout(outputs[3]) == "✅ percentile: pass (2/2 points)\n"
    assert _stdout(outputs[5]) == (
        "❌ percentile: fail (0/2 points): percentile([15, 20, 35, 40, 50], 40) returned 35, "
        "expected 20 (nearest rank: ceil(0.40 x 5) = 2nd smallest)\n")
    assert [o.output_type for o in outputs[5]] == ["stream"], "the Result must display nothing"
    assert _stdout(outputs[6]) == "for learners\n❌ predict_latency: run the exercise cell above first\n"


def _stdout(outputs) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def test_check_outside_ipython_says_where_it_works():
    with pytest.raises(RuntimeError, match="inside a Jupyter notebook"):
        check("percentile")


# -- the command line ------------------------------------------------------------------------

def test_cli_usage_errors(tmp_path):
    missing = run_cli(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "notes.ipynb").write_text("{}", encoding="utf-8")
    empty = run_cli(str(tmp_path))
    assert empty.returncode == 2 and "expected files named 01_*.ipynb" in empty.stderr
    bad_timeout = run_cli("solutions", "--timeout", "0")
    assert bad_timeout.returncode == 2 and "more than 0 seconds" in bad_timeout.stderr


def test_result_file_not_stdout_carries_the_verdict():
    module_name, exercise = registry.find_exercise("percentile")
    source = ("# Exercise: percentile\nimport json\nprint(json.dumps({'passed': True, 'reason': ''}))\n")
    result = runner.grade(source, module_name, exercise, "test cell")
    assert result.reason == "percentile is not defined — did you rename it?"
    assert json.loads(json.dumps(result.reason))  # plain text, one line
