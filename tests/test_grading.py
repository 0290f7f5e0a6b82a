"""The autograder: exercise format, generator, child-process isolation, check()."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from shared.grading import check, course_cells, generate, registry, runner
from shared.grading.cells import BEGIN_SOLUTION, END_SOLUTION
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
    return course_cells.answers(SOLUTIONS.name)[name]


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

def test_solutions_get_full_score():
    done = run_cli("solutions")
    assert done.returncode == 0, done.stdout + done.stderr
    everything = rows(done.stdout)
    table = {key: value for key, value in everything.items() if key[0] == "01_blocking_handlers"}
    assert table == {
        ("01_blocking_handlers", "percentile"): ("2/2", "PASS", ""),
        ("01_blocking_handlers", "predict_latency"): ("2/2", "PASS", ""),
        ("01_blocking_handlers", "signup_validation"): ("3/3", "PASS", ""),
    }
    assert all(status == "PASS" for _, status, _ in everything.values())
    total = sum(int(score.split("/")[1]) for score, _, _ in everything.values())
    assert re.match(r"Grading \d+ notebooks? in solutions/, timeout 10", done.stdout.splitlines()[0])
    assert done.stdout.splitlines()[-1] == f"Score: {total}/{total}"


def test_generated_exercises_score_zero(tmp_path):
    # A fresh generation, not exercises/: that folder may hold a learner's answers.
    fresh = tmp_path / "exercises"
    assert generate.main(["--solutions", str(ROOT / "solutions"), "--exercises", str(fresh)]) == 0
    done = run_cli(str(fresh))
    assert done.returncode == 1, done.stdout + done.stderr
    table = rows(done.stdout)
    assert {name for notebook, name in table if notebook == "01_blocking_handlers"} == {
        "percentile", "predict_latency", "signup_validation"}
    for score, status, reason in table.values():
        assert (score[0], status, reason) == ("0", "FAIL", "not implemented yet")
    total = sum(int(score.split("/")[1]) for score, _, _ in table.values())
    assert done.stdout.splitlines()[-2] == f"Score: 0/{total}"
    assert done.stdout.splitlines()[-1].startswith(f"Next: fix the FAIL lines in {fresh}/")
    text = (fresh / "01_blocking_handlers.ipynb").read_text(encoding="utf-8")
    assert "SOLUTION" not in text and "MAX_CONTENT_LENGTH\"]" not in text


def test_committed_exercises_are_up_to_date(capsys):
    """exercises/ matches solutions/, or, where it holds a learner's answers, its committed version."""
    status = generate.main(["--check", "--solutions", str(ROOT / "solutions"),
                            "--exercises", str(ROOT / "exercises")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "exercises/ is up to date" in out
    for line in out.splitlines():
        if "holds changes" in line:  # say what was compared, in the test output
            warnings.warn(line, stacklevel=1)


def test_every_lesson_module_matches_its_prefix():
    names = []
    for prefix, module_name in registry.LESSONS.items():
        module = __import__(module_name, fromlist=["EXERCISES"])
        assert module.NOTEBOOK_PREFIX == prefix
        names += [exercise.name for exercise in module.EXERCISES]
    assert len(names) == len(set(names)), "check(name) needs names unique across lessons"


def test_every_exercise_has_wrong_answer_tests():
    """Each lesson has tests/test_grading_lessonNN.py (or test_grading_lessonNN_*.py, one per
    exercise) that grade wrong answers of every exercise."""
    for prefix, module_name in registry.LESSONS.items():
        stem = f"test_grading_lesson{prefix.rstrip('_')}"
        paths = sorted((ROOT / "tests").glob(f"{stem}.py")) + sorted((ROOT / "tests").glob(f"{stem}_*.py"))
        assert paths, f"{stem}.py is missing: test a plausible wrong answer of each exercise"
        text = "\n".join(path.read_text(encoding="utf-8") for path in paths)
        for exercise in registry.exercises_of(module_name):
            assert f'"{exercise.name}"' in text, (
                f"{stem}*.py never grade {exercise.name}: add a plausible wrong answer its grader "
                "must refuse, and the reason it must give")


# -- isolation: every misbehaviour fails its own exercise only -------------------------

def names_file_of(tmp_path: Path, *names: str) -> str:
    """A solutions folder whose notebook names tell the CLI which files to grade."""
    folder = tmp_path / "names"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}.ipynb").write_text("{}", encoding="utf-8")
    return str(folder)


def test_misbehaving_cells_fail_alone(tmp_path):
    folder = tmp_path / "nbs"
    write_notebook(folder / "01_a.ipynb",
                   solution("percentile"),
                   "# Exercise: predict_latency\nimport sys\nsys.exit(3)\n",
                   "# Exercise: signup_validation\ndef create_signup_app(:\n    pass\n")
    write_notebook(folder / "01_b.ipynb",
                   "# Exercise: percentile\nraise KeyboardInterrupt\n",
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
                   "# Exercise: percentile\nimport os\nos.kill(os.getpid(), 9)\n",
                   flood,
                   "# Exercise: signup_validation\ndef make_app():\n    pass\n")
    write_notebook(folder / "01_d.ipynb", solution("percentile"))
    (folder / "01_e.ipynb").write_text('{"cells": [,]}', encoding="utf-8")
    (folder / "README.ipynb").write_text("not graded", encoding="utf-8")

    # The exercises' own deadlines (10 s): generous for the real Flask solution on a busy box.
    done = run_cli(str(folder), "--solutions", names_file_of(tmp_path, *"01_a 01_b 01_c 01_d 01_e".split()))

    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].endswith("timeout 10 s per exercise")
    table = rows(done.stdout)
    assert table["01_a", "percentile"] == ("2/2", "PASS", "")
    assert table["01_a", "predict_latency"] == ("0/2", "FAIL", "called sys.exit(3)")
    assert table["01_a", "signup_validation"][2].startswith(
        "syntax error in 01_a.ipynb, cell 4, line 2: ")
    assert table["01_b", "percentile"][2] == "raised KeyboardInterrupt"
    assert table["01_b", "predict_latency"][2] == "the process ended early (os._exit?) with exit code 7"
    assert table["01_b", "signup_validation"] == ("3/3", "PASS", "")
    assert table["01_c", "percentile"][2] == "the process was killed by SIGKILL"
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
    assert done.stdout.splitlines()[-2] == "Score: 7/35"


