"""Progress bars (placeholder until the widget version lands)."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, mininterval=0.25, disable=not enabled)
