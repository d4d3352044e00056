"""Unit tests run on fakes (tests/fakes.py): no model, no Chroma, no server. The guard below makes a unit test
that reaches for a real one fail at once, instead of quietly turning into a slow integration test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import HashEmbedder, MemoryBackend

from rag.service import RagService
from rag.settings import Settings


def _refuse(what: str) -> Callable[..., None]:
    def refuse(*args, **kwargs) -> None:
        raise AssertionError(f"a unit test reached the real {what}: use tests/fakes.py, or move it to integration")

    return refuse


@pytest.fixture(autouse=True)
def _no_real_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.embeddings
    import rag.llm_local
    import rag.store

    monkeypatch.setattr(rag.store, "make_chroma_client", _refuse("Chroma"))
    monkeypatch.setattr(rag.embeddings.SentenceTransformerEmbeddings, "__init__", _refuse("embedding model"))
    monkeypatch.setattr(rag.llm_local, "load_local_chat_model", _refuse("local LLM"))


@pytest.fixture
def unit_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings isolated in tmp_path: the extractive generator and no question translation, unless overridden."""

    def factory(**overrides) -> Settings:
        values = {
            "data_dir": tmp_path / "data",
            "corpus_dir": tmp_path / "corpus",
            "generator": "extractive",
            "query_translation": "off",
        } | overrides
        settings = Settings(_env_file=None, **values)
        settings.corpus_dir.mkdir(parents=True, exist_ok=True)
        return settings

    return factory


@pytest.fixture
def fake_service(unit_settings) -> Callable[..., RagService]:
    """A RagService on the fakes: hashed-word embeddings, an in-memory store, scripted chat models if given."""

    def factory(*, chat_models: dict | None = None, **overrides) -> RagService:
        return RagService(
            unit_settings(**overrides), embedder=HashEmbedder(), stores=MemoryBackend(), chat_models=chat_models
        )

    return factory
