"""Typed configuration, read from `RAG_*` environment variables (and a `.env` file if present).

Every component receives a `Settings` instance; nothing reads the environment on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_EMBEDDING_MODEL = "multilingual-e5-small"
# Candidates Chroma's HNSW index explores per search. With Chroma's default (100), a search of the whole-corpus
# index missed 2.1-2.4% of the 60 nearest sentences of the evaluation questions; with 300, 0.1-0.4%; with 1,000, as
# few as with 3,000 (0.04-0.2%: equal distances ordered otherwise), at ~2 ms a search (`bench/vector_recall.py`).
DEFAULT_SEARCH_EF = 1000

GeneratorName = Literal["local", "extractive", "openai", "ollama"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="forbid")

    # where things live
    data_dir: Path = Field(Path(".rag"), description="Chroma, lexical index, locks and materialised models.")
    corpus_dir: Path = Field(Path("corpus"), description="Indexed by default; uploads land here.")

    # embeddings and store
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="'multilingual-e5-small' (bundled, offline) or any sentence-transformers name or path.",
    )
    embedding_batch_size: int = Field(32, ge=1)
    embedding_device: str = "cpu"
    chroma_url: str | None = Field(None, description="http://host:port of a Chroma server; local files if unset.")
    collection: str = "rag"
    search_ef: int = Field(
        DEFAULT_SEARCH_EF,
        ge=1,
        description="Candidates the vector index explores per search (HNSW ef_search): higher finds the true "
        "nearest passages more surely, at more time per search.",
    )
    read_only: bool = Field(
        False,
        description="A reader replica: the service refuses every write (upload, deletion, refresh, rebuild) with "
        "ReadOnlyError, and its start-up does not reconcile the corpus; it answers from the shared store.",
    )

    # chunking
    chunk_size: int = Field(1000, ge=200, description="Target chunk length in characters.")
    chunk_overlap: int = Field(150, ge=0, description="Characters of the previous chunk repeated at the start.")
    table_row_chunks: bool = Field(
        False,
        description="Also index each row of every table as a chunk under its header (off: it cost unseen "
        "questions); a sheet's or CSV file's rows always are.",
    )

    # retrieval
    k: int = Field(5, ge=1, le=50)
    min_similarity: float = Field(
        0.80, description="Below this cosine similarity of the best passage, refuse without generating."
    )
    query_translation: Literal["local", "off"] = Field(
        "local",
        description="'local': the bundled model translates each question into the index's other language, and "
        "retrieval searches both; 'off': the question is searched as asked.",
    )

    # generation
    generator: GeneratorName = "local"
    generators_allowed: Annotated[list[GeneratorName], NoDecode] = Field(
        default_factory=list,
        description="Generators a client may pick, comma-separated; empty: the configured one and extractive.",
    )
    llm_threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    llm_context: int = Field(4096, ge=512)
    llm_max_tokens: int = Field(320, ge=16)
    llm_temperature: float = Field(0.1, ge=0.0, le=2.0)
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr = SecretStr("not-needed")
    ollama_base_url: str = "http://127.0.0.1:11434"
    ollama_model: str = "qwen2.5:1.5b-instruct"

    # citations
    verifier: Literal["rules", "similarity"] = Field(
        "rules",
        description="'rules': a quote the similarity stage matched must also agree in meaning (negation, yes/no, "
        "conditions, figures bound to their names); 'similarity': the match alone decides.",
    )
    drop_unsupported: bool = Field(
        True,
        description="Withhold answer sentences no passage supports: a sentence is sent only once verified (the "
        "withheld ones stay listed in `unsupported`) and a refusal never follows a verified claim; false streams "
        "them as written and flags them.",
    )

    # HTTP API
    api_key: SecretStr | None = Field(None, description="When set, write endpoints need 'Authorization: Bearer'.")
    api_key_for_read: bool = False
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest document accepted: uploads (API and UI) and `rag index`."
    )
    upload_cache_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Room for the UI's not-yet-indexed uploads; beyond it uploads wait (503)."
    )
    max_question_chars: int = Field(4000, ge=16, description="Longest question, on every route.")
    generation_queue_size: int = Field(4, ge=1)

    @field_validator("generators_allowed", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @property
    def allowed_generators(self) -> tuple[str, ...]:
        """What a client may choose: the operator's list, or the configured generator and the extractive one."""
        chosen = self.generators_allowed or [self.generator, "extractive"]
        return tuple(name for name in get_args(GeneratorName) if name in chosen)

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def ocr_dir(self) -> Path:
        """Pages read by OCR, by file content: a quote shown in context or on its page never runs OCR again."""
        return self.data_dir / "ocr"
