"""environment.yml (conda) and pyproject.toml (pip) must describe one environment."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def _pip_section(env) -> list[str]:
    [pip] = [item for item in env["dependencies"] if isinstance(item, dict)]
    return pip["pip"]


def test_environment_yml_installs_exactly_the_pyproject_dependencies():
    wanted = sorted(_normalise(d) for d in _pyproject()["dependencies"])
    listed = sorted(_normalise(d) for d in _pip_section(_conda()) if d != "-e .")
    assert listed == wanted, "run the same pins in both files"


def test_environment_yml_installs_the_course_itself():
    assert "-e ." in _pip_section(_conda())


def test_environment_yml_uses_conda_forge_and_the_same_python_floor():
    env = _conda()
    assert env["channels"] == ["conda-forge"]
    [python] = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert python.removeprefix("python") == _pyproject()["requires-python"]
    assert "pip" in env["dependencies"]
