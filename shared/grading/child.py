"""Run one learner cell and one exercise test, in processes of their own.

Usage: ``python -m shared.grading.child REQUEST.json RESULT.json``

Started so, this process is the *supervisor*. On Linux it becomes a child
subreaper, starts a *worker* (``python -m shared.grading.child --run ...``)
that runs the cell then the test, and waits for it until the exercise's
deadline, counted from the moment the cell starts. Then it kills the worker
and every process left under it, even a daemon double-forked into a new
session (it was reparented here), reaps
them, and writes the verdict ``{"passed": bool, "reason": str}`` to
RESULT.json. Whatever the learner prints is discarded, never parsed.

The worker runs the cell as Jupyter would: IPython syntax (``%time``,
``!ls``) is transformed by IPython and runs with a shell available, so
``get_ipython()`` works. It ends with ``os._exit`` so threads the learner
started cannot keep it alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from shared.errors import describe

CELL_FILENAME = "<exercise cell>"
MAX_REASON_CHARS = 300
STDERR_TAIL_BYTES = 2000
WORKER_FLAG = "--run"
PHASE_FILE = "phase.json"  # what the worker is doing: running the "cell", or the "test"
STARTUP_SECONDS = 30.0  # for Python and the lesson's imports, before the deadline starts
POLL_SECONDS = 0.01
CLEANUP_SECONDS = 2.0


def main(argv: list[str]) -> None:
    if argv and argv[0] == WORKER_FLAG:
        _work(Path(argv[1]), Path(argv[2]))
    else:
        _supervise(Path(argv[0]), Path(argv[1]))


# -- the supervisor -------------------------------------------------------------------

def _supervise(request_path: Path, result_path: Path) -> None:
    from shared.processes import become_subreaper, kill_descendants

    try:
        become_subreaper()
        request = json.loads(request_path.read_text(encoding="utf-8"))
        passed, reason = _watch_worker(request, request_path, result_path.parent)
    except BaseException as exc:  # a bug of the grader itself, not the learner's
        passed, reason = False, f"grader error: {describe(exc)}"
    finally:
        kill_descendants(timeout=CLEANUP_SECONDS)
    _write_atomically(result_path, {"passed": passed, "reason": _one_line(reason)})
    os._exit(0)


def _watch_worker(request: dict[str, Any], request_path: Path, folder: Path) -> tuple[bool, str]:
    from shared.processes import kill_descendants, start_child, stop_tree

    verdict_path, stderr_path = folder / "worker-result.json", folder / "worker-stderr.txt"
    command = [sys.executable, "-m", "shared.grading.child", WORKER_FLAG,
               str(request_path), str(verdict_path)]
    with open(stderr_path, "wb") as stderr:
        worker = start_child(command, stdout=subprocess.DEVNULL, stderr=stderr,
                             die_signal=signal.SIGKILL)
        try:
            late = _wait_for(worker, folder / PHASE_FILE, request["timeout"])
        finally:
            stop_tree(worker, timeout=0)
    kill_descendants(timeout=CLEANUP_SECONDS)
    if verdict_path.exists():  # even if the deadline struck while the worker was exiting
        verdict = json.loads(verdict_path.read_text(encoding="utf-8"))
        return bool(verdict["passed"]), str(verdict["reason"])
    if late:
        return False, late
    return False, _why_no_result(worker.returncode, stderr_path)


def _wait_for(worker: subprocess.Popen[bytes], phase_path: Path, timeout: float) -> str:
    """Wait for the worker to end; return why it was too late, or "" if it was not.

    The deadline counts from the moment the cell starts: starting Python
    and importing the lesson on a busy machine is not the learner's time.
    """
    startup_deadline = time.monotonic() + STARTUP_SECONDS
    deadline = None
    while worker.poll() is None:
        now = time.monotonic()
        if deadline is None and phase_path.exists():
            deadline = now + timeout
        if deadline is None and now > startup_deadline:
            return f"the grader did not start within {STARTUP_SECONDS:g} s: is the machine very busy?"
        if deadline is not None and now > deadline:
            return _deadline_reason(timeout, phase_path)
        time.sleep(POLL_SECONDS)
    return ""


def _deadline_reason(timeout: float, phase_path: Path) -> str:
    stopped = f"stopped after its {timeout:g} s deadline"
    phase = json.loads(phase_path.read_text(encoding="utf-8"))
    if phase["phase"] == "cell":
        return f"{stopped}, still running the exercise cell"
    if phase["waits_for"]:
        return f"{stopped}, waiting for {phase['waits_for']}"
    return f"{stopped}, in the test of {phase['exercise']}"


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


# -- the worker -----------------------------------------------------------------------

def _work(request_path: Path, verdict_path: Path) -> None:
    # An IPython shell, if the cell needs one, keeps its files here, away
    # from the learner's own profile and its startup scripts.
    os.environ["IPYTHONDIR"] = str(verdict_path.parent / "ipython")
    try:
        request = json.loads(request_path.read_text(encoding="utf-8"))
        passed, reason = verdict(request, phase_path=verdict_path.parent / PHASE_FILE)
    except BaseException as exc:  # a bug of the grader itself, not the learner's
        passed, reason = False, f"grader error: {describe(exc)}"
    _write_atomically(verdict_path, {"passed": passed, "reason": _one_line(reason)})
    os._exit(0)


def verdict(request: dict[str, Any], phase_path: Path | None = None) -> tuple[bool, str]:
    """Run the cell, then the exercise's test, and say how it went."""
    from shared.grading import registry

    exercise = registry.exercise_in(request["module"], request["exercise"])
    try:
        code, namespace = _compile(request["source"])
    except SyntaxError as exc:
        return False, f"syntax error in {request['location']}, line {exc.lineno}: {exc.msg}"
    phase = {"exercise": exercise.name, "waits_for": exercise.waits_for}
    _write_phase(phase_path, {**phase, "phase": "cell"})  # the deadline starts now
    with _discarded_output():
        try:
            exec(code, namespace)
        except BaseException as exc:
            return False, _explain(exc, "running the cell raised ")
        _write_phase(phase_path, {**phase, "phase": "test"})
        try:
            exercise.test(namespace)
        except AssertionError as exc:
            return False, str(exc) or f"the test of {exercise.name} failed"
        except BaseException as exc:
            return False, _explain(exc, "")
    return True, ""


