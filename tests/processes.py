"""Server processes for tests that stop by themselves, even when the test run itself is killed.

Each server is started through util-linux's `setpriv --pdeathsig KILL`, so the kernel sends it SIGKILL when the
test process dies (a `kill -9` of pytest, a killed xdist worker); an atexit hook stops whatever is left at a
normal exit. `setpriv` also drops to another user (PostgreSQL refuses to run as root) and sets the death signal
after that switch, since a change of user clears it.
"""
from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

_live: set[subprocess.Popen] = set()


def which(name: str, hint: str = "scripts/bootstrap.sh --test installs it") -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed ({hint})")
    return path


def as_user(user: str | None) -> list[str]:
    """The setpriv prefix that runs a command as `user` (None: as ourselves) and kills it when we die."""
    prefix = [which("setpriv", "apt-get install util-linux"), "--pdeathsig", "KILL"]
    if user is not None and pwd.getpwuid(os.getuid()).pw_name != user:
        prefix[1:1] = ["--reuid", user, "--regid", user, "--init-groups"]
    return prefix + ["--"]


def spawn(cmd: list[str], log: Path | None, user: str | None = None, **kwargs) -> subprocess.Popen:
    """Start `cmd` (as `user`), its output appended to `log` (None: discarded); it dies with this process."""
    with open(log or os.devnull, "ab") as out:
        proc = subprocess.Popen(as_user(user) + cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, **kwargs)
    _live.add(proc)
    return proc


def kill(proc: subprocess.Popen | None, sig: int = signal.SIGKILL, wait: float = 10) -> None:
    """Send `sig` (a stopped process is woken first so it can act on it) and reap it."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            if sig not in (signal.SIGKILL, signal.SIGCONT):
                os.kill(proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait)
    _live.discard(proc)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        kill(proc, signal.SIGKILL, wait=5)


def wait_until(check, timeout: float, what: str, every: float = 0.05):
    """Poll `check()` until it returns something truthy (returned); RuntimeError naming `what` past `timeout`.
    Exceptions from `check` count as "not yet" (a server still starting refuses connections)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
            if got:
                return got
        except Exception as exc:  # noqa: BLE001 - not up yet; the last one is reported if it never comes up
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}"
                               + (f" (last error: {last!r})" if last else ""))
        time.sleep(every)


class ServerSet:
    """Server processes sharing one temp dir; `stop()` (or leaving the `with` block) kills them all and removes it."""

    dir: Path | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def processes(self) -> Iterable[subprocess.Popen | None]:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in list(self.processes()):
            kill(proc)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
