"""Lesson 07, section 8: quiet Dramatiq logs while a test-style cell runs a failing actor.

A failed message makes the worker log the traceback at ERROR, on stderr (a pink
box in Jupyter, and a failure under nbval). A test runner captures it; a
notebook cell needs this.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_dramatiq() -> Iterator[None]:
    """Drop Dramatiq's log lines inside the ``with`` block, then restore the logger."""
    logger = logging.getLogger("dramatiq")
    drop = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(drop)  # the worker's loggers are its children: their lines end here
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(drop)
        logger.propagate = propagate