def test_odd_notebooks_fail_every_exercise_with_the_reason(tmp_path):
    not_a_notebook = tmp_path / "01_list.ipynb"
    not_a_notebook.write_text("[1, 2]", encoding="utf-8")
    reasons = {r.reason for r in grade_notebook(not_a_notebook, "shared.grading.lesson01")}
    assert reasons == {"01_list.ipynb is not a Jupyter notebook (no list of cells)"}

    twice = write_notebook(tmp_path / "01_twice.ipynb", solution("percentile"), solution("percentile"))
    first = next(grade_notebook(twice, "shared.grading.lesson01"))
    assert first.reason == "cells 2, 3 of 01_twice.ipynb all start with `# Exercise: percentile`: keep one"


def spawner(record: Path) -> str:
    """Cell lines that start three `sleep 60`: a child, one in a new session, one
    double-forked into a new session; the pids go to ``record``."""
    return ("import os, subprocess\n"
            "quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "plain = subprocess.Popen(['sleep', '60'], **quiet)\n"
            "session = subprocess.Popen(['sleep', '60'], start_new_session=True, **quiet)\n"
            "read, write = os.pipe()\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    os.write(write, str(subprocess.Popen(['sleep', '60'], **quiet).pid).encode())\n"
            "    os._exit(0)\n"
            "os.close(write)\n"
            "daemon = int(os.read(read, 100))\n"
            "os.wait()\n"
            f"open({str(record)!r}, 'w').write(f'{{os.getpid()}} {{plain.pid}} {{session.pid}} {{daemon}}')\n")


