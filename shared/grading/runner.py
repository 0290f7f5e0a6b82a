"""Grade one exercise cell in a child process that cannot hurt the grader.

The child runs in a process group of its own. The whole group is killed when
the timeout expires and again after the child ends, so nothing the learner's
code started survives. On Linux the child also dies with its parent
(``PR_SET_PDEATHSIG``), so a grader killed mid-run orphans no child.

A command-line grader may also ``adopt_orphans()``: what the learner's code
started is then reparented to the grader rather than to init, and reaped
after the kill, so no zombie lingers where init does not reap (some
containers). A notebook kernel must not do this: it would adopt, and never
reap, orphans that have nothing to do with grading.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from shared.grading.exercise import Exercise, Result

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REAP_SECONDS = 1.0
STDERR_TAIL_BYTES = 2000


def grade(source: str, module_name: str, exercise: Exercise, location: str,
          timeout: float | None = None) -> Result:
    """Run ``source`` then the test of ``exercise`` in a child; never raises for learner code.

    ``location`` names the cell in messages, e.g. ``"01_x.ipynb, cell 4"``.
    ``timeout`` overrides the exercise's own.
    """
    timeout = exercise.timeout if timeout is None else timeout
    request = {"module": module_name, "exercise": exercise.name,
               "source": source, "location": location}
    with tempfile.TemporaryDirectory(prefix="grading-") as folder:
        passed, reason = _run_child(request, Path(folder), timeout)
    return Result(exercise.name, exercise.points, passed, reason)


def _run_child(request: dict[str, str], folder: Path, timeout: float) -> tuple[bool, str]:
    request_path, result_path = folder / "request.json", folder / "result.json"
    stderr_path = folder / "stderr.txt"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    command = [sys.executable, "-m", "shared.grading.child", str(request_path), str(result_path)]
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=stderr, env=_child_env(), start_new_session=True,
                                 preexec_fn=_die_with_parent_hook())
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False, f"stopped after {timeout:g} s: does it loop forever?"
        finally:
            _kill_group(child)
            child.wait()
            _reap_group(child.pid)
    if result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        return bool(result["passed"]), str(result["reason"])
    return False, _why_no_result(child.returncode, stderr_path)


def _why_no_result(returncode: int, stderr_path: Path) -> str:
    if returncode < 0:
        return f"the process was killed by {signal.Signals(-returncode).name}"
    tail = _tail(stderr_path)
    if "Traceback (most recent call last)" in tail:
        return f"the grader could not run: {tail.strip().splitlines()[-1]}"
    return f"the process ended early (os._exit?) with exit code {returncode}"


def _tail(path: Path) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - STDERR_TAIL_BYTES))
        return file.read().decode("utf-8", errors="replace")


def _child_env() -> dict[str, str]:
    """This environment, with the folder holding ``shared`` first on the path.

    The child then imports the very grader that started it, even when the
    kernel found ``shared`` through a ``sys.path`` edit rather than an install.
    """
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else os.pathsep.join([root, path])}


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux only).

    Returns whether it worked. Meant for a process that only grades.
    """
    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_CHILD_SUBREAPER, 1) == 0


def _reap_group(pgid: int) -> None:
    """Reap the killed members of group ``pgid`` that were reparented to us.

    Without ``adopt_orphans()`` none are our children, and this returns at once.
    """
    deadline = time.monotonic() + REAP_SECONDS
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


def _kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group; a group already gone is fine."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when the grader dies."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the grader died before prctl took effect
            os._exit(1)

    return die_with_parent


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
