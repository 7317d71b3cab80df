"""A redis-server process the bot owns: single-instance mode when REDIS_URL is unset.

The same class starts the Redis used by the test suite, so tests exercise the
code path operators get by default.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """redis-server is not installed or would not start."""


@dataclass
class RedisProcess:
    """redis-server on a unix socket under ``data_dir``, AOF persistence optional.

    ``data_dir``: where the socket (``redis.sock``), the append-only file and
    ``redis.log`` live; created when missing. ``appendonly`` (default ``True``):
    persist every write, fsynced once a second, so a restart keeps what was
    acknowledged up to a second before a crash; ``False`` keeps nothing on disk.
    ``executable``: the redis-server binary (default: ``redis-server`` on PATH).
    Nothing starts until ``start`` or ``attach_or_start``.
    """

    data_dir: Path
    appendonly: bool = True
    executable: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout_seconds: float = 10.0) -> RedisProcess:
        """Start redis-server and wait up to ``timeout_seconds`` until it answers PING.

        Raises ``RedisUnavailable`` when it is not installed, exits, or stays silent.
        """
        exe = self.executable or shutil.which("redis-server")
        if exe is None:
            raise RedisUnavailable(
                "redis-server not found on PATH: install it (apt-get install redis-server) "
                "or set REDIS_URL to an existing Redis"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        args = [
            exe,
            "--port", "0",  # no TCP listener: only this machine's unix socket
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready(timeout_seconds)
        return self

    def attach_or_start(self, timeout_seconds: float = 10.0) -> RedisProcess:
        """Use the instance a running ``serve`` owns, or start one (CLI commands);
        ``timeout_seconds`` as for ``start``. ``pid`` is ``None`` when attached."""
        if self._ping():
            return self
        return self.start(timeout_seconds)

    def _wait_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                log = self.data_dir / "redis.log"
                detail = err or (log.read_text(errors="replace")[-2000:] if log.exists() else "")
                raise RedisUnavailable(f"redis-server exited at start: {detail.strip()}")
            if self._ping():
                return
            time.sleep(0.02)
        raise RedisUnavailable(
            f"redis-server did not answer on {self.socket_path} in {timeout_seconds}s"
        )

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)  # seconds: a local socket answers at once or not at all
                s.connect(str(self.socket_path))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def kill(self) -> None:
        """SIGKILL, as a crash would; AOF keeps what was fsynced."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """SIGTERM (Redis then fsyncs its AOF), SIGKILL after ``timeout_seconds``."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
