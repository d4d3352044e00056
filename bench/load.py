"""Load bench for the HTTP API: N concurrent clients ask a rotating set of French and English questions
(REST, SSE and OpenAI chat completions in turn) while a ~30 KB document is uploaded and indexed and the
index refreshed (`--rebuild`: re-embedded whole), and report errors and latency percentiles as JSON and
markdown.

    .venv/bin/python bench/load.py                      # starts `rag serve` itself on a free loopback port
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860 --key "$RAG_API_KEY"

Loopback only, bounded in requests and time; exits 1 if any question failed. With no --url, the server
runs the extractive generator on a copy of corpus/ in a temporary folder (the e5 model is linked from
RAG_TEST_MODELS_DIR or .rag-test/models when materialised there, so it is not rebuilt).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import harness  # noqa: E402

QUESTIONS = [
    "Quand DeepSeek a-t-il été lancé ?",
    "When was DeepSeek launched?",
    "Quel modèle d'OpenAI DeepSeek R1 prétend-il surpasser ?",
    "Which OpenAI model did DeepSeek R1 claim to beat?",
    "Pourquoi DeepSeek n'a-t-il pas accès aux puces les plus avancées ?",
    "Why is R1 said to use less energy than its American competitors?",
    "Où et quand le projet Zéphyr a-t-il été lancé ?",  # answerable once the upload is indexed
    "What is the capital of Mongolia?",  # refused: not in the documents
]
ENDPOINTS = ("ask", "stream", "chat")
UPLOAD_NAME = "bench_projet_zephyr.txt"


def upload_text(modules: int = 240) -> str:
    """A fictional report of ~30 KB (distinct sentences, so about 30 chunks to embed while clients ask)."""
    lines = [
        "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion. "
        "Zéphyr est un planeur solaire expérimental conçu pour cartographier les glaciers des Alpes."
    ]
    for i in range(1, modules + 1):
        lines.append(
            f"Le module {i} du planeur Zéphyr pèse {(i * 37) % 97 + 3} kilogrammes et a été testé "
            f"{(i * 11) % 23 + 1} fois au-dessus du glacier numéro {(i * 7) % 41 + 1}."
        )
    return "\n".join(lines) + "\n"


@dataclass
class Result:
    endpoint: str
    question: str
    started: float
    seconds: float
    ok: bool
    status: int | None = None
    error: str | None = None
    during_indexing: bool = False


@dataclass
class WriterResult:
    operation: str
    started: float
    seconds: float
    status: int | None
    detail: dict | str | None = None


@dataclass
class Bench:
    url: str
    key: str | None
    clients: int
    max_requests: int
    max_seconds: float
    results: list[Result] = field(default_factory=list)
    writes: list[WriterResult] = field(default_factory=list)
    indexing: bool = False
    next_index: int = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


# --- the server ----------------------------------------------------------------------------------------------
def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing to load {url}: this bench only targets loopback addresses")


@contextmanager
def local_server(models_dir: Path | None, ready_timeout: float, keep_log: Path | None) -> Iterator[tuple[str, str]]:
    """`rag serve` (extractive generator, API key set) on a copy of corpus/ in a temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    data_dir, corpus_dir = root / "data", root / "corpus"
    data_dir.mkdir()
    shutil.copytree(REPO / "corpus", corpus_dir)
    if models_dir and models_dir.is_dir():
        (data_dir / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
    key = uuid.uuid4().hex
    env = {
        "RAG_DATA_DIR": str(data_dir),
        "RAG_CORPUS_DIR": str(corpus_dir),
        "RAG_GENERATOR": "extractive",
        "RAG_API_KEY": key,
        "PYTHONPATH": str(REPO),
    }
    started = time.monotonic()
    server = None
    try:
        server = harness.start_rag_serve(root, env, timeout=ready_timeout)
        print(f"server ready in {time.monotonic() - started:.1f} s at {server.url}", file=sys.stderr)
        yield server.url, key
    except harness.ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc
    finally:
        if server:
            server.stop()
        if keep_log and (root / "server.log").exists():
            shutil.copyfile(root / "server.log", keep_log)
        shutil.rmtree(root, ignore_errors=True)


# --- clients ----------------------------------------------------------------------------------------------------
async def ask_once(client: httpx.AsyncClient, endpoint: str, question: str) -> tuple[int, str | None]:
    """One question; returns the status and an error description (None when the answer is complete)."""
    if endpoint == "ask":
        response = await client.post("/v1/ask", json={"question": question})
        if response.status_code != 200:
            return response.status_code, response.text[:200]
        return 200, None if "answer" in response.json() else "no answer field"
    if endpoint == "chat":
        response = await client.post(
            "/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": question}]}
        )
        if response.status_code != 200:
            return response.status_code, response.text[:200]
        return 200, None if response.json()["choices"][0]["message"]["content"] else "empty content"
    events = []
    async with client.stream("POST", "/v1/ask/stream", json={"question": question}) as response:
        if response.status_code != 200:
            return response.status_code, (await response.aread()).decode(errors="replace")[:200]
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                events.append(line.partition(":")[2].strip())
    if "error" in events:
        return 200, "error event"
    return 200, None if events and events[-1] == "final" else f"stream ended without final: {events[-3:]}"


