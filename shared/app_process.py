"""Run the signup app in a child process, so that a lesson can stop it for real.

``AppProcess("thread-queue", smtp_port=..., store_path=...)`` starts
``python -m shared.app_process ...`` and waits until it answers. Then
:meth:`AppProcess.stop` asks it to stop (SIGTERM: it drains, like Ctrl-C),
and :meth:`AppProcess.kill` does what a crash, the OOM killer or a
``kill -9`` does: SIGKILL, no clean-up at all. The store is a file the
parent passes in, so the parent can still read what the child recorded.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from shared.processes import start_child, stop_tree, wait_until

STARTUP_SECONDS = 20.0
READY = "listening on "


class AppFailedToStart(RuntimeError):
    """The child app exited or stayed silent; the message quotes its last words."""


class AppProcess:
    """The signup app in a child process of its own (its own process group)."""

    def __init__(self, mode: str, *, smtp_port: int, store_path: str | Path,
                 smtp_host: str = "127.0.0.1", workers: int | None = None,
                 queue_size: int | None = None, avatar_canvas: int | None = None,
                 hold_workers: bool = False) -> None:
        self.mode, self.smtp_host, self.smtp_port = mode, smtp_host, smtp_port
        self.store_path = Path(store_path)
        self.options = {"workers": workers, "queue_size": queue_size,
                        "avatar_canvas": avatar_canvas}
        # thread-queue only: the workers wait for release_workers() (SIGUSR1) to start
        self.hold_workers = hold_workers
        self.process: subprocess.Popen | None = None
        self.url = ""
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the app process is not started: call start() first")
        return self.process.pid

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "shared.app_process", "--mode", self.mode,
                   "--smtp-host", self.smtp_host, "--smtp-port", str(self.smtp_port),
                   "--store", str(self.store_path)]
        for name, value in self.options.items():
            if value is not None:
                command += [f"--{name.replace('_', '-')}", str(value)]
        if self.hold_workers:
            command.append("--hold-workers")
        return command

    def start(self, timeout: float = STARTUP_SECONDS) -> AppProcess:
        """Start the child and wait until it listens (``AppFailedToStart`` otherwise)."""
        if self.process is not None:
            return self
        self._stderr = tempfile.TemporaryFile()
        self.process = start_child(self.command(), stdout=subprocess.PIPE, stderr=self._stderr)
        line = self._first_line(self.process, timeout)
        if not line.startswith(READY):
            self._give_up(f"it said {line!r} instead of {READY!r}" if line else
                          f"it did not answer within {timeout:g} s")
        self.url = line[len(READY):].strip()
        return self

    def _first_line(self, process: subprocess.Popen, timeout: float) -> str:
        """The child's first line on stdout; "" if it printed none within ``timeout`` s."""
        stdout = process.stdout
        assert stdout is not None, "the child must be started with stdout=PIPE"

        def exited() -> str | None:
            return None if process.poll() is None else f"it exited with code {process.returncode}"

        with selectors.DefaultSelector() as selector:  # select() fails on fds over 1023
            selector.register(stdout, selectors.EVENT_READ)
            try:
                wait_until(lambda: selector.select(0.05), timeout, "the app's first line",
                           interval=0, problem=exited)
            except TimeoutError:
                return ""
            except RuntimeError:  # from exited(), unless the process still runs
                if process.poll() is None:
                    raise
                self._give_up(exited() or "it exited")
        return stdout.readline().decode("utf-8", "replace").strip()

    def _give_up(self, why: str) -> None:
        tail: list[str] = []
        if self._stderr is not None and not self._stderr.closed:
            self._stderr.seek(0)
            tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
        self.stop(timeout=2)
        raise AppFailedToStart(f"the {self.mode} app did not start: {why}"
                               + (f"; its last words: {' | '.join(tail)}" if tail else ""))

    def release_workers(self) -> None:
        """Start the workers of an app started with ``hold_workers=True`` (it sends SIGUSR1)."""
        os.kill(self.pid, signal.SIGUSR1)

    def kill(self) -> int:
        """SIGKILL the app, as a crash would: nothing in its memory survives. Returns the exit code."""
        if self.process is None:
            raise RuntimeError("the app process is not started: call start() first")
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        code = self.process.wait(10)
        self._close_files()
        return code

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask the app to stop (SIGTERM: it drains its queue); SIGKILL after ``timeout`` s."""
        if self.process is None:
            return None
        stop_tree(self.process, timeout)
        self._close_files()
        return self.process.returncode

    def _close_files(self) -> None:
        for stream in (self.process.stdout if self.process else None, self._stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self.process is None:
            return f"<AppProcess {self.mode} not started>"
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        return f"<AppProcess {self.mode} pid {self.process.pid} {state} {self.url}>"


# -- the child -------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from shared.app import create_app, state  # noqa: PLC0415 - the parent needs none of it
    from shared.modes import redis_url_for  # noqa: PLC0415
    from shared.settings import Settings  # noqa: PLC0415
    from shared.store import Store  # noqa: PLC0415
    from shared.web import BackgroundServer  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m shared.app_process",
                                     description="Serve the signup app until SIGTERM.")
    parser.add_argument("--mode", required=True)
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--store", required=True, help="the SQLite store file to use")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--queue-size", type=int)
    parser.add_argument("--avatar-canvas", type=int)
    parser.add_argument("--hold-workers", action="store_true",
                        help="thread-queue: start the workers only on SIGUSR1")
    args = parser.parse_args(argv)
    options = {name: value for name, value in
               (("workers", args.workers), ("queue_size", args.queue_size)) if value is not None}
    if args.hold_workers:
        options["start_workers"] = False
    settings = Settings(smtp_host=args.smtp_host, smtp_port=args.smtp_port,
                        **({"avatar_canvas": args.avatar_canvas} if args.avatar_canvas else {}))
    app = create_app(args.mode, settings=settings, store=Store(args.store),
                     redis_url=redis_url_for(args.mode), **options)
    server = BackgroundServer(app).listen()
    if args.hold_workers:
        # Only the thread-queue runner takes start_workers=False, and it has start().
        signal.signal(signal.SIGUSR1, lambda signum, frame: state(app).runner.start())  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"{READY}{server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server.stop()
    state(app).close(timeout=10)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
