"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis): whatever the request,
valid or not, no 5xx and no response that breaks the documented schema (status, content type, body,
headers), and the write endpoints refuse a request without the key.

The app runs in-process over the real service and index (extractive generator); the LLM generators
(`local`, `openai`, `ollama`, reachable through `generator`/`model`) are fake chat models, so every case
answers in about a second. The corpus is two short documents, so even a `rebuild` refresh stays quick.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fakes import HashEmbedder, MemoryBackend
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.api import create_app
from rag.service import RagService
from rag.settings import Settings

KEY = "fuzz-key"
MAX_EXAMPLES = 12  # per operation and phase: ~1-2 minutes in all on 2 cores

CORPUS = {
    "zephyr_fr.txt": (
        "Le projet Zéphyr a été lancé à Lyon le 3 mars 2031 par l'équipe Orion. "
        "Zéphyr est un planeur solaire expérimental conçu pour cartographier les glaciers des Alpes.\n"
    ),
    "boreas_en.md": (
        "# Boreas\n\nThe Boreas survey started in Tromsø in April 2032. "
        "Its drones measure sea ice thickness along the Norwegian coast every week.\n"
    ),
}


def fake_chat_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(
        messages=itertools.cycle([AIMessage(content="Le projet Zéphyr a été lancé à Lyon [1].")])
    )


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, embedder):
    root = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        _env_file=None,
        data_dir=root / "data",
        corpus_dir=root / "corpus",
        generator="extractive",
        api_key=KEY,
        max_upload_bytes=100_000,
    )
    settings.data_dir.mkdir()
    settings.models_dir.symlink_to(models_dir, target_is_directory=True)
    settings.corpus_dir.mkdir()
    for name, text in CORPUS.items():
        (settings.corpus_dir / name).write_text(text)
    chat_models = {name: fake_chat_model() for name in ("local", "openai", "ollama")}
    service = RagService(settings, embedder=embedder, chat_models=chat_models)
    service.refresh()
    service.warm_up()
    return create_app(service, with_ui=False, index_on_start=False)


_SCHEMA_DATA = tempfile.TemporaryDirectory(prefix="rag-schema-")  # removed when the test process exits


def _schema_app():
    """An app over a service that is never used: only its OpenAPI schema is read (it depends on the auth
    settings alone). Loaded at import time: schemathesis' lazy fixture loader does not work with pytest 9.

    Reading the schema runs the app's start-up, so the service gets fakes and a throw-away data dir: with the
    default settings it once materialised both models into `.rag` of the working directory (1.5 GB more in the
    checkout) and loaded the LLM in the test process."""
    data_dir = Path(_SCHEMA_DATA.name)
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        corpus_dir=data_dir / "corpus",
        api_key=KEY,
        api_key_for_read=False,
        generator="extractive",
        query_translation="off",
    )
    service = RagService(settings, embedder=HashEmbedder(), stores=MemoryBackend(), chat_models={})
    return create_app(service, with_ui=False, index_on_start=False)


CONFIG = schemathesis.Config.from_dict(
    {
        "headers": {"Authorization": f"Bearer {KEY}"},
        "generation": {"max-examples": MAX_EXAMPLES},
        "checks": {
            # Schema-valid requests may still be refused for what a schema cannot say, and the API documents
            # it: a file name without a supported suffix (415) or that is only dots (400), a conversation
            # without user text (400). Server errors stay failures (not_a_server_error).
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "413", "415", "429"]
            },
        },
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _schema_app(), config=CONFIG)


@schema.parametrize()
def test_api_conforms_to_its_schema(case, fuzz_app) -> None:
    case.call_and_validate(app=fuzz_app)
