"""Every lesson has the same frame, and the navigation between lessons is one chain.

The frame (the Carpentries' order): the header with its navigation, the title, what you will
learn, the time; then the sections; then "Check your understanding" with the answers folded,
the key points, and the footer's navigation. The chain: each lesson's Previous and Next
name its neighbours, the exercises notebook points back to its lesson, and the README's
syllabus links every lesson and its exercises.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


def markdown(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def footer(cells: list[str]) -> str:
    """The navigation under the last rule (``---``) of the last markdown cell."""
    last = cells[-1]
    return last.rsplit("---\n", 1)[1] if "---\n" in last else ""


def links(text: str) -> dict[str, str]:
    """Link target -> link text, for the markdown links of ``text``."""
    return {target: label for label, target in LINK.findall(text)}


def neighbours(index: int) -> tuple[Path | None, Path | None]:
    before = LESSONS[index - 1] if index > 0 else None
    after = LESSONS[index + 1] if index + 1 < len(LESSONS) else None
    return before, after


@pytest.mark.parametrize("index", range(len(LESSONS)), ids=[p.stem for p in LESSONS])
def test_each_lesson_has_the_course_frame(index):
    path = LESSONS[index]
    cells = markdown(path)
    head = cells[0]
    number = path.name[:2]
    assert head.startswith("[Course home](../README.md)"), f"{path.name}: header navigation first"
    assert re.search(rf"^# {number} · ", head, re.M), f"{path.name}: title '# {number} · ...'"
    for part in ("**What you will learn**", "**Time:**"):
        assert part in head, f"{path.name}: the header cell has no {part}"
    titles = [c.splitlines()[0] for c in cells]
    check = titles.index("## Check your understanding")
    assert "<details>" in cells[check], f"{path.name}: answers are folded in <details>"
    assert "## Key points" in cells[check] or "## Key points" in titles[check:], \
        f"{path.name}: key points after the questions"
    assert footer(cells).startswith("◀ Previous"), f"{path.name}: the footer navigation comes last"


@pytest.mark.parametrize("index", range(len(LESSONS)), ids=[p.stem for p in LESSONS])
def test_previous_and_next_name_the_neighbours(index):
    path = LESSONS[index]
    before, after = neighbours(index)
    cells = markdown(path)
    for where, text in (("header", cells[0]), ("footer", footer(cells))):
        targets = links(text)
        exercises = f"../exercises/{path.name}"
        assert exercises in targets, f"{path.name}: the {where} links its exercises"
        assert (ROOT / "exercises" / path.name).exists(), f"exercises/{path.name} is missing"
        lesson_targets = {t for t in targets if re.fullmatch(r"\d\d_\w+\.ipynb", t)}
        expected = {p.name for p in (before, after) if p is not None}
        assert lesson_targets == expected, \
            f"{path.name}: the {where} links {sorted(lesson_targets)}, expected {sorted(expected)}"
        if after is not None:
            assert "Next" in text, f"{path.name}: the {where} says Next"


@pytest.mark.parametrize("index", range(len(LESSONS)), ids=[p.stem for p in LESSONS])
def test_solutions_link_back_to_their_lesson_and_on(index):
    path = LESSONS[index]
    solution = ROOT / "solutions" / path.name
    assert solution.exists(), f"solutions/{path.name} is missing"
    cells = markdown(solution)
    _, after = neighbours(index)
    for where, text in (("header", cells[0]), ("footer", footer(cells))):
        targets = links(text)
        assert f"../lessons/{path.name}" in targets, f"solutions/{path.name}: {where} links its lesson"
        if after is not None:
            assert f"../lessons/{after.name}" in targets, \
                f"solutions/{path.name}: the {where} links the next lesson, {after.name}"


def test_the_readme_syllabus_links_every_lesson_and_its_exercises():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = links(readme)
    for path in LESSONS:
        assert f"lessons/{path.name}" in targets, f"README: no syllabus row for {path.name}"
        assert f"exercises/{path.name}" in targets, f"README: no exercises link for {path.name}"
