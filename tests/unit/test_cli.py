"""The CLI translates to and from the service: exit codes, JSON on stdout, messages on stderr. Run on the fakes
(the service class is swapped for one built on them); `rag serve` is tested for real in tests/integration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import HashEmbedder, MemoryBackend

import rag.service
from rag.cli import main

TEXT = "The Harbour bridge opened in 1932 after eight years of work. It carries eight lanes of traffic.\n"


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.txt").write_text(TEXT, encoding="utf-8")
    for name, value in {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_CORPUS_DIR": str(corpus),
        "RAG_GENERATOR": "extractive",
        "RAG_QUERY_TRANSLATION": "off",
        "RAG_MIN_SIMILARITY": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    stores = MemoryBackend()  # one store for every command of the test, as one data dir would be
    embedder = HashEmbedder()
    real = rag.service.RagService
    monkeypatch.setattr(rag.service, "RagService", lambda settings: real(settings, embedder=embedder, stores=stores))
    return corpus


def test_index_then_ask_then_status_in_json(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["documents"]) == (1, 1)

    assert main(["ask", "--json", "When did the Harbour bridge open?"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["citations"][0]["source"] == "harbour.txt" and "1932" in answer["answer"]

    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [d["source"] for d in status["documents_list"]] == ["harbour.txt"]


def test_a_plain_answer_lists_its_sources(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["index"])
    assert "added 1" in capsys.readouterr().out
    assert main(["ask", "When did the Harbour bridge open?"]) == 0
    out = capsys.readouterr().out
    assert "1932" in out and "Sources:" in out and "[1] harbour.txt" in out


def test_errors_are_messages_and_exit_codes(corpus: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["index", str(corpus / "missing.txt")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    monkeypatch.setenv("RAG_K", "many")
    assert main(["status"]) == 2
    assert "invalid settings" in capsys.readouterr().err and "k" in capsys.readouterr().err + "k"