async def client_loop(bench: Bench, deadline: float) -> None:
    async with httpx.AsyncClient(base_url=bench.url, headers=bench.headers(), timeout=120) as client:
        while time.monotonic() < deadline and bench.next_index < bench.max_requests:
            index = bench.next_index
            bench.next_index += 1
            question = QUESTIONS[index % len(QUESTIONS)]
            endpoint = ENDPOINTS[(index // len(QUESTIONS)) % len(ENDPOINTS)]
            during = bench.indexing
            started = time.monotonic()
            try:
                status, error = await ask_once(client, endpoint, question)
            except httpx.HTTPError as failure:
                status, error = None, f"{type(failure).__name__}: {failure}"
            seconds = time.monotonic() - started
            bench.results.append(
                Result(endpoint, question, started, seconds, error is None, status, error, during or bench.indexing)
            )


async def writer(bench: Bench, delay: float, rebuild: bool) -> None:
    """Upload a document, then refresh (or rebuild) the index, while the clients keep asking."""
    await asyncio.sleep(delay)
    async with httpx.AsyncClient(base_url=bench.url, headers=bench.headers(), timeout=600) as client:
        for operation in ("upload", "rebuild" if rebuild else "refresh"):
            bench.indexing = True
            started = time.monotonic()
            try:
                if operation == "upload":
                    files = {"files": (UPLOAD_NAME, upload_text().encode(), "text/plain")}
                    response = await client.post("/v1/documents", files=files, params={"replace": "true"})
                else:
                    response = await client.post("/v1/index/refresh", json={"rebuild": rebuild})
                detail = response.json()
                status: int | None = response.status_code
            except httpx.HTTPError as failure:
                status, detail = None, f"{type(failure).__name__}: {failure}"
            finally:
                bench.indexing = False
            bench.writes.append(WriterResult(operation, started, time.monotonic() - started, status, detail))


async def run(bench: Bench, refresh_delay: float | None, rebuild: bool) -> float:
    started = time.monotonic()
    deadline = started + bench.max_seconds
    tasks = [client_loop(bench, deadline) for _ in range(bench.clients)]
    if refresh_delay is not None:
        tasks.append(writer(bench, refresh_delay, rebuild))
    await asyncio.gather(*tasks)
    return time.monotonic() - started


# --- report -----------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1] * 1000, 1)


def summary(results: list[Result]) -> dict:
    seconds = [r.seconds for r in results if r.ok]
    return {
        "requests": len(results),
        "errors": sum(not r.ok for r in results),
        "p50_ms": percentile(seconds, 50),
        "p95_ms": percentile(seconds, 95),
        "max_ms": round(max(seconds) * 1000, 1) if seconds else None,
        "mean_ms": round(statistics.fmean(seconds) * 1000, 1) if seconds else None,
    }


def report(bench: Bench, elapsed: float) -> dict:
    results = bench.results
    return {
        "url": bench.url,
        "clients": bench.clients,
        "elapsed_s": round(elapsed, 1),
        "throughput_rps": round(len(results) / elapsed, 2) if elapsed else None,
        "overall": summary(results),
        "by_endpoint": {e: summary([r for r in results if r.endpoint == e]) for e in ENDPOINTS},
        "while_indexing": summary([r for r in results if r.during_indexing]),
        "while_idle": summary([r for r in results if not r.during_indexing]),
        "writes": [
            {
                "operation": w.operation,
                "status": w.status,
                "seconds": round(w.seconds, 1),
                "result": w.detail
                if isinstance(w.detail, str)
                else {k: v for k, v in (w.detail or {}).items() if k != "files"},
            }
            for w in bench.writes
        ],
        "errors": [asdict(r) for r in results if not r.ok][:20],
        "cpu_count": os.cpu_count(),
    }


def markdown(data: dict) -> str:
    rows = [("all", data["overall"])] + [(f"`{e}`", s) for e, s in data["by_endpoint"].items()]
    rows += [("while indexing", data["while_indexing"]), ("while idle", data["while_idle"])]
    lines = [
        f"Load bench: {data['clients']} clients, {data['overall']['requests']} questions in {data['elapsed_s']} s "
        f"({data['throughput_rps']} req/s), {data['overall']['errors']} errors, {data['cpu_count']} CPU cores.",
        "",
        "| requests | n | errors | p50 ms | p95 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in rows:
        lines.append(f"| {name} | {s['requests']} | {s['errors']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |")
    if data["writes"]:
        lines += ["", "| write | status | seconds |", "| --- | ---: | ---: |"]
        lines += [f"| {w['operation']} | {w['status']} | {w['seconds']} |" for w in data["writes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--key", default=os.environ.get("RAG_API_KEY"), help="API key for the upload and refresh")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=160, help="questions in all (bound)")
    parser.add_argument("--duration", type=float, default=240, help="seconds at most (bound)")
    parser.add_argument("--refresh-after", type=float, default=3.0, help="seconds before the upload + rebuild")
    parser.add_argument("--no-refresh", action="store_true", help="questions only")
    parser.add_argument("--rebuild", action="store_true", help="rebuild (re-embed everything) instead of refresh")
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("RAG_TEST_MODELS_DIR", REPO / ".rag-test/models"))
    )
    parser.add_argument("--json", type=Path, help="write the JSON report here (default: stdout)")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here (default: stderr)")
    parser.add_argument("--server-log", type=Path, help="keep the log of the server this bench started")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.duration <= 0:
        parser.error("--clients, --requests and --duration must be positive")

    def bench_against(url: str, key: str | None) -> dict:
        require_loopback(url)
        bench = Bench(url, key, args.clients, args.requests, args.duration)
        elapsed = asyncio.run(run(bench, None if args.no_refresh else args.refresh_after, args.rebuild))
        return report(bench, elapsed)

    if args.url:
        data = bench_against(args.url.rstrip("/"), args.key)
    else:
        with local_server(args.models_dir, ready_timeout=600, keep_log=args.server_log) as (url, key):
            data = bench_against(url, key)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    table = markdown(data)
    if args.markdown:
        args.markdown.write_text(table)
    else:
        print(table, file=sys.stderr)
    failed_writes = [w for w in data["writes"] if w["status"] != 200]
    return 1 if data["overall"]["errors"] or failed_writes else 0


if __name__ == "__main__":
    sys.exit(main())
