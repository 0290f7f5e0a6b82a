"""One progress bar for everything that makes you wait: a widget in Jupyter, text elsewhere.

tqdm's text bar goes to stderr, which JupyterLab paints as a pink warning
box.  Inside a Jupyter kernel :func:`progress_bar` draws tqdm's ipywidgets
bar instead and writes nothing to stderr; on a terminal it is tqdm's usual
text bar on stderr.

Only the thread that opened a bar may update it: output from a background
thread lands in whichever notebook cell happens to run next.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tqdm.std import tqdm as text_tqdm

if TYPE_CHECKING:
    from tqdm.notebook import tqdm_notebook

#: With ``enabled=None`` a bar appears only once the work has lasted this long.
DELAY_SECONDS = 2.0

#: The least time between two redraws of the bar.
_REDRAW_SECONDS = 0.25


class ProgressBar:
    """A progress bar of ``total`` steps; use it as a context manager.

    ``enabled=True`` shows it, ``False`` never does, and ``None`` shows it
    only for work that lasts longer than :data:`DELAY_SECONDS` (keep
    calling ``update(0)`` while you wait, so it can appear).  A bar of no
    steps is never shown.  In Jupyter the widget is put in the cell's output
    at the start in every case and merely stays hidden until it is due, so
    a cell's stored output does not depend on how fast the machine was.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "it",
                 enabled: bool | None = True) -> None:
        if not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be a whole number >= 0, got {total!r}")
        if enabled not in (True, False, None):
            raise ValueError(f"enabled must be True, False or None, got {enabled!r}")
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self._bar: text_tqdm | None = None
        self._widget: tqdm_notebook | None = None  # the same bar, when it is a widget
        self._hidden_until: float | None = None  # widget bars waiting for DELAY_SECONDS
        self._count = 0

    @property
    def n(self) -> int:
        """Steps done so far."""
        return self._count

    def __enter__(self) -> ProgressBar:
        if self.enabled is False or self.total == 0:
            return self
        options: dict[str, Any] = dict(total=self.total, desc=self.desc or None,
                                       unit=self.unit, mininterval=_REDRAW_SECONDS)
        delay = DELAY_SECONDS if self.enabled is None else 0.0
        if in_jupyter():
            self._bar = self._widget = _widget_bar(options, hidden=delay > 0)
            if self._widget is not None:
                self._hidden_until = time.monotonic() + delay if delay > 0 else None
                return self
        # On a terminal, stderr as usual; in Jupyter without ipywidgets, stdout,
        # which JupyterLab does not paint as a warning.
        self._bar = text_tqdm(**options, delay=delay,
                              file=sys.stdout if in_jupyter() else sys.stderr)
        return self

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps done (``update(0)`` just lets a due bar appear)."""
        self._count += n
        if self._bar is None:
            return
        if (self._widget is not None and self._hidden_until is not None
                and time.monotonic() >= self._hidden_until):
            self._hidden_until = None
            self._widget.container.layout.display = None  # the widget's default: shown
        self._bar.update(n)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()  # a widget bar left short of its total turns red
            self._bar = self._widget = None

    def __repr__(self) -> str:
        return f"<ProgressBar {self.desc!r} {self._count}/{self.total} {self.unit}>"


def progress_bar(total: int, desc: str = "", unit: str = "it",
                 enabled: bool | None = True) -> ProgressBar:
    """A :class:`ProgressBar`: ``with progress_bar(20, "signups", "req") as bar: bar.update()``."""
    return ProgressBar(total, desc, unit, enabled)


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code, nbclient)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _widget_bar(options: dict[str, Any], *, hidden: bool) -> tqdm_notebook | None:
    """tqdm's ipywidgets bar, put in the cell's output now; None without ipywidgets."""
    try:
        # Only in Jupyter: tqdm.notebook imports ipywidgets. (IProgress: not in tqdm's stubs.)
        from tqdm.notebook import IProgress, tqdm_notebook  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return None
    if IProgress is None:  # ipywidgets is not installed
        return None
    from IPython.display import display  # noqa: PLC0415 - only in Jupyter

    # Displayed by us, not by tqdm, so that it can start hidden.  Its
    # text/plain (what a notebook stores besides the widget) is the bar at
    # 0 steps: the same on every run once the checker blanks the times.
    bar = tqdm_notebook(**options, display=False)
    if hidden:
        bar.container.layout.display = "none"
    display(bar.container)
    return bar
