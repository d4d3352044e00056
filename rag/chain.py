"""The answer chain: standalone question (only when the question leans on the history) → its translation into
the corpus's other language (when the index holds one) → hybrid retrieval → numbered, tight excerpts → streamed
generation → citation attribution. Plain Python, not LCEL: each step decides whether the next runs (no passage
means no generation) and the stream interleaves generation with verification; LangChain users get the parts as
LangChain objects instead (rag.langchain: the retriever and the chat model)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from rag.citations import AttributionConfig, Attributor, CitationStreamer, SentenceEncoder, build_passage_sentences
from rag.generation import (
    CONFLICT_NOTES,
    DENIALS,
    REFUSALS,
    ChatGenerator,
    GenerationRequest,
    Generator,
    select_excerpts,
)
from rag.language import LANGUAGES, Language, detect_language
from rag.lexical import analyze
from rag.retrieval import HybridRetriever
from rag.schema import Answer, Passage, StreamEvent, Timings
from rag.translation import QueryTranslator
from rag.verification import Verifier

log = logging.getLogger(__name__)

# Words that point back into the conversation ("it", "they", "celui-ci"...) or open a follow-up ("and ...?").
_ANAPHORA = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|he|she|his|her|him|"
    r"il|elle|ils|elles|lui|leur|leurs|ce|cela|ça|celui|celle|ceux|celles|ci|là|son|sa|ses)\b",
    re.IGNORECASE,
)
_FOLLOW_UP_START = re.compile(r"^\s*(and|but|what about|how about|also|et|mais|aussi|pourquoi \?|et pour)\b", re.I)


def leans_on_history(question: str, history: Sequence[dict]) -> bool:
    """Cheap test that saves an LLM call for every self-contained question."""
    if not history:
        return False
    return bool(_FOLLOW_UP_START.search(question) or _ANAPHORA.search(question) or len(analyze(question)) < 3)


class AnswerChain:
    def __init__(
        self,
        retriever: HybridRetriever,
        encoder: SentenceEncoder,
        *,
        min_similarity: float,
        drop_unsupported: bool,
        attribution: AttributionConfig | None = None,
        verifier: Verifier | None = None,
        rewriter: Callable[[], ChatGenerator | None] = lambda: None,
        translator: Callable[[], QueryTranslator | None] = lambda: None,
    ):
        self.retriever = retriever
        self.encoder = encoder
        self.min_similarity = min_similarity
        self.drop_unsupported = drop_unsupported
        self.attribution = attribution
        self.verifier = verifier
        self.rewriter = rewriter
        self.translator = translator

    def _standalone(self, question: str, history: Sequence[dict], generator: Generator) -> str:
        if not leans_on_history(question, history):
            return question
        rewriter = generator if isinstance(generator, ChatGenerator) else self.rewriter()
        if rewriter is None:  # no LLM at hand: the previous question gives the context
            previous = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
            return f"{previous} {question}".strip()
        return rewriter.rewrite(question, history, detect_language(question))

    def retrieve(self, question: str, k: int, sources: Sequence[str] | None = None) -> list[Passage]:
        """The passages for a self-contained question: translated for the bilingual search, then retrieved."""
        return self._retrieve({"question": question, "standalone": question, "k": k, "sources": sources})["passages"]

    def prepare(
        self,
        question: str,
        *,
        history: Sequence[dict] = (),
        k: int,
        sources: Sequence[str] | None = None,
        generator: Generator,
    ) -> dict:
        """Every step before generation, as an answer takes them: the standalone question, its translations and
        the passages (`bench/retrieval.py` measures retrieval through this, so it measures what users get)."""
        state = {"question": question, "k": k, "sources": sources}
        return self._retrieve(state | {"standalone": self._standalone(question, list(history), generator)})

    def _retrieve(self, state: dict) -> dict:
        language = detect_language(state["question"])
        started = time.perf_counter()
        translations = self._translations(state["standalone"], language, state["sources"])
        translate_ms = _ms(started) if translations else 0.0
        started = time.perf_counter()
        passages = self.retriever.retrieve(
            state["standalone"], state["k"], sources=state["sources"], language=language, translations=translations
        )
        return {
            **state,
            "language": language,
            "translations": translations,
            "passages": passages,
            "translate_ms": translate_ms,
            "retrieve_ms": _ms(started),
        }

    def _translations(self, question: str, language: Language, sources) -> dict[Language, str]:
        """The question in each other language the searched documents hold (none: nothing to translate for)."""
        translator = self.translator()
        if translator is None:
            return {}
        targets = [other for other in LANGUAGES if other != language and self.retriever.holds_language(other, sources)]
        translations: dict[Language, str] = {}
        for target in targets:
            try:
                text = translator.translate(question, target)
            except Exception:  # a translation is a help to retrieval, never a reason to fail an answer
                log.warning("question translation failed; searching the question as asked", exc_info=True)
                continue
            if text:
                translations[target] = text
        return translations

    def stream(
        self,
        question: str,
        *,
        history: Sequence[dict] = (),
        k: int,
        sources: Sequence[str] | None = None,
        generator: Generator,
        fallback_reason: str | None = None,
    ) -> Iterator[StreamEvent]:
        started = time.perf_counter()
        state = self.prepare(question, history=history, k=k, sources=sources, generator=generator)
        language: Language = state["language"]
        passages = state["passages"]
        answer = Answer(
            answer="",
            passages=passages,
            language=language,
            generator=generator.name,
            fallback_reason=fallback_reason,
            standalone_question=state["standalone"] if state["standalone"] != question else None,
        )
        generate_started = time.perf_counter()
        verifying = _Stopwatch()  # the time spent checking sentences, apart from the model's
        if not passages or max(p.similarity for p in passages) < self.min_similarity:
            # Nothing relevant: say so without asking a generator to make something up.
            answer.answer, answer.refused, answer.passages = REFUSALS[language], True, []
            yield StreamEvent(type="token", text=answer.answer)
        else:
            request = self.request(state)
            streamer = self._streamer(request)
            # Generation starts: an empty token says so, so a front end can show that the answer is being checked
            # and an HTTP stream can send its headers now (withholding, the first sentence may come much later).
            yield StreamEvent(type="token", text="")
            for token in generator.stream(request):
                yield from verifying.timed(streamer.feed(token))
            yield from verifying.timed(streamer.finish())
            cited = streamer.result()
            answer.answer, answer.citations = cited.text, cited.citations
            answer.unsupported, answer.refused = cited.unsupported, cited.refused
        answer.timings_ms = Timings(
            translate=state["translate_ms"],
            retrieve=state["retrieve_ms"],
            generate=_ms(generate_started),
            verify=round(verifying.seconds * 1000, 1),
            total=_ms(started),
        )
        yield StreamEvent(type="final", answer=answer)

    def request(self, state: dict) -> GenerationRequest:
        """What the generator is shown, from `prepare`'s state: the passages' sentences and the tight excerpts
        chosen for the question (`bench/retrieval.py` measures how much evidence these excerpts keep)."""
        question, language, passages = state["standalone"], state["language"], state["passages"]
        sentences = build_passage_sentences(self.encoder, passages, self.retriever.stored_sentences(passages))
        # The retriever embedded this question a moment ago: the embedder gives it back from its cache.
        question_vector = np.asarray(self.retriever.embed_query(question), dtype=np.float32)
        translated = {
            other: np.asarray(self.retriever.embed_query(text), dtype=np.float32)
            for other, text in state["translations"].items()
        }
        request = GenerationRequest(question, language, passages, sentences, question_vector)
        request.translated_vectors = translated
        request.excerpts = select_excerpts(
            sentences, question_vector, language, encoder=self.encoder, translated=translated
        )
        return request

    def _streamer(self, request: GenerationRequest) -> CitationStreamer:
        """Verifies each generated sentence against what the generator was shown (and only that) as it ends."""
        attributor = Attributor(
            self.encoder,
            [request.sentences[p] for p in request.shown()],
            self.attribution,
            question=request.question,
            language=request.language,
            verifier=self.verifier,
        )
        return CitationStreamer(
            attributor,
            refusal=REFUSALS[request.language],
            drop_unsupported=self.drop_unsupported,
            conflict_note=CONFLICT_NOTES[request.language],
            denial=DENIALS[request.language],
        )


class _Stopwatch:
    """Adds up the time spent producing events, so a step's cost is told apart from the tokens it waits for."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, events: Iterable[StreamEvent]) -> list[StreamEvent]:
        started = time.perf_counter()
        done = list(events)
        self.seconds += time.perf_counter() - started
        return done


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
