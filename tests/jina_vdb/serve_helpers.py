"""A real ``jina-vdb serve`` in a subprocess on a free 127.0.0.1 port, for the server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx
from ingest_helpers import REPO, cli_command, subprocess_env

API_KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``jina-vdb serve`` with the given flags; ``url`` once /readyz answers 200."""

    def __init__(self, model: Path, log: Path, *flags: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log: IO[str] = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        # The tests compare with the in-process tiny model bit for bit: a float32 matmul's
        # last bits depend on the thread count, so the server uses the same count.
        import torch

        threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}
        cmd = cli_command("serve", "--model", str(model), "--port", str(self.port), *flags)
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=subprocess_env(**{**threads, **(env or {})}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8")[-4000:]

    def terminate(self) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
