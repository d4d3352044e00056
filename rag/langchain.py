"""The LangChain face of the engine, for apps that embed it: a retriever of cited passages, and the local chat model
and embeddings it runs on. Each passes LangChain's standard test suites (tests/integration/test_langchain_standard.py).

    from rag.langchain import CitedRetriever
    from rag.service import RagService
    from rag.settings import Settings

    service = RagService(Settings(corpus_dir="docs"))
    service.refresh()  # indexes docs/ (incremental: unchanged files are not embedded again)
    docs = CitedRetriever(service=service, k=3).invoke("Quand l'Italie a-t-elle interdit DeepSeek ?")

Each Document's metadata locates its passage (source, page, start/end offsets in the extracted text), as our
own citations do. `LlamaCppChatModel` and `SentenceTransformerEmbeddings` are the models the service runs on.
"""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from rag.embeddings import SentenceTransformerEmbeddings
from rag.llm_local import LlamaCppChatModel
from rag.schema import Passage
from rag.service import RagService

__all__ = ["CitedRetriever", "LlamaCppChatModel", "SentenceTransformerEmbeddings", "passage_document"]


def passage_document(passage: Passage) -> Document:
    """A passage as a LangChain Document whose metadata locates it in its source (offsets into the document's
    extracted text), so an app can cite it as our answers do."""
    return Document(
        id=passage.chunk_id,
        page_content=passage.text,
        metadata={
            "source": passage.source,
            "title": passage.title,
            "page": passage.page,
            "heading_path": passage.heading_path,
            "start": passage.start,
            "end": passage.end,
            "chunk_id": passage.chunk_id,
            "chunk_ids": list(passage.chunk_ids),
            "language": passage.language,
            "score": passage.score,
            "similarity": passage.similarity,
        },
    )


class CitedRetriever(BaseRetriever):
    """The service's own retrieval as a LangChain retriever: the question translated into the index's other
    language when a translator is on, then hybrid (dense + BM25) search, neighbouring chunks merged.

    It calls `RagService.retrieve`, the retrieval step of the service's answers, so it finds exactly what an answer
    to the same question (asked without history) would be built on. `k` and `sources` can be overridden per call:
    `retriever.invoke(question, k=3, sources=["report.pdf"])`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    service: RagService
    k: int = Field(5, ge=1)
    sources: list[str] | None = Field(None, description="Search only these documents (their `source` names).")

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        sources: list[str] | None = None,
    ) -> list[Document]:
        k = self.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        passages = self.service.retrieve(query, k, self.sources if sources is None else sources)
        return [passage_document(passage) for passage in passages]
