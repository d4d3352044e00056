"""The vector index's own recall: of the true nearest chunks and sentences of each evaluation question (exhaustive
search over the vectors the index stores), how many Chroma's HNSW search returns, and whether its first is the true
first, at several `ef_search` values. Retrieval reads the 20 nearest chunks and 60 nearest sentences of each
language; what the index misses there, no later step can find.

    .venv/bin/python bench/vector_recall.py [--ef 100,300,1000,3000] [--json]

Runs on a copy of the local index (RAG_DATA_DIR's chroma/, default .rag/: index corpus/ and
../shared/corpus/related/ first), which it changes and deletes; the index itself is left as it is. Questions: every
item of ../shared/eval/dev.jsonl and dev2.jsonl, questions only (no answer or evidence is read), embedded as
retrieval embeds them. A "miss" of the first can be an equal distance ordered otherwise (a sentence stored in two
overlapping chunks): exhaustive search keeps some of them too, which is why recall stops short of 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.evaluation import load_items  # noqa: E402
from rag.retrieval import FusionWeights  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import make_chroma_client  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"
# What retrieval asks of each language's collection.
WANTED = {"chunks": FusionWeights().candidates, "sentences": FusionWeights().sentence_hits}


def measure(collection, questions: np.ndarray, k: int, ef: int) -> dict:
    stored = collection.get(include=["embeddings"])
    ids, vectors = stored["ids"], np.asarray(stored["embeddings"], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    recalls, firsts, times = [], [], []
    for question in questions:
        order = np.argsort(-(vectors @ question))
        started = time.perf_counter()
        found = collection.query(query_embeddings=[question.tolist()], n_results=k, include=[])["ids"][0]
        times.append((time.perf_counter() - started) * 1000)
        recalls.append(len({ids[j] for j in order[:k]} & set(found)) / min(k, len(ids)))
        firsts.append(found[0] == ids[order[0]])
    return {
        "stored": len(ids),
        "k": k,
        "ef_search": ef,
        "recall": round(statistics.fmean(recalls), 4),
        "worst_recall": round(min(recalls), 3),
        "first_is_true_first": round(statistics.fmean(firsts), 3),
        "ms_p50": round(statistics.median(times), 2),
    }


def run_alone(ef: int) -> str:
    command = [sys.executable, __file__, "--ef", str(ef), "--json"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def measure_copy(settings: Settings, ef: int) -> list[dict]:
    """Every vector collection of a copy of the index, searched with `ef`."""
    embedder = RagService(settings).embedder
    items = [*load_items(EVAL / "dev.jsonl"), *load_items(EVAL / "dev2.jsonl")]
    questions = np.asarray(embedder.encode([item.question for item in items], "query"), dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        copy = settings.model_copy(update={"data_dir": Path(scratch), "chroma_url": None})
        shutil.copytree(settings.chroma_dir, copy.chroma_dir)
        client = make_chroma_client(copy)
        for listed in client.list_collections():
            if listed.name.endswith(("__documents", "__sentences")):
                continue
            collection = client.get_collection(listed.name)
            # Before anything reads the collection: its index is loaded with the ef_search of that moment.
            collection.modify(configuration={"hnsw": {"ef_search": ef}})
            kind = "sentences" if "__sentences__" in collection.name else "chunks"
            if collection.count() == 0:
                continue
            rows.append(
                {
                    "collection": collection.name,
                    "questions": len(items),
                    **measure(collection, questions, WANTED[kind], ef),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ef", default="100,300,1000,3000", help="ef_search values to compare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    values = [int(value) for value in args.ef.split(",")]
    if len(values) > 1:
        # A process per value: Chroma reads ef_search when a process first loads a collection's index and keeps that
        # load for every client of the same collection, copies included.
        rows = [row for ef in values for row in json.loads(run_alone(ef))]
    else:
        rows = measure_copy(settings, values[0])
    rows.sort(key=lambda row: (row["collection"], row["ef_search"]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{rows[0]['questions']} questions\n")
    print("| collection | stored | k | ef_search | recall@k | worst | first is the true first | ms p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['collection']} | {row['stored']} | {row['k']} | {row['ef_search']} | {row['recall']:.4f} | "
            f"{row['worst_recall']:.3f} | {row['first_is_true_first']:.3f} | {row['ms_p50']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
