"""``accessbot serve`` as a real subprocess, the way an operator starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cluster import REPO, free_port
from tests.support.harness import POLICY
from tests.support.patience import PATIENCE
from tests.support.slack_emulator import SlackEmulator

SECRET = "serve-test-signing-secret"
BOT_TOKEN = "xoxb-serve-test"


def serve_env(emu: SlackEmulator, tmp: Path, kubeconfig: Path, **extra: str) -> dict[str, str]:
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": emu.base_url,
        "ACCESSBOT_POLICY": str(policy),
        "KUBECONFIG": str(kubeconfig),
        "ACCESSBOT_DATA_DIR": str(tmp / "data"),
        "ACCESSBOT_LEASE_SECONDS": "2",
        **extra,
    }


@dataclass
class ServeProcess:
    """One ``python -m bot serve`` with its own environment and log file."""

    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"serve-{self.starts}.log"

    def start(self, timeout: float = PATIENCE) -> ServeProcess:
        self.starts += 1
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ACCESSBOT_"))}
        base.pop("REDIS_URL", None)
        env = {
            **base,
            "PYTHONPATH": str(REPO),
            "ACCESSBOT_HTTP_HOST": "127.0.0.1",
            "ACCESSBOT_HTTP_PORT": str(self.port),
            "ACCESSBOT_LOG_FORMAT": "console",
            **self.env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve"], cwd=self.workdir, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.wait_ready(timeout)
        return self

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.get("/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve not ready after {timeout}s:\n{self.logs()}")

    def terminate(self, timeout: float = PATIENCE) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self, tail: int | None = 4000) -> str:
        """Each start's log (its last ``tail`` characters; None for all of it)."""
        texts = (p.read_text(errors="replace") for p in sorted(self.workdir.glob("serve-*.log")))
        return "\n".join(t if tail is None else t[-tail:] for t in texts)
