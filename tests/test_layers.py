"""Every module of shared/ has a place in pyproject.toml's import-linter contracts.

`make lint` (lint-imports) checks the imports against the contracts; this checks the
contracts against the modules, so a new module cannot slip past them unplaced.
"""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _layered() -> set[str]:
    """The modules the layers contract names (siblings in a layer are split by : or |)."""
    return {name.strip() for layer in _contracts()["layers"]["layers"]
            for name in re.split(r"[:|]", layer)}


def _modules() -> list[str]:
    """Every module of the package, by dotted name; packages by their own name too."""
    names = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _placed(module: str, listed: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in listed)


def test_the_product_layers_and_the_forbidden_contract_name_the_same_modules():
    sources = set(_contracts()["experiments"]["source_modules"])
    assert _layered() == sources, (
        "pyproject.toml: the layers contract and the experiments contract's source_modules "
        f"should list the same product modules; only in one: {sorted(_layered() ^ sources)}")


def test_every_module_is_in_the_product_or_among_the_experiments():
    listed = _layered() | set(_contracts()["experiments"]["forbidden_modules"])
    modules = _modules()
    packages = {name for name in modules if (ROOT / name.replace(".", "/")).is_dir()}
    unplaced = [name for name in modules
                if name not in packages and not _placed(name, listed)]
    assert not unplaced, (
        f"{unplaced} are in no import-linter contract: add each to a layer in pyproject.toml "
        "(product code) or to the experiments' forbidden_modules (lessons, measuring, grading)")