def assert_all_gone(record: Path, within: float = 10.0) -> None:
    worker, *sleeps = map(int, record.read_text().split())
    # Gone for good: the supervisor adopts orphans and reaps them, so not even a zombie is left.
    assert wait_for_state(worker, (None,), within) is None, "the worker survived"
    for what, pid in zip(("plain", "new-session", "double-forked"), sleeps):
        assert wait_for_state(pid, (None,), within) is None, f"the {what} `sleep 60` survived"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_deadline_stops_the_loop_and_everything_it_started(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    names = names_file_of(tmp_path, "01_spawn")
    notebook = tmp_path / "nbs" / "01_spawn.ipynb"
    write_notebook(notebook, "# Exercise: percentile\n" + spawner(pids / "finished") +
                   solution("percentile").split("\n", 1)[1])
    finished = run_cli(str(notebook.parent), "--solutions", names)  # the exercise's own 10 s
    assert rows(finished.stdout)["01_spawn", "percentile"] == ("2/2", "PASS", ""), finished.stdout
    # A learner loop needs no generous deadline: it never ends anyway.
    write_notebook(notebook, "# Exercise: predict_latency\n" + spawner(pids / "looping") + "while True:\n    pass\n")
    looping = run_cli(str(notebook.parent), "--timeout", "2", "--solutions", names)
    assert rows(looping.stdout)["01_spawn", "predict_latency"][2] == (
        "stopped after its 2 s deadline, still running the exercise cell"), looping.stdout
    assert_all_gone(pids / "finished")
    assert_all_gone(pids / "looping")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_check_leaves_nothing_behind_and_adopts_nothing(tmp_path):
    """runner.grade as check() calls it from a kernel, here from pytest itself."""
    module_name, exercise = registry.find_exercise("percentile")
    source = "# Exercise: percentile\n" + spawner(tmp_path / "pids") + solution("percentile").split("\n", 1)[1]
    result = runner.grade(source, module_name, exercise, "test cell")
    assert (result.passed, result.reason) == (True, "")
    assert_all_gone(tmp_path / "pids")


SLOW_LESSON = """
import time
from shared.grading.exercise import Exercise

def wait_for_emails(namespace):
    while True:
        time.sleep(0.05)

EXERCISES = [
    Exercise("slow_worker", 1, wait_for_emails, timeout=1.5, waits_for="the worker to send 3 emails"),
    Exercise("slow_test", 1, wait_for_emails, timeout=1.5),
]
"""


@pytest.mark.parametrize("name, cell, reason", [
    ("slow_worker", "x = 1", "stopped after its 1.5 s deadline, waiting for the worker to send 3 emails"),
    ("slow_test", "x = 1", "stopped after its 1.5 s deadline, in the test of slow_test"),
    ("slow_worker", "import time\ntime.sleep(60)", "stopped after its 1.5 s deadline, still running the exercise cell"),
])
def test_a_timeout_names_the_deadline_and_what_the_test_waited_for(tmp_path, monkeypatch, name, cell, reason):
    (tmp_path / "slow_lesson.py").write_text(SLOW_LESSON, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    exercise = registry.exercise_in("slow_lesson", name)
    result = runner.grade(f"# Exercise: {name}\n{cell}", "slow_lesson", exercise, "test cell")
    assert (result.passed, result.reason) == (False, reason)


def test_ipython_syntax_is_graded_as_the_kernel_runs_it():
    module_name, exercise = registry.find_exercise("percentile")
    answer = solution("percentile").split("\n", 1)[1]
    for extra in ["%time ranked = sorted([3, 1, 2])\n", "!echo hello\nfiles = !ls\n",
                  "shell = get_ipython()\nassert shell is not None\n"]:
        result = runner.grade("# Exercise: percentile\n" + extra + answer, module_name, exercise, "cell 3")
        assert (result.passed, result.reason) == (True, ""), extra
    # The marker comes first, so %%time is no cell magic here: Jupyter says so, and so do we.
    timed = "# Exercise: percentile\n%%time\n" + answer
    result = runner.grade(timed, module_name, exercise, "cell 3")
    assert result.reason.startswith("running the cell raised UsageError: Line magic function `%%time`"), result.reason
    broken = "# Exercise: percentile\n%time x = 1\ndef percentile(values, q:\n    pass\n"
    result = runner.grade(broken, module_name, exercise, "cell 3")
    assert result.reason.startswith("syntax error in cell 3, line 3: "), result.reason


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_killed_grader_takes_its_children_along(tmp_path):
    pid_file = tmp_path / "child.pid"
    write_notebook(tmp_path / "nbs" / "01_loop.ipynb",
                   f"# Exercise: percentile\nimport os\n"
                   f"open({str(pid_file)!r}, 'w').write(f'{{os.getppid()}} {{os.getpid()}}')\n"
                   "while True:\n    pass\n")
    scratch = tmp_path / "tmp"  # a killed grader cannot clean its temporary folder
    scratch.mkdir()
    grader = subprocess.Popen([sys.executable, "-m", "shared.grading", str(tmp_path / "nbs"),
                               "--timeout", "60", "--solutions", names_file_of(tmp_path, "01_loop")],
                              cwd=ROOT, stdout=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        supervisor, worker = map(int, pid_file.read_text().split())
        grader.send_signal(signal.SIGKILL)
        grader.wait()
        # Their new parent is init, which may be slow (or fail) to reap them: a zombie is dead enough.
        assert wait_for_state(supervisor, (None, "Z")) in (None, "Z"), "the supervisor outlived its grader"
        assert wait_for_state(worker, (None, "Z")) in (None, "Z"), "the worker outlived its grader"
    finally:
        grader.kill()
        grader.wait()


# -- the tests of lesson 01 can fail, with precise reasons ---------------------------

WRONG_ANSWERS = [
    ("percentile", "math.ceil(q * len(ranked) / 100)", "math.ceil(q / 100 * len(ranked))",
     "percentile([25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 28) "
     "returned 8, expected 7 (nearest rank: ceil(0.28 x 25) = 7th smallest); q / 100 * n is "
     "7.000000000000001 in floating point: multiply before you divide, q * n / 100"),
    ("percentile", "    rank = math.ceil(q * len(ranked) / 100)  # multiply first: q / 100 rounds\n    return ranked[rank - 1]",
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
    ("signup_validation", '    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES\n', "",
     "POST /signup with a 1,025-byte JSON body answered 201, expected 413"),
    ("signup_validation", "address.fullmatch(email)", "re.match(r'^[^@\\s]+@[^@\\s]+\\.[^@\\s.]+$', email)",
     "POST /signup with body '{\"email\": \"ada@example.com\\n\"}' answered 201, expected 400 "
     "(whitespace, even a trailing newline, is not allowed)"),
    ("signup_validation", "if not isinstance(body, dict):", "if body is None:",
     "POST /signup with body '[1, 2]' raised AttributeError: 'list' object has no attribute 'get' "
     "(a server would answer 500)"),
    ("signup_validation", '        response.mimetype = "application/json"\n', "",
     "POST /signup with a 1,025-byte JSON body answered 413 with text/html"),
    ("signup_validation", "@app.errorhandler(HTTPException)", "@app.errorhandler(413)",
     "GET /signup answered 405 with text/html"),
    ("signup_validation", 'request.mimetype != "application/json"', "not request.is_json",
     "POST /signup with Content-Type application/problem+json and body '{\"email\": \"ada@example.com\"}' "
     "answered 201, expected 415 (only application/json itself is accepted"),
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
        "    rank = math.ceil(q * len(ranked) / 100)  # multiply first: q / 100 rounds\n    return ranked[rank - 1]",
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
    empty = run_cli(str(tmp_path), "--solutions", str(tmp_path / "no-solutions"))
    assert empty.returncode == 2 and "expected files named 01_*.ipynb" in empty.stderr
    bad_timeout = run_cli("solutions", "--timeout", "0")
    assert bad_timeout.returncode == 2 and "more than 0 seconds" in bad_timeout.stderr


def test_result_file_not_stdout_carries_the_verdict():
    module_name, exercise = registry.find_exercise("percentile")
    source = ("# Exercise: percentile\nimport json\nprint(json.dumps({'passed': True, 'reason': ''}))\n")
    result = runner.grade(source, module_name, exercise, "test cell")
    assert (result.passed, result.reason) == (False, "percentile is not defined — did you rename it?")


def lesson01_only(tmp_path: Path) -> Path:
    """A solutions/ folder with lesson 01 alone, so the expected totals stay put as lessons grow."""
    folder = tmp_path / "solutions"
    folder.mkdir()
    shutil.copy(SOLUTIONS, folder / SOLUTIONS.name)
    return folder


def test_notebooks_are_graded_by_name_and_copies_are_ignored(tmp_path):
    sources = ("--solutions", str(lesson01_only(tmp_path)))
    exercises = tmp_path / "exercises"
    copy = write_notebook(exercises / "01_blocking_handlers-Copy1.ipynb", solution("percentile"))
    renamed = run_cli(str(exercises), *sources)
    assert renamed.returncode == 1, renamed.stdout + renamed.stderr
    assert renamed.stdout.splitlines()[0] == (
        "note: 01_blocking_handlers-Copy1.ipynb is a Jupyter copy: not graded, "
        "only 01_blocking_handlers.ipynb counts")
    table = rows(renamed.stdout)
    assert len(table) == 3
    for score, status, reason in table.values():
        assert (score[0], status) == ("0", "FAIL")
        assert reason == (f"{exercises}/01_blocking_handlers.ipynb not found (found "
                          "01_blocking_handlers-Copy1.ipynb: rename your work to 01_blocking_handlers.ipynb)")

    copy.rename(exercises / "01_blocking_handlers.ipynb")
    write_notebook(exercises / "01_blocking_handlers-Copy1.ipynb", solution("percentile"))
    both = run_cli(str(exercises), *sources)
    table = rows(both.stdout)
    assert len(table) == 3, "the copy must never be counted twice"
    assert table["01_blocking_handlers", "percentile"] == ("2/2", "PASS", "")
    assert both.stdout.splitlines()[-2] == "Score: 2/7"


def test_a_newer_checkpoint_gets_a_warning(tmp_path):
    sources = ("--solutions", str(lesson01_only(tmp_path)))
    exercises = tmp_path / "exercises"
    saved = write_notebook(exercises / "01_blocking_handlers.ipynb", solution("percentile"))
    checkpoint = write_notebook(exercises / ".ipynb_checkpoints" / "01_blocking_handlers-checkpoint.ipynb",
                                solution("percentile"))
    now = time.time()
    os.utime(saved, (now - 60, now - 60))
    os.utime(checkpoint, (now, now))
    warned = run_cli(str(exercises), *sources)
    assert warned.stdout.splitlines()[0].startswith(
        f"warning: {checkpoint} is newer than 01_blocking_handlers.ipynb; this grades the saved file")
    os.utime(saved, (now, now))
    quiet = run_cli(str(exercises), *sources)
    assert quiet.stdout.splitlines()[0].startswith("Grading 1 notebook in"), quiet.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_grade_ends_with_the_score_and_fails_only_when_strict(tmp_path):
    exercises = tmp_path / "exercises"
    write_notebook(exercises / "01_blocking_handlers.ipynb", solution("percentile"))
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: make installs nothing
    sources = lesson01_only(tmp_path)

    def make_grade(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "--no-print-directory", "grade", f"NOTEBOOKS={exercises}",
                               f"SOLUTIONS={sources}", f"PY={sys.executable}", f"STAMP={stamp}",
                               *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    lenient = make_grade()
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert lenient.stdout.splitlines()[-2:] == [
        "Score: 2/7", f"Next: fix the FAIL lines in {exercises}/, save the notebook (Ctrl-S), "
                      "then run `make grade` again."]
    strict = make_grade("STRICT=1")
    assert strict.returncode != 0
    assert strict.stdout.splitlines()[-2] == "Score: 2/7"
    missing = make_grade(f"NOTEBOOKS={tmp_path / 'nope'}")
    assert missing.returncode != 0, "a usage error must fail even without STRICT"


# -- a learner's answers are theirs ------------------------------------------------------------

def answer_in(path: Path, name: str, answer: str) -> str:
    """Put ``answer`` into the exercise cell ``name`` of the notebook, with an output, as Jupyter saves it."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.source.startswith(f"# Exercise: {name}\n"):
            cell.source = answer
            cell.execution_count = 3
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="tried\n")]
    nbformat.write(nb, path)
    return path.read_text(encoding="utf-8")


def test_check_accepts_a_learners_answers_but_not_a_stale_copy(tmp_path, capsys):
    write_notebook(tmp_path / "solutions" / "01_a.ipynb", SOLVED, "print('intro')")
    assert generate_in(tmp_path) == 0
    exercise = tmp_path / "exercises" / "01_a.ipynb"
    answer_in(exercise, "scale", SOLVED.replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION\n", ""))
    capsys.readouterr()

    assert generate_in(tmp_path, "--check") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"{exercise} holds changes (your answers?): checked it cell by cell, "
                                   "leaving out answered exercise cells and outputs, and it is up to date")

    write_notebook(tmp_path / "solutions" / "01_a.ipynb", SOLVED, "print('a new intro')")
    assert generate_in(tmp_path, "--check") == 1
    assert capsys.readouterr().out == f"{exercise} is stale: run `make exercises`\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_check_compares_a_changed_file_with_its_committed_version(tmp_path, capsys):
    write_notebook(tmp_path / "solutions" / "01_a.ipynb", SOLVED)
    assert generate_in(tmp_path) == 0
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    subprocess.run([*git, "add", "."], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "course"], check=True, timeout=30)
    exercise = tmp_path / "exercises" / "01_a.ipynb"
    answer_in(exercise, "scale", "# Exercise: scale\ndef scale(values, factor=2):\n    return [v * factor for v in values]\n")
    capsys.readouterr()

    assert generate_in(tmp_path, "--check") == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{exercise} holds changes (your answers?): checked its committed version (git HEAD) "
        "instead, which is up to date")


def test_make_exercises_keeps_a_learners_work_unless_forced(tmp_path, capsys):
    write_notebook(tmp_path / "solutions" / "01_a.ipynb", SOLVED, "print('intro')")
    assert generate_in(tmp_path) == 0
    exercise = tmp_path / "exercises" / "01_a.ipynb"
    mine = answer_in(exercise, "scale", "# Exercise: scale\ndef scale(values, factor=2):\n    return ['mine']\n")
    write_notebook(tmp_path / "solutions" / "01_a.ipynb", SOLVED, "print('a new intro')")
    capsys.readouterr()

    assert generate_in(tmp_path) == 1
    out = capsys.readouterr().out
    assert out == (f"{exercise}: not overwritten, your work is in scale. Keep it, or run "
                   "`make exercises FORCE=1` to start over from fresh stubs (your file is first "
                   f"copied to {tmp_path / 'exercises' / '.backup'}/)\n")
    assert exercise.read_text(encoding="utf-8") == mine

    assert generate_in(tmp_path, "--force") == 0
    backups = list((tmp_path / "exercises" / ".backup").glob("01_a.*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == mine
    assert f"your previous file was copied to {backups[0]}" in capsys.readouterr().out
    assert "a new intro" in exercise.read_text(encoding="utf-8")
    assert "mine" not in exercise.read_text(encoding="utf-8")


# -- the grading tests themselves ignore a learner's answers -----------------------------------

COPY_SECONDS = 240  # the stub tests of every lesson, in a fresh pytest, on a busy machine


def copy_of_the_course(folder: Path) -> Path:
    """This working tree's files in a git repository of their own, exercises/ committed as stubs.

    Files are copied as they are here, committed or not, so the copy tests
    the code under test; exercises/ is generated afresh, as the course ships it.
    """
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True, timeout=30)
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and not name.startswith("exercises/") and source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    assert generate.main(["--solutions", str(folder / "solutions"),
                          "--exercises", str(folder / "exercises")]) == 0
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "the course as shipped"]):
        subprocess.run([*git, *command], check=True, capture_output=True, timeout=60)
    return folder


def answer_every_exercise(course: Path) -> int:
    """Put each solution's answer, markers removed, in the exercise cells of course/exercises/."""
    answered = 0
    for notebook in sorted((course / "solutions").glob("*.ipynb")):
        answers = course_cells.cells_of(notebook.read_text(encoding="utf-8"))
        for name, source in answers.items():
            kept = [line for line in source.split("\n")
                    if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION)]
            answer_in(course / "exercises" / notebook.name, name, "\n".join(kept))
            answered += 1
    return answered


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_grading_tests_pass_while_exercises_hold_a_learners_answers(tmp_path):
    """A learner who solved every exercise, then ran the tests: the stub tests read git HEAD."""
    course = copy_of_the_course(tmp_path / "course")
    assert answer_every_exercise(course) == sum(
        len(registry.exercises_of(module)) for module in registry.LESSONS.values())
    still_stubs = subprocess.run(["git", "-C", str(course), "grep", "-q", "write your answer here",
                                  "HEAD", "--", "exercises"], timeout=30)
    assert still_stubs.returncode == 0, "the committed exercises/ must hold the stubs"
    changed = subprocess.run(["git", "-C", str(course), "diff", "--quiet", "--", "exercises"],
                             timeout=30)
    assert changed.returncode == 1, "the working copy of exercises/ must hold the answers"

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(course)  # the copy's shared/, not this checkout's
    tests = sorted(str(path.relative_to(course)) for path in (course / "tests").glob("test_grading*.py"))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "stubs", *tests],
                              cwd=course, env=env, capture_output=True, text=True,
                              timeout=COPY_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"waited {COPY_SECONDS} s for the stub tests to run in the copy of the course")
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 5, summary  # lessons 04 and 05 have 5 stub tests
