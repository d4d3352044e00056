"""Shared fixtures and markers. Integration tests use the real model and corpus (slow set-up shared per session);
unit tests (tests/unit) use the fakes of tests/fakes.py."""

from __future__ import annotations

import ast
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import CHROMIUM, CHROMIUM_ARGS, MODELS_DIR

from rag.settings import Settings


def _serialise_ast_parsing() -> None:
    """Python 3.11's AST constructor checks its recursion counter in state the interpreter's threads share
    (python/cpython#106905), so two threads building ASTs at once can fail one of them with "SystemError: AST
    constructor recursion depth mismatch". One CI run failed so (once in many), in `ast.parse` called by
    Hypothesis while schemathesis collected the fuzz test. Serialising `ast.parse` in the test process removes
    that race for every caller going through it; parsing is rare and fast, so the lock costs nothing here."""
    if sys.version_info >= (3, 12):
        return
    parse, lock = ast.parse, threading.RLock()

    def locked_parse(*args, **kwargs):
        with lock:
            return parse(*args, **kwargs)

    ast.parse = locked_parse


_serialise_ast_parsing()


UNIT_TESTS = Path(__file__).resolve().parent / "unit"

# The default data dir (`.rag` in the working directory) is the user's: a test that reaches it builds a second copy
# of the models in the checkout (1.5 GB; one CI machine ran out of disk) and may read the user's index.
DEFAULT_DATA_DIR = pytest.StashKey[tuple[Path, bool]]()


def pytest_configure(config: pytest.Config) -> None:
    default = Path(Settings.model_fields["data_dir"].default).resolve()
    config.stash[DEFAULT_DATA_DIR] = (default, default.exists())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests created the default data dir (collection included: hence the hooks, not a
    fixture). Only creation is seen: a dir that was there before is not judged."""
    default, existed = session.config.stash[DEFAULT_DATA_DIR]
    if not existed and default.exists():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"the tests created the default data dir {default}: give every Settings a data_dir under tmp_path"
        if reporter is not None:
            reporter.write("\n")
            reporter.write_sep("!", message, red=True, bold=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test outside tests/unit (tests/integration) is an integration test, so `pytest -m "not integration"`
    is the fast suite; tests/unit/conftest.py makes a unit test that reaches a real model or Chroma fail."""
    for item in items:
        if not item.path.is_relative_to(UNIT_TESTS):
            item.add_marker(pytest.mark.integration)


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
            # Question translation loads the local model: the tests that are about it turn it on.
            "query_translation": "off",
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


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory):
    """A Chroma server for tests that exercise the client/server mode: RAG_TEST_CHROMA_URL when set, otherwise
    `chroma run` on a free loopback port, stopped at the end of the session. Use a unique collection per test."""
    from harness import CHROMA_CLI, ServerNotReady, start_chroma_server

    given = os.environ.get("RAG_TEST_CHROMA_URL")
    if given:
        yield given.rstrip("/")
        return
    if not CHROMA_CLI.exists():
        pytest.skip("the chroma CLI is not installed")
    try:
        server = start_chroma_server(tmp_path_factory.mktemp("chroma-server"))
    except ServerNotReady as exc:
        pytest.fail(f"chroma run: {exc}")
    try:
        yield server.url
    finally:
        server.stop(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """A real chromium for the browser tests of one module (skipped where Debian's chromium is missing)."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
