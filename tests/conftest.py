"""Shared fixtures. The real model and the real corpus are used; only slow set-up is shared per session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from rag.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAG_TEST_SHARED", REPO.parent / "shared")).resolve()
RELATED = SHARED / "corpus" / "related"
DEV_SET = SHARED / "eval" / "dev.jsonl"
# Materialised models (the e5 folder, the reassembled GGUF) are kept between test runs: building them is slow
# and deterministic. Override with RAG_TEST_MODELS_DIR.
MODELS_DIR = Path(os.environ.get("RAG_TEST_MODELS_DIR", REPO / ".rag-test" / "models"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    return MODELS_DIR


@pytest.fixture
def make_settings(tmp_path: Path, models_dir: Path) -> Callable[..., Settings]:
    """Settings isolated in tmp_path, sharing the materialised models."""

    def factory(**overrides) -> Settings:
        values = {
            "data_dir": tmp_path / "data",
            "corpus_dir": tmp_path / "corpus",
            "generator": "extractive",
        }
        values.update(overrides)
        settings = Settings(_env_file=None, **values)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        link = settings.models_dir
        if not link.exists():
            link.symlink_to(models_dir, target_is_directory=True)
        return settings

    return factory


@pytest.fixture(scope="session")
def embedder(models_dir: Path):
    """The real multilingual-e5-small, materialised once into the shared models dir."""
    from rag.embeddings import SentenceTransformerEmbeddings

    return SentenceTransformerEmbeddings(Settings(_env_file=None, data_dir=models_dir.parent))


def stop_process(process, timeout: float = 20) -> None:
    """Terminate a server the tests started, and kill it if it does not stop in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_loopback_port() -> int:
    """A port on 127.0.0.1 nobody listens on, for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory):
    """A Chroma server for tests that exercise the client/server mode: RAG_TEST_CHROMA_URL when set, otherwise
    `chroma run` on a free loopback port, stopped at the end of the session. Use a unique collection per test."""
    import sys
    import time
    import urllib.request

    given = os.environ.get("RAG_TEST_CHROMA_URL")
    if given:
        yield given.rstrip("/")
        return
    executable = Path(sys.executable).with_name("chroma")
    if not executable.exists():
        pytest.skip("the chroma CLI is not installed")
    root = tmp_path_factory.mktemp("chroma-server")
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    with open(root / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(executable), "run", "--path", str(root / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"chroma run exited with {process.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("chroma run did not answer within 60 s")
                time.sleep(0.2)
        yield url
    finally:
        stop_process(process, timeout=10)
