"""Run a server as a child process on a free loopback port and wait until it answers.

A test and bench harness, not part of the product: the API and UI tests, the Chroma server fixture, the load
and scale benches (`bench/load.py` imports it as `tests.harness`). Loopback only: nothing here listens elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ServerNotReady(RuntimeError):
    """The child exited or did not answer in time; the message ends with the tail of its log."""


def free_loopback_port() -> int:
    """A port on 127.0.0.1 nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate, and kill if it does not stop in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def child_env(overrides: Mapping[str, str], drop_prefixes: Sequence[str] = ("RAG_",)) -> dict[str, str]:
    """This process's environment without settings that would leak into the child, plus `overrides`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(tuple(drop_prefixes))}
    return env | dict(overrides)


def rag_serve_command(port: int, *options: str) -> list[str]:
    """`rag serve` on 127.0.0.1:`port`, with this interpreter (so it runs from a venv without activating it)."""
    return [sys.executable, "-m", "rag.cli", "-v", "serve", "--host", "127.0.0.1", "--port", str(port), *options]


@dataclass
class ChildServer:
    url: str  # http://127.0.0.1:port, no trailing slash
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20) -> None:
        stop_process(self.process, timeout)


def start_server(
    command: Callable[[int], list[str]],
    *,
    ready_path: str,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 400,
    headers: Mapping[str, str] | None = None,
) -> ChildServer:
    """Start `command(port)` on a free loopback port; return once GET `ready_path` (sent with `headers`)
    answers 200.

    Raises ServerNotReady (after stopping the child) when it exits or does not answer within `timeout` seconds.
    """
    port = free_loopback_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command(port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ChildServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServerNotReady(f"the server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            request = urllib.request.Request(server.url + ready_path, headers=dict(headers or {}))
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return server
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise ServerNotReady(f"the server did not answer within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.3)


CHROMA_CLI = Path(sys.executable).with_name("chroma")  # this venv's `chroma`


def start_chroma_server(root: Path, *, timeout: float = 60) -> ChildServer:
    """`chroma run` on a free loopback port, its database in root/chroma and its log in root/chroma.log; returns
    once its heartbeat answers."""
    database = str(root / "chroma")
    return start_server(
        lambda port: [str(CHROMA_CLI), "run", "--path", database, "--host", "127.0.0.1", "--port", str(port)],
        ready_path="/api/v2/heartbeat",
        log_path=root / "chroma.log",
        timeout=timeout,
    )


def start_rag_serve(
    root: Path, settings_env: Mapping[str, str], *, timeout: float = 400, options: Sequence[str] = ("--no-ui",)
) -> ChildServer:
    """`rag serve` run in `root` (its log in root/server.log) with these environment settings and none of this
    process's RAG_* ones; returns once /readyz answers 200, that is once the index is ready (asked with the
    settings' RAG_API_KEY, which /readyz needs when RAG_API_KEY_FOR_READ is true)."""
    key = settings_env.get("RAG_API_KEY")
    return start_server(
        lambda port: rag_serve_command(port, *options),
        ready_path="/readyz",
        log_path=root / "server.log",
        cwd=root,
        env=child_env(settings_env),
        timeout=timeout,
        headers={"Authorization": f"Bearer {key}"} if key else None,
    )


# --- the shared corpus and models (beside the repository, as CI lays them out) ---
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAG_TEST_SHARED", REPO.parent / "shared")).resolve()
RELATED = SHARED / "corpus" / "related"
DEV_SET = SHARED / "eval" / "dev.jsonl"
# Materialised models (the e5 folder, the reassembled GGUF) are kept between test runs: building them is slow
# and deterministic. Override with RAG_TEST_MODELS_DIR.
MODELS_DIR = Path(os.environ.get("RAG_TEST_MODELS_DIR", REPO / ".rag-test" / "models"))


# --- the browser ---
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright drives it (never `playwright install`)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


ANSWER_TIMEOUT_MS = 120_000  # a whole answer in the browser, on 2 busy cores


def ask_in_page(page, question: str):
    """Type a question in the chat UI, send it with Enter, wait for the final answer (its timing line) and
    return it; an error notice fails the test."""
    answers = page.locator("#rag-chat .rag-answer")
    before = answers.count()
    page.locator("#rag-question textarea").fill(question)
    page.locator("#rag-question textarea").press("Enter")
    answer = answers.nth(before)
    answer.locator(".meta, .notice.error").first.wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert answer.locator(".notice.error").count() == 0, answer.inner_text()
    return answer
