"""Throwaway Redis and PostgreSQL servers for the fault tests, on spare loopback ports.

Each is a process of the test's own, stopped and started by its PID: the shared servers on
6379 and 5432 are never touched. PostgreSQL refuses to run as root, so when the tests run as
root its cluster belongs to the `postgres` user and runs under `runuser`.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, up: bool = True, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            listening = True
        except OSError:
            listening = False
        if listening == up:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {timeout} s")
        time.sleep(0.05)


class Redis:
    """`redis-server` on a spare port, nothing kept on disk. `stop()` and `start()` again keep
    the port, so clients configured with `url` reconnect to the new process."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Redis":
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        wait_for_port(self.port, up=False)


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name) or name


class Postgres:
    """A cluster of its own (`initdb` in a temporary folder), trust auth on 127.0.0.1 only.
    `stop()` is an immediate shutdown (connections cut, as in a crash or failover); `start()`
    brings the same cluster back on the same port."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tally-faults-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as_owner, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "Postgres":
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return self

    @property
    def running(self) -> bool:
        status = subprocess.run(
            [*self._as_owner, _pg_bin("pg_ctl"), "-D", str(self.data), "status"], capture_output=True
        )
        return status.returncode == 0

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        wait_for_port(self.port, up=False)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


class CeleryWorker:
    """`celery -A usage_site worker` as the Procfile runs it (prefork), with one child and the
    environment given (DATABASE_URL and REDIS_URL of the test's own servers), in a process group
    of its own. `kill()` SIGKILLs the whole group, as when its machine or container dies;
    `kill_child()` only the child running the task, as the kernel's OOM killer would."""

    def __init__(self, env: dict, log: Path, *, cwd: Path | None = None):
        self.env, self.log, self.cwd = env, log, cwd
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "CeleryWorker":
        """Returns once the worker says it is ready (consuming)."""
        name = f"faults-{os.getpid()}-{time.monotonic_ns()}@%h"  # workers of one broker need distinct names
        command = [sys.executable, "-m", "celery", "-A", "usage_site", "worker", "--loglevel", "INFO"]
        command += ["--concurrency", "1", "--hostname", name, "--without-mingle", "--without-gossip"]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        start = self.log.stat().st_size
        deadline = time.monotonic() + timeout
        while " ready." not in self.log.read_text()[start:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the Celery worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def child_pids(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def kill_child(self) -> int:
        (child,) = self.child_pids()
        os.kill(child, signal.SIGKILL)
        return child

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL for whatever is left of the group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a child the warm shutdown left behind
        except ProcessLookupError:
            pass
        self.proc.wait(10)
