"""Lesson 07's exercise on rate limits (a placeholder until its grader lands)."""

from __future__ import annotations

from shared.grading.exercise import Exercise

EXERCISES: list[Exercise] = []
