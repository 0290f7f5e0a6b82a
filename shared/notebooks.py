"""Re-execute notebooks in place, the same way every time: ``make notebooks``.

Each notebook runs top to bottom in a fresh kernel started in its own folder,
so the outputs committed with it are what a learner's Run-All produces.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ipykernel.kernelspec
import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from nbclient import NotebookClient
from traitlets import default

MAX_BYTES = 1_000_000


def execute_in_place(path: Path, timeout: int = 120) -> float:
    """Run every cell of ``path`` and save the outputs; return the seconds taken."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_manager_class=_ThisPythonKernel,
                            timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            record_timing=False)
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(notebook, path)
    return seconds


class _ThisPython(KernelSpecManager):
    """Run kernels with this interpreter, whatever "python3" means elsewhere.

    A user-wide kernelspec named python3 (pointing at another Python, one
    without the course installed) would otherwise win.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES,
                          **ipykernel.kernelspec.get_kernel_dict())


class _ThisPythonKernel(KernelManager):
    @default("kernel_spec_manager")
    def _this_python(self) -> KernelSpecManager:
        return _ThisPython()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    args = parser.parse_args(argv)
    too_big = []
    for path in args.notebooks:
        seconds = execute_in_place(path, args.timeout)
        size = path.stat().st_size
        print(f"{path}: ran in {seconds:.1f} s, {size / 1000:.0f} kB")
        if size > MAX_BYTES:
            too_big.append(path)
    for path in too_big:
        print(f"error: {path} is over {MAX_BYTES // 1000} kB: shrink its figures or outputs",
              file=sys.stderr)
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
