"""Retrieval ablation on a question set: recall@k and hit@1 for each fusion variant, against the current index.

    .venv/bin/python bench/retrieval.py [../shared/eval/dev.jsonl] [--k 5]

Variants: dense chunks only; dense chunks + sentence vectors; plain RRF with BM25 (no language handling);
language-aware lexical weight without / with reserved places for the other language. All use the same index
(RAG_DATA_DIR, default .rag/) and the sub-question split of multi-sentence questions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.evaluation import load_items, score_item  # noqa: E402
from rag.retrieval import FusionWeights, HybridRetriever  # noqa: E402
from rag.schema import Answer  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402

VARIANTS = {
    "dense chunks": FusionWeights(sentence=0, lexical_same_language=0, lexical_other_language=0, slots=0),
    "dense chunks + sentences": FusionWeights(lexical_same_language=0, lexical_other_language=0, slots=0),
    "+ BM25, plain RRF": FusionWeights(lexical_same_language=1, lexical_other_language=1, slots=0),
    "+ BM25 weighted by language": FusionWeights(slots=0),
    "+ places for the other language (default)": FusionWeights(),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", nargs="?", default=str(REPO.parent / "shared" / "eval" / "dev.jsonl"))
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    items = [i for i in load_items(Path(args.file)) if i.answerable]
    service = RagService(Settings(generator="extractive"))
    print(f"| variant | recall@{args.k} | hit@1 | MRR |\n|---|---|---|---|")
    for name, weights in VARIANTS.items():
        retriever = HybridRetriever(service.store, service.lexical, service.embedder.embed_query, weights=weights)
        recall, hit1, rr = [], [], []
        for item in items:
            passages = retriever.retrieve(item.question, args.k)
            result = score_item(item, Answer(answer="", passages=passages))
            recall.append(result["recall_at_k"])
            rr.append(result["reciprocal_rank"])
            hit1.append(float(result["reciprocal_rank"] == 1.0))
        n = len(items)
        print(f"| {name} | {sum(recall) / n:.3f} | {sum(hit1) / n:.3f} | {sum(rr) / n:.3f} |")


if __name__ == "__main__":
    main()
