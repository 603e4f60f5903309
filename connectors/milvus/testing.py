"""A real Milvus standalone server on free loopback ports, for tests and benchmarks.

The PyPI package ``milvus`` (2.3.5; ``pip install 'jina-vdb[test]'``) ships the Milvus
standalone binary with embedded etcd and rocksmq. Its own Python wrapper binds ports
without SO_REUSEADDR, takes the fixed etcd ports 2379/2380 and changes the working directory
of the calling process, so this module only borrows its template renderer and data files
and runs the binary itself:

- every port is chosen free (proxy, the coordinators and nodes, metrics, and etcd's client
  and peer ports through an embedded-etcd config file), so several servers can run at once
  and a restart after ``kill()`` gets the same ports back (Go listeners reuse addresses);
- data, logs and config live in one folder; the server runs in its own process group and is
  stopped by its PID (``stop`` / ``kill``), never by name.

Measured on a 2-core machine: healthy ~2.5 s after the first start, ~8 s after a
``kill -9`` restart; collections then answer "not loaded" until the dead process's etcd
session expires (``common.session.ttl``: 30 s by default, ~28 s of "not loaded"; this
module sets ``session_ttl`` 10 s).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

from ..errors import MissingDependencyError

logger = logging.getLogger(__name__)

#: The ``*_port`` keys of the milvus package's config template.
PORT_KEYS = (
    "proxy_port",
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
    "etcd_port",
)
#: Seconds an etcd session of a dead process lives on (Milvus default 30): after a crash,
#: collections answer "not loaded" until the dead query node's session expires. Lowered so
#: a crash-and-restart test serves again in ~15 s instead of ~40 s.
SESSION_TTL_S = 10
#: Seconds a graceful stop may take before the process group is killed (a clean
#: shutdown of 2.3.5 takes ~30 s; test data is thrown away anyway).
STOP_GRACE_S = 3.0


def _milvus_package() -> ModuleType:
    try:  # an optional test dependency (untyped), imported at first use
        return importlib.import_module("milvus")
    except ImportError as e:
        raise MissingDependencyError(
            "the milvus package (a local Milvus server) is required: pip install 'jina-vdb[test]'"
        ) from e


def _die_with_parent() -> None:
    """In the forked child: SIGKILL it when the process that started it dies.

    A test run killed by SIGTERM or SIGKILL skips fixture teardown; without this its server
    (~250 MB, in its own session) would outlive it. Linux only; elsewhere a no-op.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child of ``Popen`` must not import or load libraries.
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalMilvusServer:
    """One Milvus 2.3 standalone process with its data in ``base_dir``.

    Use as a context manager, or call ``start()`` and ``stop()``. ``kill()`` + ``start()``
    simulates a crash and restart on the same ports and data.
    """

    def __init__(self, base_dir: Path | str, *, session_ttl: int = SESSION_TTL_S) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.session_ttl = session_ttl
        self.ports = {key: free_port() for key in PORT_KEYS}
        self.etcd_peer_port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] | None = None

    @property
    def uri(self) -> str:
        """The gRPC URI clients connect to."""
        return f"http://127.0.0.1:{self.ports['proxy_port']}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def version(self) -> str:
        return str(_milvus_package().__version__)

    def _prepare(self) -> dict[str, str]:
        """Write the config files and unpack the binary (once); the process environment."""
        milvus = _milvus_package()
        config = milvus.MilvusServerConfig(data_dir=str(self.base_dir), **self.ports)
        config.set("common.session.ttl", self.session_ttl)
        config.resolve()  # checks the ports, creates the folders, writes configs/milvus.yaml
        milvus._initialize_data_files(str(self.base_dir))  # unpacks bin/ (cached by checksum)
        client_url = f"http://127.0.0.1:{self.ports['etcd_port']}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        etcd = self.base_dir / "configs" / "embed-etcd.yaml"
        etcd.write_text(
            f"listen-client-urls: {client_url}\nadvertise-client-urls: {client_url}\n"
            f"listen-peer-urls: {peer_url}\ninitial-advertise-peer-urls: {peer_url}\n"
            f"initial-cluster: default={peer_url}\n",
            encoding="utf-8",
        )
        bin_dir = self.base_dir / "bin"
        return {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),
            "MILVUS_RUN_DIR": str(self.base_dir / "run"),
            "ETCD_CONFIG_PATH": str(etcd),
            "LD_LIBRARY_PATH": os.pathsep.join(
                p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p
            ),
        }

    def start(self, timeout: float = 90.0) -> None:
        """Start the server (again, after ``kill``/``stop``) and wait until it is healthy."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"Milvus server {self.pid} is already running")
        if self._env is None:
            self._env = self._prepare()
        on_main_thread = threading.current_thread() is threading.main_thread()
        log = (self.base_dir / "logs" / "milvus-stdout.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [str(self.base_dir / "bin" / "milvus"), "run", "standalone"],
                cwd=self.base_dir,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped by PID, not by name
                # The kernel sends the parent-death signal when the *thread* that forked
                # exits: only the main thread outlives the server (a restart from a timer
                # thread would otherwise be killed the moment that thread ends).
                preexec_fn=_die_with_parent if on_main_thread else None,
            )
        finally:
            log.close()
        started = time.monotonic()
        self._wait_healthy(self.process, timeout)
        logger.info(
            "Milvus %s server %d healthy at %s after %.1fs",
            self.version,
            self.pid,
            self.uri,
            time.monotonic() - started,
        )

    def _wait_healthy(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.process = None
                raise RuntimeError(
                    f"Milvus server exited with code {process.returncode} while starting; "
                    f"see {self.base_dir / 'logs'}"
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if b"OK" in answer.read():
                        return
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"Milvus server not healthy after {timeout:.0f}s; see {self.base_dir}")

    def kill(self) -> None:
        """``kill -9`` the server's process group (a crash: nothing is flushed)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``STOP_GRACE_S``; idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        self._signal(signal.SIGTERM, wait=STOP_GRACE_S)
        if self.process is not None:
            self.kill()

    def _signal(self, sig: signal.Signals, wait: float = 30.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)  # the group started with the server: its PID
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return
        self.process = None

    def __enter__(self) -> LocalMilvusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
