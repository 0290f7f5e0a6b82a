"""Grade one exercise cell in child processes that cannot hurt the caller.

Two processes per exercise (see ``child``): a supervisor, and under it a
worker that runs the learner's cell and the exercise's test. The
supervisor enforces the exercise's deadline, and on Linux it is a child
subreaper: whatever the learner's code started, even a daemon double-forked
into a new session, is reparented to it and killed before it reports. So a
notebook kernel calling ``check()`` adopts nothing, and nothing survives.

This process only waits for the supervisor, with a margin over the
deadline, and stops its whole tree in any case. The supervisor dies with
this process (``PR_SET_PDEATHSIG``), so a grader killed mid-run orphans no child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.grading.child import STARTUP_SECONDS
from shared.grading.exercise import Exercise, Result
from shared.processes import start_child, stop_tree

# Seconds over the deadline before the supervisor itself is killed: its
# worker's startup allowance, then some.
SUPERVISOR_MARGIN = STARTUP_SECONDS + 15.0


def grade(source: str, module_name: str, exercise: Exercise, location: str,
          timeout: float | None = None) -> Result:
    """Run ``source`` then the test of ``exercise`` in a child; never raises for learner code.

    ``location`` names the cell in messages, e.g. ``"01_x.ipynb, cell 4"``.
    ``timeout`` overrides the exercise's own deadline.
    """
    timeout = exercise.timeout if timeout is None else timeout
    request = {"module": module_name, "exercise": exercise.name, "source": source,
               "location": location, "timeout": timeout, "waits_for": exercise.waits_for}
    with tempfile.TemporaryDirectory(prefix="grading-") as folder:
        passed, reason = _supervise(request, Path(folder), timeout)
    return Result(exercise.name, exercise.points, passed, reason)


def _supervise(request: dict[str, object], folder: Path, timeout: float) -> tuple[bool, str]:
    request_path, result_path = folder / "request.json", folder / "result.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    command = [sys.executable, "-m", "shared.grading.child", str(request_path), str(result_path)]
    with open(folder / "supervisor-stderr.txt", "wb") as stderr:
        supervisor = start_child(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                 env=_child_env(), die_signal=signal.SIGKILL)
        try:
            supervisor.wait(timeout + SUPERVISOR_MARGIN)
        except subprocess.TimeoutExpired:
            pass
        finally:
            stop_tree(supervisor, timeout=0)
    if result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        return bool(result["passed"]), str(result["reason"])
    return False, (f"the grader did not answer within its {timeout + SUPERVISOR_MARGIN:g} s "
                   f"(exit code {supervisor.returncode}): run the grading again")


def _child_env() -> dict[str, str]:
    """This environment, with the folder holding ``shared`` first on the path.

    The child then imports the very grader that started it, even when the
    kernel found ``shared`` through a ``sys.path`` edit rather than an install.
    """
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else os.pathsep.join([root, path])}
