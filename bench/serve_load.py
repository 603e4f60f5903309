"""Closed-loop load on ``jina-vdb serve`` against direct ``encode_text`` batches (not a test).

Starts ``jina-vdb serve`` in a subprocess on a free 127.0.0.1 port, then for each client
count N (default 1, 8, 64, 256) runs N client threads (one keep-alive connection each),
each sending one single-query ``/v1/embeddings`` request after another (closed loop)
until ``--requests`` have been answered. It also embeds the same queries in-process with
direct ``encode_text`` calls: batches of 64 (the offline throughput) and one query per
call (the latency floor). Prints queries/s and p50 / p95 latency per N, the ratio to the
offline queries/s, the p50 minus the direct single-query time, the mean requests per
model call and the LoRA task switches (from the server's /metrics). ``--tasks
retrieval.query,code.query`` alternates the requests' tasks (a mixed workload: the
batcher keeps the loaded task while it has work, so switches stay few).

CPU (tiny model, the numbers in the README / closing note)::

    python bench/serve_load.py --model tiny --requests 256

GPU::

    python bench/serve_load.py --model jinaai/jina-embeddings-v4 --requests 4096

On a shared machine the clients and the server share the cores: read ratios, not
absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def queries(n: int) -> list[str]:
    topics = ["revenue", "trains", "paella", "vector search", "Berlin", "sushi", "MaxSim"]
    return [f"what about {topics[i % len(topics)]} number {i}?" for i in range(n)]


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "jina_vdb.cli", "serve", "--model", model, "--port", str(port)]
    return subprocess.Popen(
        cmd + extra, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("server not ready")


def closed_loop(
    port: int, clients: int, total: int, texts: list[str], tasks: list[str]
) -> tuple[float, list[float]]:
    """(seconds, per-request latencies) for ``total`` requests from ``clients`` threads.

    Each client is a thread with its own keep-alive ``http.client`` connection: an httpx
    AsyncClient with a pool of 64+ connections was itself the bottleneck here.
    """
    import http.client
    import json
    import threading

    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    errors: list[str] = []

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = next(counter, None)
            if i is None or errors:
                break
            task = tasks[i % len(tasks)]
            body = json.dumps({"input": [texts[i % len(texts)]], "task": task})
            started = time.perf_counter()
            conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {data[:200]!r}")
                break
            with lock:
                latencies.append(time.perf_counter() - started)
        conn.close()

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(errors[0])
    return time.perf_counter() - started, latencies


def batch_totals(url: str) -> tuple[float, float, float]:
    """(batches, requests batched, task switches) so far, from the server's /metrics."""
    import re

    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = dict(re.findall(r"^jina_vdb_batch_requests_(count|sum) ([0-9.e+]+)$", text, re.M))
    switches = re.search(r"^jina_vdb_task_switches_total ([0-9.e+]+)$", text, re.M)
    return (
        float(found.get("count", 0)),
        float(found.get("sum", 0)),
        float(switches.group(1)) if switches else 0.0,
    )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--clients", default="1,8,64,256")
    ap.add_argument("--requests", type=int, default=512, help="Requests per client count.")
    ap.add_argument("--device", default=None)
    ap.add_argument("--server-args", default="", help="Extra flags for jina-vdb serve.")
    ap.add_argument("--tasks", default="retrieval.query", help="Comma-separated tasks, alternated.")
    args = ap.parse_args()

    from jina_vdb.cli.support import load_encoder

    texts = queries(args.requests)
    tasks = args.tasks.split(",")
    encoder = load_encoder(args.model, device=args.device)
    kw = {"task": "retrieval", "prompt_name": "query", "multivector": False}
    encoder.encode_text(texts[:8], **kw)  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), 64):
        encoder.encode_text(texts[i : i + 64], **kw)
    offline_qps = len(texts) / (time.perf_counter() - started)
    singles = []
    for text in texts[:64]:
        t0 = time.perf_counter()
        encoder.encode_text([text], **kw)
        singles.append(time.perf_counter() - t0)
    direct_p50 = statistics.median(singles)
    del encoder

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = ["--max-queue", "4096"] + (["--device", args.device] if args.device else [])
    proc = start_server(args.model, port, extra + args.server_args.split())
    try:
        wait_ready(url, proc)
        closed_loop(port, 4, 32, texts, tasks)  # warm-up
        print(f"offline encode_text, batches of 64: {offline_qps:.1f} queries/s")
        print(f"direct single-query encode_text p50: {direct_p50 * 1000:.2f} ms")
        print(f"tasks: {', '.join(tasks)} (alternating)")
        print(
            "| clients | queries/s | vs offline | p50 ms | p95 ms | p50 - direct ms | req/batch "
            "| task switches |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in (int(c) for c in args.clients.split(",")):
            batches0, batched0, switches0 = batch_totals(url)
            seconds, lat = closed_loop(port, n, max(args.requests, n), texts, tasks)
            batches1, batched1, switches1 = batch_totals(url)
            per_batch = (batched1 - batched0) / max(1.0, batches1 - batches0)
            qps = len(lat) / seconds
            p50 = pct(lat, 0.5)
            print(
                f"| {n} | {qps:.1f} | {qps / offline_qps:.0%} | {p50 * 1000:.2f} | "
                f"{pct(lat, 0.95) * 1000:.2f} | {(p50 - direct_p50) * 1000:+.2f} | "
                f"{per_batch:.1f} | {switches1 - switches0:.0f} |",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
