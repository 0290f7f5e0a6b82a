"""One environment, pinned in one place.

pyproject.toml says what the course needs (its dependencies and the ``dev`` extra),
constraints.txt pins every package at the version the stored outputs were made with,
and both the Makefile and environment.yml (conda) install the course through them.
"""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
COURSE = "defer-the-expensive-job"
INSTALL = ["-c constraints.txt", "-e .[dev]"]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> list[Requirement]:
    project = _project()
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def _conda() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}; every line must be ``name==version``."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", line.strip())
        assert match, f"constraints.txt: {line!r} is not name==version; regenerate it: make lock"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_environment_yml_installs_the_course_with_its_extra_and_the_lock():
    [pip] = [item for item in _conda()["dependencies"] if isinstance(item, dict)]
    assert [re.sub(r"\s+", " ", line.strip()) for line in pip["pip"]] == INSTALL, (
        "environment.yml's pip section should be exactly "
        f"{INSTALL}: versions belong in pyproject.toml and constraints.txt"
    )


def test_environment_yml_uses_conda_forge_and_the_same_python_floor():
    env = _conda()
    assert env["channels"] == ["conda-forge"]
    [python] = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python.removeprefix("python") == _project()["requires-python"]
    assert "pip" in env["dependencies"]


def test_the_makefile_installs_with_the_lock_and_reinstalls_when_it_changes():
    makefile = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS := constraints.txt" in makefile
    assert "-c $(CONSTRAINTS) -e '.[dev]'" in makefile
    assert re.search(r"^\$\(STAMP\):.*\$\(CONSTRAINTS\)", makefile, re.MULTILINE)


def test_constraints_pin_every_dependency_at_a_version_pyproject_allows():
    pins = _pins()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside "
            f"pyproject.toml's {requirement}: run make lock"
        )


def test_constraints_pin_everything_the_course_pulls_in_here():
    """The installed course's whole dependency tree (this platform's markers) is in the lock."""
    pins = _pins()
    unpinned, seen = set(), set()
    todo = [(COURSE, frozenset({"dev"}))]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in extras | {""}
            )
            if wanted:
                dependency = canonicalize_name(requirement.name)
                if dependency not in pins:
                    unpinned.add(requirement.name)
                todo.append((dependency, frozenset(requirement.extras)))
    assert not unpinned, f"not pinned in constraints.txt: {sorted(unpinned)}; run make lock"
