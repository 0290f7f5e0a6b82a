"""Run one learner cell and one exercise test, in a process of its own.

Usage: ``python -m shared.grading.child REQUEST.json RESULT.json``

The request names the lesson module, the exercise, the cell source and where
the cell came from. The verdict ``{"passed": bool, "reason": str}`` goes to
RESULT.json, never to stdout: whatever the learner prints is discarded. The
process ends with ``os._exit`` so threads the learner started cannot keep it
alive; the parent kills anything else the cell started.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator

from shared.grading import registry

CELL_FILENAME = "<exercise cell>"
MAX_REASON_CHARS = 300


def main(argv: list[str]) -> None:
    request_path, result_path = argv
    try:
        request = json.loads(Path(request_path).read_text(encoding="utf-8"))
        passed, reason = verdict(request)
    except BaseException as exc:  # a bug of the grader itself, not the learner's
        passed, reason = False, f"grader error: {_describe(exc)}"
    _write_atomically(Path(result_path), {"passed": passed, "reason": _one_line(reason)})
    os._exit(0)


def verdict(request: dict[str, Any]) -> tuple[bool, str]:
    """Run the cell, then the exercise's test, and say how it went."""
    exercise = registry.exercise_in(request["module"], request["exercise"])
    try:
        code = compile(request["source"], CELL_FILENAME, "exec")
    except SyntaxError as exc:
        return False, f"syntax error in {request['location']}, line {exc.lineno}: {exc.msg}"
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with _discarded_output():
        try:
            exec(code, namespace)
        except BaseException as exc:
            return False, _explain(exc, "running the cell raised ")
        try:
            exercise.test(namespace)
        except AssertionError as exc:
            return False, str(exc) or f"the test of {exercise.name} failed"
        except BaseException as exc:
            return False, _explain(exc, "")
    return True, ""


def _explain(exc: BaseException, prefix: str) -> str:
    if isinstance(exc, NotImplementedError):
        return "not implemented yet"
    if isinstance(exc, SystemExit):
        return f"called sys.exit({'' if exc.code is None else repr(exc.code)})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    return prefix + _describe(exc) + _cell_line(exc)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


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
