"""Answer speed: retrieval latency (without, then with the question's translation), the translation's own
cost, and the local model's time to the first verified sentence (the first text a user sees: sentences are sent
once verified) and total time per answer (translation included), with the verifier's own cost per answer,
beside the naive chain (same model, whole top-5 chunks in the prompt, KV cache reset before each question, no
translation, no verification: its first token).

    .venv/bin/python bench/answer.py [--questions N] [--json]

Runs against the current index (RAG_DATA_DIR, default .rag/: index corpus/ and ../shared/corpus/related/
first). Questions come from ../shared/eval/dev.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402

from rag.generation import SYSTEM_PROMPT  # noqa: E402
from rag.language import LANGUAGES, detect_language  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--questions",
        type=int,
        default=6,
        help="questions answered by the local model (0: retrieval and translation only)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = [json.loads(line) for line in (REPO.parent / "shared" / "eval" / "dev.jsonl").open(encoding="utf-8")]
    service = RagService(Settings(generator="local"))
    service.warm_up()
    retriever = service.chain.retriever

    retrieval_ms = []
    for item in items:
        started = time.perf_counter()
        retriever.retrieve(item["question"], service.settings.k)
        retrieval_ms.append((time.perf_counter() - started) * 1000)

    translator = service.translator()
    if translator is None:
        raise SystemExit(f"question translation unavailable: {service.translator_unavailable}")
    translate_ms, translated_retrieval_ms = [], []
    for item in items:
        language = detect_language(item["question"])
        target = next(other for other in LANGUAGES if other != language)
        started = time.perf_counter()
        translation = translator.translate(item["question"], target)
        translate_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        retriever.retrieve(
            item["question"], service.settings.k, language=language, translations={target: translation or ""}
        )
        translated_retrieval_ms.append((time.perf_counter() - started) * 1000)
    translator.clear()  # the answers below pay for their translation, as a new question does

    generator, fallback = service.generator("local")
    if fallback and args.questions:
        raise SystemExit(f"local model unavailable: {fallback}")
    chat_model = getattr(generator, "chat_model", None)
    ours = {"first_sentence_s": [], "total_s": [], "verify_s": []}
    naive = {"first_token_s": [], "total_s": []}
    for item in items[: args.questions]:
        started, first = time.perf_counter(), None
        for event in service.ask_stream(item["question"]):
            if event.type == "token" and event.text and first is None:  # (an empty one marks generation start)
                first = time.perf_counter() - started
            if event.type == "final" and event.answer is not None:
                ours["verify_s"].append(event.answer.timings_ms.verify / 1000)
        ours["first_sentence_s"].append(first)
        ours["total_s"].append(time.perf_counter() - started)

        started = time.perf_counter()
        passages = retriever.retrieve(item["question"], 5)
        context = "\n\n".join(f"[{p.n}] {p.text}" for p in passages)
        chat_model.llama.reset()  # no reuse of the cached prefix
        first = None
        messages = [SystemMessage(SYSTEM_PROMPT), HumanMessage(f"Passages:\n{context}\n\nQuestion: {item['question']}")]
        for _ in chat_model.stream(messages):
            if first is None:
                first = time.perf_counter() - started
        naive["first_token_s"].append(first)
        naive["total_s"].append(time.perf_counter() - started)

    def summary(values: dict[str, list[float]]) -> dict[str, float] | None:
        if not any(values.values()):
            return None
        return {f"{k}_p50": round(statistics.median(v), 1) for k, v in values.items()} | {
            f"{k}_max": round(max(v), 1) for k, v in values.items()
        }

    result = {
        "retrieval_ms": {"p50": percentile(retrieval_ms, 0.5), "p95": percentile(retrieval_ms, 0.95)},
        "translation_ms": {"p50": percentile(translate_ms, 0.5), "p95": percentile(translate_ms, 0.95)},
        "retrieval_with_translation_ms": {
            "p50": percentile(translated_retrieval_ms, 0.5),
            "p95": percentile(translated_retrieval_ms, 0.95),
        },
        "questions": args.questions,
        "ours": summary(ours),
        "naive": summary(naive),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
