"""Count lines of code the way people mean it: no blank lines, comments or docstrings."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def code_lines(*module_names: str) -> int:
    """Lines of code in the named modules (``"shared.modes.dramatiq.actors"``), unimported."""
    total = 0
    for name in module_names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no module named {name!r}")
        total += _count(Path(spec.origin).read_text(encoding="utf-8"))
    return total


def _count(source: str) -> int:
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), start=1)
               if line.strip() and not line.strip().startswith("#") and number not in docstrings)


def package_modules(package: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """The modules of ``package`` (itself included), minus those whose name contains a ``skip`` word."""
    import pkgutil  # noqa: PLC0415

    spec = importlib.util.find_spec(package)
    if spec is None:
        return []
    names = [package]
    if spec.submodule_search_locations:
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(spec.submodule_search_locations)]
    return [name for name in names if not any(word in name.rsplit(".", 1)[-1] for word in skip)]