def _compile(source: str) -> tuple[Any, dict[str, Any]]:
    """The cell's code and the namespace to run it in, as a Jupyter kernel would.

    Plain Python runs in a plain namespace. A cell that only compiles once
    IPython has transformed it (``%time``, ``!ls``), or that calls
    ``get_ipython()``, runs in the namespace of an IPython shell.
    """
    try:
        code = compile(source, CELL_FILENAME, "exec")
    except SyntaxError as plain_error:
        transformed = _ipython_transform(source)
        if transformed is None or transformed == source:
            raise plain_error from None
        return compile(transformed, CELL_FILENAME, "exec"), _ipython_namespace()
    if "get_ipython" in source:
        return code, _ipython_namespace()
    return code, {"__name__": "__main__"}


def _write_phase(path: Path | None, phase: dict[str, str]) -> None:
    if path is not None:
        _write_atomically(path, phase)


def _ipython_transform(source: str) -> str | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return None
    return TransformerManager().transform_cell(source)


def _ipython_namespace() -> dict[str, Any]:
    """The user namespace of a quiet IPython shell that keeps no history."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    return shell.user_ns


def _explain(exc: BaseException, prefix: str) -> str:
    if isinstance(exc, NotImplementedError):
        return "not implemented yet"
    if isinstance(exc, SystemExit):
        return f"called sys.exit({'' if exc.code is None else repr(exc.code)})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    return prefix + describe(exc) + _cell_line(exc)


def _cell_line(exc: BaseException) -> str:
    """`` (cell line N)`` for the deepest frame inside the learner's cell."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == CELL_FILENAME]
    return f" (cell line {lines[-1]})" if lines else ""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


@contextlib.contextmanager
def _discarded_output() -> Iterator[None]:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        yield


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, path)


if __name__ == "__main__":
    main(sys.argv[1:])
