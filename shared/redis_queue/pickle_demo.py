"""Why jobs travel as JSON: unpickling a message runs code chosen by its author.

Harmless and local: the crafted payload only creates an empty marker file
at a path you choose (use a temporary folder). The same bytes handed to the
course's JSON decoder are rejected, and nothing runs.

``python -m shared.redis_queue.pickle_demo URL KEY`` is a one-job "worker"
that pops one message from the list KEY and unpickles it, as a queue built
on pickle would.
"""

from __future__ import annotations

import pathlib
import pickle
import sys
from typing import cast

from shared.redis_queue.queue import connect


class _CreatesFile:
    """Pickles as "call Path.touch(marker)": pickle calls it while loading."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def crafted_payload(marker: str | pathlib.Path) -> bytes:
    """A pickle that, when loaded, creates the empty file ``marker``."""
    return pickle.dumps(_CreatesFile(pathlib.Path(marker)))


def main(argv: list[str]) -> int:
    url, key = argv
    client = connect(url)
    item = client.brpop([key], timeout=5)
    if item is None:
        print(f"no message in {key} within 5 s", file=sys.stderr)
        return 1
    job = pickle.loads(cast(bytes, item[1]))  # noqa: S301 - the point of the demo
    print(f"unpickled: {job!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
