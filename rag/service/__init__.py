"""The service: the engine's one entry point (`RagService`), its start-up task, locks and chat-model factory."""

from rag.service.core import RagService

__all__ = ["RagService"]
