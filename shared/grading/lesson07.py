"""Grading for lesson 07 (Dramatiq in production): one module per exercise, in notebook order."""

from __future__ import annotations

from shared.grading import lesson07_health, lesson07_outbox, lesson07_rate_limits

NOTEBOOK_PREFIX = "07_"

EXERCISES = [*lesson07_outbox.EXERCISES, *lesson07_rate_limits.EXERCISES,
             *lesson07_health.EXERCISES]
