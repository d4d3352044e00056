"""The HTTP API: REST, Server-Sent Events and an OpenAI-compatible API over `rag.service.RagService`, which
holds all the logic; the index and the generators run in worker threads, so the event loop never blocks.

- `app`: `create_app` assembles the pieces below; `uvicorn --factory rag.api:create_app_from_settings`.
- `routes`: one module per topic (health, ask, openai, documents, index); docs/api.md lists the endpoints.
- `models`: the request and response bodies. `errors`: the one error shape and the engine's errors' statuses.
- `auth`: the key check on write routes (and read routes with RAG_API_KEY_FOR_READ). `middleware`: body
  limits and the last-resort 500. `streaming`: answers stepped in worker threads, sent as SSE.
- `state`: the indexing runs started here, and the dependencies routes reach the service through.
"""

from rag.api.app import create_app, create_app_from_settings, installed_front_ends

__all__ = ["create_app", "create_app_from_settings", "installed_front_ends"]
