"""LangChain's own standard suites (langchain-tests) over what rag.langchain offers: the local chat model, the e5
embeddings and the cited retriever. Features the local model lacks (tools, structured output, images...) are
declared off through the suites' properties; the suites then skip their tests themselves.

The integration classes use the real models and a real Chroma index (marked `integration`; the chat model's also
`slow`). The suites' async tests need pytest-asyncio: they are marked `asyncio` here so that they run in its
default strict mode too, and the warning that mark gives on the suites' sync tests is silenced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from harness import MODELS_DIR
from langchain_core.documents import Document
from langchain_tests.integration_tests import (
    ChatModelIntegrationTests,
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
)
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from rag.langchain import CitedRetriever, LlamaCppChatModel, SentenceTransformerEmbeddings
from rag.llm_local import GGUF_FILENAME, ModelUnavailable, ensure_gguf
from rag.service import RagService
from rag.settings import Settings

GGUF = MODELS_DIR / GGUF_FILENAME
ASYNC_SUITE = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function"),
]
# Enough for a greeting or two haikus begun: the integration suite checks that text and usage come back.
CHAT_PARAMS = {"model_path": str(GGUF), "max_tokens": 10}


# ------------------------------------------------------------------------------------------------ chat model


class _LocalChatModelSuite:
    """What the local model is and is not, in the suites' own switches."""

    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(CHAT_PARAMS)

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # an instance serves the one GGUF it was built for


class TestLlamaCppChatModelUnit(_LocalChatModelSuite, ChatModelUnitTests):
    """Never loads the weights: construction must stay cheap (test_init_time)."""

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model_path": str(GGUF)}  # test_standard_params passes its own max_tokens


class TestLlamaCppChatModelIntegration(_LocalChatModelSuite, ChatModelIntegrationTests):
    pytestmark: ClassVar = [pytest.mark.integration, pytest.mark.slow, *ASYNC_SUITE]

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _one_load(cls, models_dir: Path):
        """The GGUF reassembled if needed and loaded once: every test's model shares this instance's context."""
        try:
            assert ensure_gguf(models_dir) == GGUF
        except ModelUnavailable as exc:
            pytest.fail(f"the model parts are project dependencies and must be installed: {exc}")
        keeper = LlamaCppChatModel(**CHAT_PARAMS)
        keeper.llama  # noqa: B018  -- loads it
        yield
        del keeper


def test_construction_loads_nothing_and_a_bad_file_fails_at_first_use(tmp_path: Path) -> None:
    model = LlamaCppChatModel(model_path=str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelUnavailable, match=r"missing\.gguf"):
        model.invoke("Bonjour")


@pytest.mark.integration
@pytest.mark.slow
def test_one_context_per_load_parameters_and_exact_streamed_usage(models_dir: Path) -> None:
    ensure_gguf(models_dir)
    model = LlamaCppChatModel(**{**CHAT_PARAMS, "max_tokens": 8})
    other = LlamaCppChatModel(**{**CHAT_PARAMS, "temperature": 0.0, "stop": ["\n"]})
    assert model.llama is other.llama  # sampling settings are per call: same context, same lock, same KV cache
    assert LlamaCppChatModel(**{**CHAT_PARAMS, "n_ctx": 1024}).llama is not model.llama  # the translator's kind
    question = "Combien font deux et deux ?"
    invoked = model.invoke(question)
    streamed = None
    for chunk in model.stream(question):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.content == invoked.content
    assert streamed.usage_metadata == invoked.usage_metadata  # the streamed counts are llama.cpp's own


# ------------------------------------------------------------------------------------------------ embeddings

EMBEDDING_PARAMS = {"settings": Settings(_env_file=None, data_dir=MODELS_DIR.parent)}  # conftest's `embedder`


class TestEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[SentenceTransformerEmbeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return dict(EMBEDDING_PARAMS)


class TestEmbeddingsIntegration(EmbeddingsIntegrationTests):
    pytestmark: ClassVar = [pytest.mark.integration, *ASYNC_SUITE]

    @property
    def embeddings_class(self) -> type[SentenceTransformerEmbeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return dict(EMBEDDING_PARAMS)


# ------------------------------------------------------------------------------------------------- retriever

DOCUMENTS = {
    "tour_eiffel_fr.txt": "La tour Eiffel a été inaugurée le 31 mars 1889 à Paris, pour l'Exposition universelle. "
    "Elle mesurait alors 312 mètres.",
    "viaduc_millau_fr.txt": "Le viaduc de Millau, dans l'Aveyron, a été inauguré le 14 décembre 2004. Sa pile la "
    "plus haute mesure 245 mètres.",
    "golden_gate_en.txt": "The Golden Gate Bridge in San Francisco opened to traffic on May 27, 1937. Its main span "
    "is 1,280 metres long.",
    "channel_tunnel_en.txt": "The Channel Tunnel between Folkestone and Coquelles was opened on 6 May 1994. It is "
    "50 kilometres long.",
}


class EnglishToFrench:
    """Stands in for the local translator (which would load the LLM): one known question, and what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def translate(self, text: str, target: str) -> str | None:
        self.asked.append((text, target))
        known = {"When was the Eiffel Tower inaugurated?": "Quand la tour Eiffel a-t-elle été inaugurée ?"}
        return known.get(text) if target == "fr" else None


@pytest.fixture(scope="module")
def indexed_service(tmp_path_factory: pytest.TempPathFactory, embedder, models_dir: Path) -> RagService:
    """Four one-paragraph documents, two French and two English, in a real Chroma and BM25 index."""
    root = tmp_path_factory.mktemp("langchain")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in DOCUMENTS.items():
        (corpus / name).write_text(text + "\n", encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "models").symlink_to(models_dir, target_is_directory=True)
    settings = Settings(
        _env_file=None, data_dir=root / "data", corpus_dir=corpus, generator="extractive", query_translation="off"
    )
    service = RagService(settings, embedder=embedder, translator=EnglishToFrench())
    assert service.refresh().added == len(DOCUMENTS)
    return service


class TestCitedRetrieverIntegration(RetrieversIntegrationTests):
    pytestmark: ClassVar = [pytest.mark.integration, *ASYNC_SUITE]

    service: RagService

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _index(cls, indexed_service: RagService) -> None:
        cls.service = indexed_service

    @property
    def retriever_constructor(self) -> type[CitedRetriever]:
        return CitedRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"service": self.service, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "Quand la tour Eiffel a-t-elle été inaugurée ?"


@pytest.mark.integration
def test_documents_carry_what_a_citation_needs(indexed_service: RagService) -> None:
    (doc,) = CitedRetriever(service=indexed_service, k=1).invoke("Quand la tour Eiffel a-t-elle été inaugurée ?")
    assert isinstance(doc, Document)
    meta = doc.metadata
    assert meta["source"] == "tour_eiffel_fr.txt" and doc.id == meta["chunk_id"] == meta["chunk_ids"][0]
    assert meta["language"] == "fr" and meta["page"] is None and isinstance(meta["chunk_ids"], list)
    text = (indexed_service.settings.corpus_dir / meta["source"]).read_text(encoding="utf-8")
    assert text[meta["start"] : meta["end"]] == doc.page_content  # offsets into the document's text
    assert isinstance(meta["score"], float) and 0 < meta["similarity"] <= 1
    assert set(meta) >= {"title", "heading_path", "end"}


@pytest.mark.integration
def test_sources_filter_and_the_translated_question(indexed_service: RagService) -> None:
    retriever = CitedRetriever(service=indexed_service, k=4, sources=["golden_gate_en.txt", "tour_eiffel_fr.txt"])
    translator = indexed_service.translator()
    translator.asked.clear()
    found = retriever.invoke("When was the Eiffel Tower inaugurated?")
    assert {d.metadata["source"] for d in found} == {"golden_gate_en.txt", "tour_eiffel_fr.txt"}
    # The French passage answers the English question, which was also searched in French, as an answer's is.
    assert translator.asked == [("When was the Eiffel Tower inaugurated?", "fr")]
    assert found[0].metadata["source"] == "tour_eiffel_fr.txt"
    only = retriever.invoke("When was the Eiffel Tower inaugurated?", sources=["channel_tunnel_en.txt"])
    assert [d.metadata["source"] for d in only] == ["channel_tunnel_en.txt"]
