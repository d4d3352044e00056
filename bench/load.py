"""Load bench for the HTTP API: 1, 4 and 16 concurrent clients in turn (`--clients`) ask a rotating set of French
and English questions (REST, SSE and OpenAI chat completions in turn) while, at each level, a ~30 KB document is
uploaded and indexed, the index refreshed (`--rebuild`: re-embedded whole) and the document deleted again; it
reports, per level, latency percentiles, errors and the questions shed with 503 + Retry-After, as JSON and
markdown.

    .venv/bin/python bench/load.py                      # starts `rag serve` itself on a free loopback port
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860 --key "$RAG_API_KEY"
    .venv/bin/python bench/load.py --generator local --queue-size 1 --clients 16 --requests-per-client 2 --no-refresh

An error is anything but a complete answer or a well-formed 503 (a Retry-After of whole seconds and our error
shape): a timeout, a 5xx, a dropped connection, a 503 without Retry-After. A shed question is not an error: the
server said at once it was full, and the client, as a well-behaved one does, waits Retry-After seconds before
its next question. Loopback only, bounded in requests and time; exits 1 if any question failed. With no --url,
the server runs the extractive generator (or --generator) on a copy of corpus/ in a temporary folder (the models
are linked from RAG_TEST_MODELS_DIR or .rag-test/models when materialised there, so they are not rebuilt).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
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
from urllib.parse import quote, urlparse

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
    "Où et quand le projet Zéphyr a-t-il été lancé ?",  # answerable while the upload is indexed
    "What is the capital of Mongolia?",  # refused: not in the documents
]
ENDPOINTS = ("ask", "stream", "chat")
UPLOAD_NAME = "bench_projet_zephyr.txt"
DEFAULT_CLIENTS = "1,4,16"


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
class Outcome:
    """How one question ended: answered (error None, retry_after None), shed (retry_after set) or failed."""

    status: int | None
    error: str | None = None
    retry_after: int | None = None


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
    retry_after: int | None = None

    @property
    def shed(self) -> bool:
        return self.retry_after is not None


@dataclass
class WriterResult:
    operation: str
    started: float
    seconds: float
    status: int | None
    detail: dict | str | None = None


@dataclass
class Bench:
    """One level: `clients` clients asking `requests_per_client` questions each at most, for `max_seconds` at most."""

    url: str
    key: str | None
    clients: int
    requests_per_client: int
    max_seconds: float
    timeout: float
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
def local_server(
    models_dir: Path | None, generator: str, queue_size: int | None, ready_timeout: float, keep_log: Path | None
) -> Iterator[tuple[str, str]]:
    """`rag serve` (API key set) with `generator` and the generation queue's bound on a copy of corpus/ in a
    temporary folder."""
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
        "RAG_GENERATOR": generator,
        "RAG_API_KEY": key,
        "PYTHONPATH": str(REPO),
    }
    if queue_size is not None:
        env["RAG_GENERATION_QUEUE_SIZE"] = str(queue_size)
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
def refusal(status: int, headers: httpx.Headers, body: bytes) -> Outcome:
    """A response that is not a 200: shed when it is a well-formed 503 (whole seconds in Retry-After, our error
    shape), else an error."""
    text = body.decode(errors="replace")[:200]
    retry_after = headers.get("retry-after", "")
    if status != 503 or not retry_after.isdigit():
        return Outcome(status, text or f"HTTP {status}")
    try:
        shaped = json.loads(body)["error"]["type"] == "service_unavailable"
    except (ValueError, KeyError, TypeError):
        shaped = False
    return Outcome(status, retry_after=int(retry_after)) if shaped else Outcome(status, f"503 not in our shape: {text}")


async def ask_once(client: httpx.AsyncClient, endpoint: str, question: str) -> Outcome:
    """One question, and how it ended."""
    if endpoint == "ask":
        response = await client.post("/v1/ask", json={"question": question})
        if response.status_code != 200:
            return refusal(response.status_code, response.headers, response.content)
        return Outcome(200, None if "answer" in response.json() else "no answer field")
    if endpoint == "chat":
        response = await client.post(
            "/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": question}]}
        )
        if response.status_code != 200:
            return refusal(response.status_code, response.headers, response.content)
        return Outcome(200, None if response.json()["choices"][0]["message"]["content"] else "empty content")
    events = []
    async with client.stream("POST", "/v1/ask/stream", json={"question": question}) as response:
        if response.status_code != 200:
            return refusal(response.status_code, response.headers, await response.aread())
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                events.append(line.partition(":")[2].strip())
    if "error" in events:
        return Outcome(200, "error event")
    return Outcome(200, None if events and events[-1] == "final" else f"stream ended without final: {events[-3:]}")


async def client_loop(bench: Bench, deadline: float) -> None:
    """One client: its questions one after the other; after a 503 it waits Retry-After (within the deadline)."""
    async with httpx.AsyncClient(base_url=bench.url, headers=bench.headers(), timeout=bench.timeout) as client:
        for _ in range(bench.requests_per_client):
            if time.monotonic() >= deadline:
                return
            index = bench.next_index
            bench.next_index += 1
            question = QUESTIONS[index % len(QUESTIONS)]
            endpoint = ENDPOINTS[(index // len(QUESTIONS)) % len(ENDPOINTS)]
            during = bench.indexing
            started = time.monotonic()
            try:
                outcome = await ask_once(client, endpoint, question)
            except httpx.HTTPError as failure:
                outcome = Outcome(None, f"{type(failure).__name__}: {failure}")
            seconds = time.monotonic() - started
            answered = outcome.error is None and outcome.retry_after is None
            bench.results.append(
                Result(
                    endpoint,
                    question,
                    started,
                    seconds,
                    answered,
                    outcome.status,
                    outcome.error,
                    during or bench.indexing,
                    outcome.retry_after,
                )
            )
            if outcome.retry_after is not None:
                await asyncio.sleep(max(0.0, min(outcome.retry_after, deadline - time.monotonic())))


async def writer(bench: Bench, delay: float, rebuild: bool) -> None:
    """Upload a document, refresh (or rebuild) the index and delete the document, while the clients keep asking:
    each level indexes it anew."""
    await asyncio.sleep(delay)
    async with httpx.AsyncClient(base_url=bench.url, headers=bench.headers(), timeout=600) as client:
        source = UPLOAD_NAME
        for operation in ("upload", "rebuild" if rebuild else "refresh", "delete"):
            bench.indexing = True
            started = time.monotonic()
            try:
                if operation == "upload":
                    files = {"files": (UPLOAD_NAME, upload_text().encode(), "text/plain")}
                    response = await client.post("/v1/documents", files=files, params={"replace": "true"})
                    source = (response.json().get("files") or [{}])[0].get("source") or source
                elif operation == "delete":
                    response = await client.delete(f"/v1/documents/{quote(source)}")
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
    """Run one level; returns the seconds its clients took (the writes may end later: the level waits for them)."""
    started = time.monotonic()
    deadline = started + bench.max_seconds
    writes = asyncio.create_task(writer(bench, refresh_delay, rebuild)) if refresh_delay is not None else None
    await asyncio.gather(*(client_loop(bench, deadline) for _ in range(bench.clients)))
    elapsed = time.monotonic() - started
    if writes:
        await writes
    return elapsed


# --- report -----------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return round(ordered[rank - 1] * 1000, 1)


def summary(results: list[Result]) -> dict:
    """Latency of the answered questions; errors and shed questions counted apart (shed: how fast the 503 came)."""
    seconds = [r.seconds for r in results if r.ok]
    shed = [r.seconds for r in results if r.shed]
    return {
        "requests": len(results),
        "answered": len(seconds),
        "errors": sum(not r.ok and not r.shed for r in results),
        "shed": len(shed),
        "p50_ms": percentile(seconds, 50),
        "p95_ms": percentile(seconds, 95),
        "max_ms": round(max(seconds) * 1000, 1) if seconds else None,
        "mean_ms": round(statistics.fmean(seconds) * 1000, 1) if seconds else None,
        "shed_max_ms": round(max(shed) * 1000, 1) if shed else None,
    }


def level_report(bench: Bench, elapsed: float, load_average: float) -> dict:
    results = bench.results
    return {
        "clients": bench.clients,
        "elapsed_s": round(elapsed, 1),
        "load_average_1min_at_start": round(load_average, 2),
        "throughput_rps": round(sum(r.ok for r in results) / elapsed, 2) if elapsed else None,
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
        "errors": [asdict(r) for r in results if not r.ok and not r.shed][:20],
    }


def _seconds(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.2f} s"


def markdown(data: dict) -> str:
    """One row per level, then the writes of each level."""
    lines = [
        f"Load bench against {data['url']} ({data['generator']} generator), {data['cpu_count']} CPU cores.",
        "",
        "| clients | questions | answered | p50 | p95 | max | p95 idle / indexing | errors | shed (503 + Retry-After) "
        "| answers/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in data["levels"]:
        s = level["overall"]
        shed = f"{s['shed']} (≤ {_seconds(s['shed_max_ms'])})" if s["shed"] else "0"
        split = f"{_seconds(level['while_idle']['p95_ms'])} / {_seconds(level['while_indexing']['p95_ms'])}"
        lines.append(
            f"| {level['clients']} | {s['requests']} | {s['answered']} | {_seconds(s['p50_ms'])} | "
            f"{_seconds(s['p95_ms'])} | {_seconds(s['max_ms'])} | {split} | {s['errors']} | {shed} | "
            f"{level['throughput_rps']} |"
        )
    writes = [(level["clients"], w) for level in data["levels"] for w in level["writes"]]
    if writes:
        lines += ["", "| clients | write | status | seconds |", "| ---: | --- | ---: | ---: |"]
        lines += [f"| {clients} | {w['operation']} | {w['status']} | {w['seconds']} |" for clients, w in writes]
    return "\n".join(lines) + "\n"


def client_counts(text: str) -> list[int]:
    """`1,4,16` -> [1, 4, 16]: the levels, run in turn against one server."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of client counts: {text!r}") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"client counts must be positive: {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--key", default=os.environ.get("RAG_API_KEY"), help="API key for the upload and refresh")
    parser.add_argument(
        "--clients", type=client_counts, default=client_counts(DEFAULT_CLIENTS), help="levels, e.g. 1,4,16"
    )
    parser.add_argument("--requests-per-client", type=int, default=10, help="questions per client (bound)")
    parser.add_argument("--duration", type=float, default=240, help="seconds per level at most (bound)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a question may take (more: an error)")
    parser.add_argument("--refresh-after", type=float, default=3.0, help="seconds into a level before the upload")
    parser.add_argument("--no-refresh", action="store_true", help="questions only")
    parser.add_argument("--rebuild", action="store_true", help="rebuild (re-embed everything) instead of refresh")
    parser.add_argument("--generator", default="extractive", help="the started server's generator (e.g. local)")
    parser.add_argument("--queue-size", type=int, help="the started server's RAG_GENERATION_QUEUE_SIZE")
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("RAG_TEST_MODELS_DIR", REPO / ".rag-test/models"))
    )
    parser.add_argument("--json", type=Path, help="write the JSON report here (default: stdout)")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here (default: stderr)")
    parser.add_argument("--server-log", type=Path, help="keep the log of the server this bench started")
    args = parser.parse_args(argv)
    if args.requests_per_client < 1 or args.duration <= 0 or args.timeout <= 0:
        parser.error("--requests-per-client, --duration and --timeout must be positive")

    def bench_against(url: str, key: str | None) -> dict:
        require_loopback(url)
        levels = []
        for clients in args.clients:
            bench = Bench(url, key, clients, args.requests_per_client, args.duration, args.timeout)
            load_average = os.getloadavg()[0]
            elapsed = asyncio.run(run(bench, None if args.no_refresh else args.refresh_after, args.rebuild))
            levels.append(level_report(bench, elapsed, load_average))
            print(f"{clients} clients: {levels[-1]['overall']}", file=sys.stderr)
        generator = "as configured" if args.url else args.generator
        return {"url": url, "generator": generator, "cpu_count": os.cpu_count(), "levels": levels}

    if args.url:
        data = bench_against(args.url.rstrip("/"), args.key)
    else:
        with local_server(args.models_dir, args.generator, args.queue_size, 600, args.server_log) as (url, key):
            data = bench_against(url, key)
    data["errors"] = sum(level["overall"]["errors"] for level in data["levels"])
    data["failed_writes"] = sum(w["status"] != 200 for level in data["levels"] for w in level["writes"])
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
    return 1 if data["errors"] or data["failed_writes"] else 0


if __name__ == "__main__":
    sys.exit(main())
