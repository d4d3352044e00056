"""The LangChain chat model behind each LLM generator name (local, openai, ollama), chosen by setting."""

from __future__ import annotations

from rag.errors import GeneratorUnavailable
from rag.settings import Settings


def make_chat_model(name: str, settings: Settings):
    """The LangChain chat model behind an LLM generator."""
    if name == "local":
        from rag.llm_local import ModelUnavailable, load_local_chat_model

        try:
            return load_local_chat_model(settings)
        except ModelUnavailable as error:
            raise GeneratorUnavailable(f"local model unavailable ({error}); using the extractive generator") from None
    if name == "openai":
        from langchain_openai import ChatOpenAI

        if not settings.openai_base_url and settings.openai_api_key.get_secret_value() == "not-needed":
            raise GeneratorUnavailable("RAG_OPENAI_BASE_URL or RAG_OPENAI_API_KEY is not set")
        return ChatOpenAI(
            model=settings.openai_model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            streaming=True,
        )
    if name == "ollama":
        from langchain_ollama import ChatOllama

        return ChatOllama(
            model=settings.ollama_model,
            base_url=settings.ollama_base_url,
            temperature=settings.llm_temperature,
            num_predict=settings.llm_max_tokens,
        )
    raise GeneratorUnavailable(f"unknown generator {name!r}")
