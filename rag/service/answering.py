"""The service's answers: every question of every front end passes the same bounds here, waits its turn for the
CPU model, stops when its client leaves and is counted by outcome."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from rag.errors import RequestError
from rag.schema import Answer, Passage, StreamEvent
from rag.service.components import Components
from rag.service.locks import GenerationQueue
from rag.service.pages import Pages
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.generation import Generator

# Earlier turns kept for a follow-up, each cut to the question limit: the rewrite needs the recent context only.
_HISTORY_TURNS = 10


class AnswerCancelled(Exception):
    """The client asked to stop (it left); raised between generated tokens."""


class StoppableGenerator:
    """A generator whose token stream ends as soon as `cancel` is set."""

    def __init__(self, inner: Any, cancel: threading.Event):
        self._inner = inner
        self._cancel = cancel
        self.name = inner.name

    def stream(self, request: Any) -> Iterator[str]:
        for token in self._inner.stream(request):
            if self._cancel.is_set():
                raise AnswerCancelled()
            yield token

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._inner, attribute)


class AnswerCounters:
    """Answers started, finished, cancelled (the client left) and failed, since the process started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"started": 0, "finished": 0, "cancelled": 0, "failed": 0}

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Answering:
    """Questions in, streamed answers out, through the components' chain and generators."""

    def __init__(self, settings: Settings, components: Components, pages: Pages):
        self.settings = settings
        self.components = components
        self.pages = pages
        self.queue = GenerationQueue(settings.generation_queue_size)
        self.counters = AnswerCounters()

    def ask_stream(
        self,
        question: str,
        *,
        history: Sequence[dict] = (),
        k: int | None = None,
        sources: Sequence[str] | None = None,
        generator: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream events (tokens, citations, then one final answer); see `rag.schema.StreamEvent`.

        Every front end comes through here, so the bounds hold on every route: the question length, the
        history kept, the generators the operator allows. A client that leaves sets `cancel` (checked between
        generated tokens, so a step that holds text back for verification stops too) or closes the iterator;
        either way the work stops and is counted as cancelled."""
        question = self.check_question(question)
        name = self.check_generator(generator)
        kept = self._recent_turns(history)
        chosen, fallback = self.components.generator(name)
        if cancel is not None:
            chosen = StoppableGenerator(chosen, cancel)
        events = self._stream(question, kept, k or self.settings.k, sources, chosen, fallback)
        yield from self._counted(self.pages.with_boxes(events))

    def _recent_turns(self, history: Sequence[dict]) -> list[dict]:
        """The last turns of `history`, each cut to the question limit."""
        limit = self.settings.max_question_chars
        return [
            {"role": str(turn.get("role", "")), "content": str(turn.get("content", ""))[:limit]}
            for turn in list(history)[-_HISTORY_TURNS:]
        ]

    def _stream(
        self,
        question: str,
        history: list[dict],
        k: int,
        sources: Sequence[str] | None,
        generator: Generator,
        fallback: str | None,
    ) -> Iterator[StreamEvent]:
        """The chain's events, after waiting for the CPU model's turn when the local model answers."""
        turn = self.queue.turn() if generator.name == "local" else nullcontext()
        with turn:
            yield from self.components.chain.stream(
                question, history=history, k=k, sources=sources, generator=generator, fallback_reason=fallback
            )

    def _counted(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        """`events`, counted as started, then finished, cancelled or failed."""
        self.counters.add("started")
        finished = False
        try:
            yield from events
            finished = True
        except AnswerCancelled:
            self.counters.add("cancelled")
        except GeneratorExit:
            self.counters.add("cancelled")
            raise
        except Exception:
            self.counters.add("failed")
            raise
        finally:
            if finished:
                self.counters.add("finished")

    def check_question(self, question: str) -> str:
        """The question stripped, or a RequestError: empty, or over the one length limit of every route."""
        question = (question or "").strip()
        if not question:
            raise RequestError("The question is empty.", 400, "empty_question")
        limit = self.settings.max_question_chars
        if len(question) > limit:
            raise RequestError(
                f"Question too long: {len(question):,} characters (limit {limit:,}).", 413, "question_too_long"
            )
        return question

    def check_generator(self, name: str | None) -> str:
        """`name` (default: the configured one) if the operator allows clients to choose it."""
        chosen = name or self.settings.generator
        allowed = self.settings.allowed_generators
        if chosen not in allowed:
            raise RequestError(
                f"The generator {chosen!r} is not enabled on this server; enabled: {', '.join(allowed)} "
                "(RAG_GENERATORS_ALLOWED).",
                403,
                "generator_not_allowed",
            )
        return chosen

    def ask(self, question: str, **options: Any) -> Answer:
        """The final answer of `ask_stream`, for callers that do not stream."""
        final = None
        for event in self.ask_stream(question, **options):
            if event.type == "final":
                final = event.answer
        assert final is not None  # the chain always ends with a final event
        return final

    def retrieve(self, question: str, k: int = 5, sources: Sequence[str] | None = None) -> list[Passage]:
        """The passages an answer to `question` would rest on, without generating one (rag.langchain's retriever):
        the same bounds, translation for the bilingual search and hybrid retrieval as `ask_stream`, no history."""
        question = self.check_question(question)
        return self.components.chain.retrieve(question, k, sources)
