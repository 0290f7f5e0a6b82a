"""Helpers for exercise tests: every failure becomes a one-line AssertionError.

``NotImplementedError`` always passes through untouched, so a stub is
reported as "not implemented yet" rather than as a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import describe

__all__ = ["call", "call_text", "describe", "expect_raises", "function"]

MAX_ARG_CHARS = 120


def function(namespace: dict[str, Any], name: str) -> Callable[..., Any]:
    """The learner's function ``name``, or a failure saying it is missing.

    The function comes back under ``name`` even if it is a lambda, so messages
    quote calls the way the exercise spells them.
    """
    if name not in namespace:
        raise AssertionError(f"{name} is not defined — did you rename it?")
    value = namespace[name]
    if not callable(value):
        raise AssertionError(f"{name} is a {type(value).__name__}, not a function")

    def learner_function(*args: Any, **kwargs: Any) -> Any:
        return value(*args, **kwargs)

    learner_function.__name__ = name
    return learner_function


def call_text(name: str, *args: Any, **kwargs: Any) -> str:
    """How a call reads in a message: ``percentile([1, 2], 50)``."""
    parts = [_short_repr(a) for a in args] + [f"{k}={_short_repr(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the learner's ``fn``; an unexpected exception becomes a failure."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{call_text(_name(fn), *args, **kwargs)} raised {describe(exc)}") from None


def expect_raises(exc_type: type[Exception], why: str, fn: Callable[..., Any],
                  *args: Any, **kwargs: Any) -> None:
    """Fail unless ``fn(*args, **kwargs)`` raises ``exc_type``; ``why`` explains the rule."""
    text = call_text(_name(fn), *args, **kwargs)
    try:
        returned = fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except exc_type:
        return
    except Exception as exc:
        raise AssertionError(
            f"{text} raised {describe(exc)}, expected {exc_type.__name__} ({why})") from None
    raise AssertionError(f"{text} returned {_short_repr(returned)}, expected {exc_type.__name__} ({why})")


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "the function")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_ARG_CHARS else text[: MAX_ARG_CHARS - 1] + "…"
