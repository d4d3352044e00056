"""Scale bench: how retrieval, memory, disk, refreshes and a replica's start-up grow with the index, on synthetic
corpora of 10k, 100k and 1M stored vectors, in the embedded store and in a `chroma run` server.

    .venv/bin/python bench/scale.py --max-vectors 10000 --json            # the CI point
    .venv/bin/python bench/scale.py --max-vectors 100000 --stores server  # one store, points up to 100k
    .venv/bin/python bench/scale.py --report a.json b.json --plot docs/scale.svg   # table and plot of saved runs

A point's vectors are chunks and their sentence vectors in the real corpus's ratio (sentences of 25 characters
or more, the refresher's rule). Their texts are drawn from the real corpus's French and English words
(corpus/ and ../shared/corpus/related/: each language's word frequencies, sentence lengths, chunk lengths,
chunks per document and share of chunks). The first chunks (`--sample-chunks`) are embedded by the real model;
the bulk gets cheap random unit vectors spread like those, written straight through the store interface
(`VectorStore.upsert`, `put_document`), so the embedding cost does not hide everything else.

Each point runs in its own temporary folder, in two processes, one after the other:
- the indexer inserts the vectors, times the lexical index's full build (a fresh data dir's first `lexical()`: what
  any change cost every replica before the per-document index) and its catch-up after another process changed one
  document (the next `lexical()`), refreshes one changed real document through `RagService.add_document` (its
  embedding time reported apart) and adds 1,000 chunks through the store;
- a replica, a new process (on the same data dir for the embedded store; on a fresh one, pointed at the same
  server, for the server), is timed from its launch to its first `retrieve`, then measures dense and sentence
  searches (in the question's language, as the retriever searches, and over every language), lexical, fused and
  whole-`retrieve` latencies on the real dev questions, and its memory (RSS).
The `chroma run` server, when used, listens on a free 127.0.0.1 port and is stopped with its point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from index.chunking import chunk_document  # noqa: E402
from index.discovery import discover  # noqa: E402
from index.loaders import load_document  # noqa: E402
from index.types import Chunk, text_hash  # noqa: E402
from rag.language import detect_language  # noqa: E402
from rag.refresh import embed_chunks, sentence_spans  # noqa: E402
from rag.schema import DocumentRecord  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import ChunkVectors, VectorStore  # noqa: E402
from tests import harness  # noqa: E402

POINTS = (10_000, 100_000, 1_000_000)
STORES = ("embedded", "server")
REAL_CORPUS = (REPO / "corpus", harness.RELATED)
# The document refreshed through the service: a real file, changed by one sentence in its middle.
REFRESHED_DOCUMENT = REPO / "corpus" / "deepseek_article_fr.txt"
ADDED_SENTENCE = "Cette phrase a été ajoutée au milieu du document pour mesurer le rafraîchissement d'un seul fichier."
ADDED_CHUNKS = 1000
INSERT_BATCH_CHUNKS = 500
MB = 1024 * 1024


# --- what the synthetic corpus copies from the real one -------------------------------------------------------------
@dataclass
class CorpusProfile:
    """The real corpus's shape: each language's words (with repeats, so a draw follows their frequencies) and
    sentence lengths in words, the chunk lengths in characters, chunks per document, the share of French chunks,
    and the sentence vectors per chunk that the refresher's rule gives."""

    words: dict[str, np.ndarray]
    sentence_words: dict[str, np.ndarray]
    chunk_chars: np.ndarray
    chunks_per_document: np.ndarray
    french_share: float
    sentences_per_chunk: float
    # The real model's vectors of the sample, per dimension: the bulk's random vectors are drawn like them.
    vector_mean: np.ndarray | None = None
    vector_std: np.ndarray | None = None

    @classmethod
    def of_corpus(cls, paths: Sequence[Path], settings: Settings) -> CorpusProfile:
        words: dict[str, list[str]] = {"fr": [], "en": []}
        sentence_words: dict[str, list[int]] = {"fr": [], "en": []}
        chunk_chars, per_document, sentences, french = [], [], 0, 0
        for file in discover(list(paths))[0]:
            chunks = chunk_document(load_document(file.path, file.root), settings.chunk_size, settings.chunk_overlap)
            per_document.append(len(chunks))
            for chunk in chunks:
                language = detect_language(chunk.text)
                french += language == "fr"
                chunk_chars.append(len(chunk.text))
                for start, end in sentence_spans(chunk):
                    sentences += 1
                    found = [w.strip(".!?;:…") for w in chunk.text[start:end].split()]
                    found = [w for w in found if w]
                    words[language] += found
                    sentence_words[language].append(len(found))
        return cls(
            words={lang: np.array(found, dtype=object) for lang, found in words.items()},
            sentence_words={lang: np.array(found) for lang, found in sentence_words.items()},
            chunk_chars=np.array(chunk_chars),
            chunks_per_document=np.array(per_document),
            french_share=french / len(chunk_chars),
            sentences_per_chunk=sentences / len(chunk_chars),
        )


class SyntheticCorpus:
    """Documents made of the real corpus's words, each drawn from its own seed, so any process can make document
    `number` again (or a new one) without the others."""

    def __init__(self, profile: CorpusProfile, seed: int, root: Path):
        self.profile = profile
        self.seed = seed
        self.root = root

    def document(self, number: int, chunks: int | None = None) -> tuple[DocumentRecord, list[Chunk]]:
        """Document `number`: one language, a title, `chunks` chunks (default: a real document's count)."""
        rng = np.random.default_rng([self.seed, number])
        profile = self.profile
        language = "fr" if rng.random() < profile.french_share else "en"
        count = chunks or int(rng.choice(profile.chunks_per_document))
        title = self._sentence(rng, language, 6)
        source = f"synthetic/{language}/doc-{number:07d}.md"
        result, start = [], 0
        for index in range(count):
            text = self._chunk_text(rng, language, int(rng.choice(profile.chunk_chars)))
            heading = self._sentence(rng, language, 4)
            result.append(Chunk(source, title, text, start, start + len(text), index, (heading,), language=language))
            start += len(text) - 150
        content = "".join(c.text for c in result)
        record = DocumentRecord(
            source=source,
            root=str(self.root),
            path=str(self.root / source),
            content_hash=text_hash(content),
            size=len(content.encode()),
            mtime_ns=number,
            kind="md",
            title=title,
            chunks=count,
            indexed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            pipeline="synthetic",
        )
        return record, result

    def _sentence(self, rng: np.random.Generator, language: str, length: int | None = None) -> str:
        words = self.profile.words[language]
        length = length or max(3, int(rng.choice(self.profile.sentence_words[language])))
        text = " ".join(words[rng.integers(len(words), size=length)])
        return text[:1].upper() + text[1:]

    def _chunk_text(self, rng: np.random.Generator, language: str, target: int) -> str:
        """Sentences up to about `target` characters: the last one is kept when at least half of it fits, so the
        chunks' mean length is the real one's."""
        sentences = [self._sentence(rng, language) + "."]
        size = len(sentences[0])
        while True:
            sentence = self._sentence(rng, language) + "."
            if size + 1 + len(sentence) / 2 > target:
                return " ".join(sentences)
            sentences.append(sentence)
            size += 1 + len(sentence)


class VectorSource:
    """Vectors for synthetic chunks: the real model's for the sample, random unit vectors like them for the rest."""

    def __init__(self, profile: CorpusProfile, seed: int):
        assert profile.vector_mean is not None and profile.vector_std is not None
        self.mean = profile.vector_mean
        self.std = profile.vector_std
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def learn(profile: CorpusProfile, embedder: Any, sample: Sequence[Chunk]) -> dict[str, ChunkVectors]:
        """The sample's real vectors; records their spread in `profile` for the bulk."""
        real = embed_chunks(embedder, sample)
        every = np.array([v for cv in real.values() for v in (cv.chunk, *(s[2] for s in cv.sentences))])
        profile.vector_mean, profile.vector_std = every.mean(axis=0), every.std(axis=0)
        return real

    def random(self, chunks: Sequence[Chunk]) -> list[ChunkVectors]:
        spans = [sentence_spans(c) for c in chunks]
        count = len(chunks) + sum(map(len, spans))
        vectors = self.rng.standard_normal((count, len(self.mean)), dtype=np.float32) * self.std + self.mean
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = iter(vectors.tolist())
        return [ChunkVectors(next(rows), [(s, e, next(rows)) for s, e in chunk_spans]) for chunk_spans in spans]


def vectors_of(vectors: Sequence[ChunkVectors]) -> int:
    return sum(1 + len(v.sentences) for v in vectors)


# --- measuring ------------------------------------------------------------------------------------------------------
class TimedEmbedder:
    """The real embedder, adding up the seconds spent embedding passages: a refresh's own embedding time is then
    reported apart from the rest of its work (the issue's target excludes it)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.seconds = 0.0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (as the other benches report p95)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def process_rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process now, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MB


def questions(count: int) -> list[str]:
    from rag.evaluation import load_items

    return [item.question for item in load_items(harness.DEV_SET)][:count]


def settings_for(config: dict[str, Any], data_dir: str) -> Settings:
    """The point's settings (extractive generator, no question translation: retrieval alone is measured), with the
    materialised e5 folder linked rather than rebuilt."""
    settings = Settings(
        _env_file=None,
        data_dir=Path(data_dir),
        corpus_dir=Path(config["corpus_dir"]),
        chroma_url=config.get("chroma_url"),
        generator="extractive",
        query_translation="off",
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.models_dir.exists():
        harness.MODELS_DIR.mkdir(parents=True, exist_ok=True)
        settings.models_dir.symlink_to(harness.MODELS_DIR.resolve(), target_is_directory=True)
    return settings


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the indexer: builds the point, then changes it as the service would --------------------------------------------
def run_indexer(config: dict[str, Any]) -> dict[str, Any]:
    from rag.service import RagService

    settings = settings_for(config, config["indexer_dir"])
    embedder = TimedEmbedder(_real_embedder(settings))
    service = RagService(settings, embedder=embedder)
    store = service.store
    profile = CorpusProfile.of_corpus(REAL_CORPUS, settings)
    corpus = SyntheticCorpus(profile, config["seed"], Path(config["corpus_dir"]).parent / "synthetic-root")
    inserted = insert_synthetic(store, corpus, embedder, config["vectors"], config["sample_chunks"])
    result: dict[str, Any] = {"real_sentences_per_chunk": round(profile.sentences_per_chunk, 2), **inserted}
    result["lexical_design"] = lexical_design()

    # A fresh data dir's first `lexical()` reads every chunk: the full rebuild, whichever design the index has.
    log("lexical index: built from every chunk of the store")
    result["lexical_rebuild_s"], _ = timed(service.lexical)

    log("refresh of one real document through the service")
    original = REFRESHED_DOCUMENT.read_text(encoding="utf-8")
    result |= _timed_upload(service, embedder, original, "add_new_document")
    middle = original.index("\n", len(original) // 2)
    changed = original[:middle] + " " + ADDED_SENTENCE + original[middle:]
    result |= _timed_upload(service, embedder, changed, "refresh_one")

    log("one document changed through the store by another process; the lexical index catches up")
    vectors = VectorSource(profile, config["seed"] + 1)
    record, chunks = corpus.document(10**7)
    store.upsert(chunks, vectors.random(chunks))
    store.put_document(record)
    service._components._lexical_checked = 0.0  # the next call checks the store at once, not after 2 s
    result["lexical_update_s"], _ = timed(service.lexical)

    log(f"adding {ADDED_CHUNKS} chunks through the store (their vectors ready)")
    number, added, seconds = 10**7 + 1, 0, 0.0
    while added < ADDED_CHUNKS:
        record, chunks = corpus.document(number, min(50, ADDED_CHUNKS - added))
        ready = vectors.random(chunks)
        elapsed, _ = timed(lambda chunks=chunks, ready=ready, record=record: _write(store, chunks, ready, record))
        seconds, added, number = seconds + elapsed, added + len(chunks), number + 1
    result["add_1000_chunks_s"] = seconds
    service._components._lexical_checked = 0.0
    result["lexical_after_add_s"], _ = timed(service.lexical)  # leaves the replica an index in step
    result["chunks_at_end"] = store.count()
    return result


def lexical_design() -> str:
    """ "update" when the lexical index takes one document at a time, "rebuild" when any change rebuilds it whole
    (before the per-document index): a run on an older checkout then reports its costs beside today's."""
    from rag.lexical import LexicalIndex

    return "update" if hasattr(LexicalIndex, "put") else "rebuild"


def _real_embedder(settings: Settings) -> Any:
    from rag.embeddings import SentenceTransformerEmbeddings

    embedder = SentenceTransformerEmbeddings(settings)
    embedder.embed_query("warm up")  # the model loads outside every timing
    return embedder


def _write(store: VectorStore, chunks: Sequence[Chunk], vectors: Sequence[ChunkVectors], record: DocumentRecord):
    """As the refresher writes a document: its chunks (sentences first, inside `upsert`), then its record."""
    store.upsert(chunks, vectors)
    store.put_document(record)


def insert_synthetic(
    store: VectorStore, corpus: SyntheticCorpus, embedder: Any, target: int, sample_chunks: int
) -> dict[str, Any]:
    """Documents until the store holds `target` vectors (chunks + sentences); the first `sample_chunks` chunks get
    the real model's vectors, which also set how the random ones are spread."""
    sample: list[Chunk] = []
    number = 0
    while len(sample) < sample_chunks:
        sample += corpus.document(number)[1]
        number += 1
    log(f"embedding the real-model sample: {len(sample)} chunks and their sentences")
    embed_s, real = timed(lambda: VectorSource.learn(corpus.profile, embedder, sample))
    vectors = VectorSource(corpus.profile, corpus.seed)
    stored = chunks_count = documents = 0
    pending: list[tuple[DocumentRecord, list[Chunk], list[ChunkVectors]]] = []
    started = time.perf_counter()
    next_report = target / 10
    for number in range(10**7):
        if stored >= target:
            break
        record, chunks = corpus.document(number)
        sampled = all(c.id in real for c in chunks)
        ready = [real[c.id] for c in chunks] if sampled else vectors.random(chunks)
        chunks = chunks[: max(1, _chunks_within(ready, target - stored))]
        ready = ready[: len(chunks)]
        record.chunks = len(chunks)
        pending.append((record, chunks, ready))
        stored += vectors_of(ready)
        chunks_count += len(chunks)
        documents += 1
        if sum(len(p[1]) for p in pending) >= INSERT_BATCH_CHUNKS or stored >= target:
            _flush(store, pending)
            pending = []
            if stored >= next_report:
                rate = stored / (time.perf_counter() - started)
                log(f"{stored:,} / {target:,} vectors stored, {rate:,.0f} vectors/s")
                next_report = stored + target / 10
    insert_s = time.perf_counter() - started
    return {
        "vectors_stored": stored,
        "chunks": chunks_count,
        "sentence_vectors": stored - chunks_count,
        "documents": documents,
        "sentences_per_chunk": round((stored - chunks_count) / chunks_count, 2),
        "real_model_vectors": vectors_of(list(real.values())),
        "sample_embed_s": embed_s,
        "insert_s": insert_s,
        "insert_vectors_per_s": stored / insert_s,
    }


def _chunks_within(vectors: Sequence[ChunkVectors], room: int) -> int:
    """How many of a document's first chunks fit in `room` vectors (the last document is cut to the target)."""
    used = 0
    for count, vector in enumerate(vectors):
        used += 1 + len(vector.sentences)
        if used > room:
            return count
    return len(vectors)


def _flush(store: VectorStore, pending: list[tuple[DocumentRecord, list[Chunk], list[ChunkVectors]]]) -> None:
    """Several documents' chunks in one upsert (as the refresher writes a long document), then their records."""
    store.upsert([c for _, chunks, _ in pending for c in chunks], [v for _, _, ready in pending for v in ready])
    for record, _, _ in pending:
        store.put_document(record)


def _timed_upload(service: Any, embedder: TimedEmbedder, text: str, name: str) -> dict[str, float]:
    """One upload through the service (save, lock, refresh of that file, lexical index in step), its embedding
    time apart."""
    embedder.seconds = 0.0
    seconds, outcome = timed(lambda: service.add_document(REFRESHED_DOCUMENT.name, text.encode(), replace=True))
    assert not outcome.report.skipped, outcome.report.skipped
    return {f"{name}_s": seconds, f"{name}_embed_s": embedder.seconds, f"{name}_other_s": seconds - embedder.seconds}


# --- the replica: a new process, timed to its first answer, then measuring retrieval and memory ---------------------
def run_replica(config: dict[str, Any]) -> dict[str, Any]:
    from rag.retrieval import HybridRetriever
    from rag.service import RagService

    settings = settings_for(config, config["replica_dir"])
    imported = time.time()
    service = RagService(settings)
    phases: dict[str, float] = {"imports_s": imported - config["launched_at"]}
    phases["model_s"], _ = timed(lambda: service.embedder.embed_query("warm up"))
    rss_model = process_rss_mb()
    phases["store_open_s"], store = timed(lambda: service.store)
    phases["lexical_s"], _ = timed(service.lexical)
    asked = questions(config["questions"])
    phases["first_retrieve_s"], _ = timed(lambda: service.retrieve("Quand DeepSeek a-t-il été lancé ?"))
    startup = time.time() - config["launched_at"]

    stages = ("retrieve", "dense", "sentence", "dense_any_language", "sentence_any_language", "lexical", "fused")
    timings: dict[str, list[float]] = {name: [] for name in stages}
    lexical = service.lexical()
    embedder = service.embedder
    retriever = HybridRetriever(store, lambda: lexical, embedder.embed_query)
    for question in asked:
        # The whole service call first, while the question is new (its embedding is part of it); the parts then
        # reuse the question's vector from the embedder's cache of recent questions.
        timings["retrieve"].append(timed(lambda q=question: service.retrieve(q, k=5))[0])
        vector = embedder.embed_query(question)
        language = detect_language(question)
        timings["dense"].append(timed(lambda v=vector, lang=language: store.search(v, 20, None, lang))[0])
        timings["sentence"].append(timed(lambda v=vector, lang=language: store.sentence_search(v, 60, None, lang))[0])
        # The same searches over every language (each language's collection searched, the hits merged).
        timings["dense_any_language"].append(timed(lambda v=vector: store.search(v, 20))[0])
        timings["sentence_any_language"].append(timed(lambda v=vector: store.sentence_search(v, 60))[0])
        timings["lexical"].append(timed(lambda q=question: lexical.search(q, 20))[0])
        timings["fused"].append(timed(lambda q=question, lang=language: retriever.retrieve(q, 5, language=lang))[0])
    result: dict[str, Any] = {"replica_startup_s": startup, **{f"startup_{k}": v for k, v in phases.items()}}
    for name, values in timings.items():
        result[f"{name}_p50_ms"] = statistics.median(values) * 1000
        result[f"{name}_p95_ms"] = percentile(values, 0.95) * 1000
    result["questions"] = len(asked)
    result["rss_mb"] = process_rss_mb()
    result["rss_model_mb"] = rss_model
    return result


# --- one point: the processes, the server, the folder ---------------------------------------------------------------
@contextmanager
def chroma_server(root: Path) -> Iterator[harness.ChildServer]:
    server = harness.start_chroma_server(root)
    try:
        yield server
    finally:
        server.stop(timeout=30)


def run_role(role: str, config: dict[str, Any]) -> dict[str, Any]:
    """This script in a new process as the indexer or the replica; returns the JSON it prints last."""
    command = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--config", json.dumps(config)]
    kept = {name: value for name, value in os.environ.items() if name.startswith("RAG_TEST_")}  # models, shared/
    env = harness.child_env(kept | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {role} process failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_point(store: str, vectors: int, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"rag-scale-{store}-{vectors}-"))
    config: dict[str, Any] = {
        "vectors": vectors,
        "seed": args.seed,
        "sample_chunks": args.sample_chunks,
        "questions": args.questions,
        "corpus_dir": str(root / "corpus"),
        "indexer_dir": str(root / "indexer"),
    }
    result: dict[str, Any] = {"store": store, "vectors": vectors, "load_before": os.getloadavg()[0]}
    try:
        with chroma_server(root) if store == "server" else _no_server() as server:
            if server:
                config["chroma_url"] = server.url
                config["replica_dir"] = str(root / "replica")  # a new replica: its own data dir, the same server
                result["chroma_server_rss_empty_mb"] = process_rss_mb(server.process.pid)
            else:
                config["replica_dir"] = config["indexer_dir"]  # an embedded store is read where it was written
            log(f"{store}, {vectors:,} vectors: indexer")
            result |= run_role("indexer", config)
            log(f"{store}, {vectors:,} vectors: replica")
            result |= run_role("replica", config | {"launched_at": time.time()})
            if server:
                result["chroma_server_rss_mb"] = process_rss_mb(server.process.pid)
        chroma_dir = root / "chroma" if store == "server" else Path(config["indexer_dir"]) / "chroma"
        result["disk_mb"] = disk_mb(chroma_dir)
        result["disk_kb_per_chunk"] = result["disk_mb"] * 1024 / result["chunks_at_end"]
        result["load_after"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


@contextmanager
def _no_server() -> Iterator[None]:
    yield None


def points_up_to(largest: int, smallest: int = 0) -> list[int]:
    """The standard points from `smallest` to `largest`, and `largest` itself when it is not one of them."""
    chosen = [p for p in POINTS if smallest <= p <= largest]
    return chosen if largest in chosen else [*chosen, largest]


def with_growth(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds the serving memory (the replica, and the server when there is one), the part of it the index holds
    (above the replica's model and the server's empty start) and how much that grows per 100,000 more vectors
    (the slope from the store's previous point: fixed costs cancel out)."""
    previous: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(results, key=lambda r: r["vectors"]):
        server_mb = row.get("chroma_server_rss_mb", 0.0)
        row["serving_rss_mb"] = round(row["rss_mb"] + server_mb, 1)
        index_mb = row["rss_mb"] - row["rss_model_mb"] + server_mb - row.get("chroma_server_rss_empty_mb", 0.0)
        row["rss_index_mb"] = round(index_mb, 1)
        before = previous.get((row["store"], row.get("lexical_design", "")))
        if before:
            grown = (row["vectors_stored"] - before["vectors_stored"]) / 100_000
            row["rss_mb_per_100k_vectors"] = round((index_mb - before["rss_index_mb"]) / grown, 1)
        previous[(row["store"], row.get("lexical_design", ""))] = row
    return results


# --- reporting: a markdown table and a log-log plot ------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    digits: int = 0
    plot_title: str = ""  # plotted when set


METRICS = (
    Metric("vectors_stored", "vectors stored (chunks + sentences)"),
    Metric("chunks", "chunks"),
    Metric("dense_p50_ms", "dense, chunks, the question's language: p50 / p95 ms", 1),
    Metric("sentence_p50_ms", "dense, sentences, the question's language: p50 / p95 ms", 1, "dense, sentences: p50 ms"),
    Metric("dense_any_language_p50_ms", "dense, chunks, every language: p50 / p95 ms", 1),
    Metric("sentence_any_language_p50_ms", "dense, sentences, every language: p50 / p95 ms", 1),
    Metric("lexical_p50_ms", "lexical (BM25): p50 / p95 ms", 1),
    Metric("fused_p50_ms", "fused (hybrid, question vector given): p50 / p95 ms", 1),
    Metric("retrieve_p50_ms", "whole `retrieve`: p50 / p95 ms", 1, "whole retrieve: p50 ms"),
    Metric("serving_rss_mb", "RSS of the serving process(es) MB", 0, "serving RSS: MB"),
    Metric("rss_index_mb", "of which the index (above the model / empty server) MB", 0),
    Metric("rss_mb_per_100k_vectors", "memory per 100k more vectors MB", 0),
    Metric("disk_kb_per_chunk", "disk per chunk (with its sentences) KB", 1),
    Metric("refresh_one_s", "refresh one changed document s (of which embedding)", 2),
    Metric("refresh_one_other_s", "the same without its embedding s", 2, "refresh one doc, no embedding: s"),
    Metric("lexical_rebuild_s", "lexical index: full rebuild s", 2, "lexical full rebuild: s"),
    Metric("lexical_update_s", "lexical index: catch-up after one changed document s", 3, "lexical catch-up, 1 doc: s"),
    Metric("add_1000_chunks_s", "add 1,000 chunks through the store s", 2, "add 1,000 chunks: s"),
    Metric("replica_startup_s", "replica start-up to its first answer s", 1, "replica start-up: s"),
    Metric("insert_vectors_per_s", "bulk insertion vectors/s", 0),
)
COLOURS = {"embedded": "#1f5fa8", "server": "#d0621b"}


def cell(row: dict[str, Any], metric: Metric) -> str:
    value = row.get(metric.key)
    if value is None:
        return "–"
    text = f"{value:,.{metric.digits}f}"
    if metric.key.endswith("_p50_ms"):
        text += f" / {row[metric.key.replace('_p50_', '_p95_')]:,.{metric.digits}f}"
    elif metric.key == "refresh_one_s":
        text += f" ({row['refresh_one_embed_s']:.2f})"
    elif metric.key == "serving_rss_mb" and "chroma_server_rss_mb" in row:
        text += f" ({row['rss_mb']:,.0f} + server {row['chroma_server_rss_mb']:,.0f})"
    return text


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One column per store and point (and per lexical design when the results hold both)."""
    designs = {r.get("lexical_design") for r in results}
    ordered = sorted(results, key=lambda r: (STORES.index(r["store"]), r.get("lexical_design", ""), r["vectors"]))

    def title(row: dict[str, Any]) -> str:
        return f"{row['store']} {_short(row['vectors'])}" + (f" ({row['lexical_design']})" if len(designs) > 1 else "")

    lines = ["| | " + " | ".join(map(title, ordered)) + " |", "|---|" + "---:|" * len(ordered)]
    lines += [f"| {m.label} | " + " | ".join(cell(r, m) for r in ordered) + " |" for m in METRICS]
    return "\n".join(lines)


def _short(vectors: int) -> str:
    return f"{vectors / 1_000_000:g}M" if vectors >= 1_000_000 else f"{vectors / 1000:g}k"


def svg_plot(results: list[dict[str, Any]]) -> str:
    """One small log-log panel per plotted metric, a line per store: a slope of 1 is linear growth, 0 none."""
    panels = [m for m in METRICS if m.plot_title]
    width, height, columns = 260, 210, 4
    rows = math.ceil(len(panels) / columns)
    legend = " ".join(f'<tspan fill="{colour}" font-weight="bold">{store}</tspan>' for store, colour in COLOURS.items())
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * columns}" height="{height * rows + 30}" '
        'font-family="DejaVu Sans, sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="{height * rows + 20}">x: stored vectors, y: the value, both on log scales; {legend} store'
        " (dashed: the lexical index rebuilt whole, as before the per-document update).</text>",
    ]
    for number, metric in enumerate(panels):
        parts += _panel(results, metric, (number % columns) * width, (number // columns) * height, width, height)
    parts.append("</svg>")
    return "\n".join(parts)


def _panel(results: list[dict[str, Any]], metric: Metric, left: int, top: int, width: int, height: int) -> list[str]:
    x0, x1, y0, y1 = left + 45, left + width - 15, top + height - 35, top + 25
    rows = [r for r in results if r.get(metric.key)]
    x_lo, x_hi = 4, max(6, math.ceil(max(math.log10(r["vectors"]) for r in rows)))
    y_lo = math.floor(min(math.log10(r[metric.key]) for r in rows))
    y_hi = max(math.ceil(max(math.log10(r[metric.key]) for r in rows)), y_lo + 1)

    def point(vectors: float, value: float) -> tuple[float, float]:
        x = x0 + (math.log10(vectors) - x_lo) / (x_hi - x_lo) * (x1 - x0)
        return x, y0 - (math.log10(value) - y_lo) / (y_hi - y_lo) * (y0 - y1)

    out = [f'<text x="{left + 10}" y="{top + 14}" font-weight="bold">{metric.plot_title}</text>']
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>')
    for exponent in range(x_lo, x_hi + 1):
        x, _ = point(10**exponent, 10**y_lo)
        out.append(f'<text x="{x:.0f}" y="{y0 + 14}" text-anchor="middle">{_short(10**exponent)}</text>')
    for exponent in range(y_lo, y_hi + 1):
        _, y = point(10**x_lo, 10**exponent)
        out.append(f'<line x1="{x0}" y1="{y:.0f}" x2="{x1}" y2="{y:.0f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 4}" y="{y + 4:.0f}" text-anchor="end">{10**exponent:g}</text>')
    lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in rows:
        lines.setdefault((row["store"], row.get("lexical_design", "update")), []).append(
            (row["vectors"], row[metric.key])
        )
    for (store, design), values in lines.items():
        coords = [point(v, y) for v, y in sorted(values)]
        dash = ' stroke-dasharray="5,3"' if design == "rebuild" else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[store]}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[store]}"/>' for x, y in coords]
    return out


# --- the command ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-vectors", type=int, default=POINTS[-1], help="run the points up to this many vectors")
    parser.add_argument("--min-vectors", type=int, default=0, help="skip the points below this many vectors")
    parser.add_argument("--stores", default=",".join(STORES), help="embedded, server or both (comma-separated)")
    parser.add_argument("--sample-chunks", type=int, default=64, help="chunks embedded by the real model")
    parser.add_argument("--questions", type=int, default=30, help="dev questions timed per point (at most 30)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--report", nargs="+", type=Path, help="saved --json outputs: print their table instead")
    parser.add_argument("--plot", type=Path, help="write the log-log plot (SVG) of the points here")
    parser.add_argument("--role", choices=("indexer", "replica"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        run = run_indexer if args.role == "indexer" else run_replica
        print(json.dumps(run(json.loads(args.config))))
        return
    if args.report:
        results = [p for path in args.report for p in json.loads(path.read_text())["points"]]
    else:
        results = []
        for store in args.stores.split(","):
            for vectors in points_up_to(args.max_vectors, args.min_vectors):
                results.append(run_point(store, vectors, args))
                log(json.dumps(results[-1]))
    results = with_growth(results)
    if args.plot:
        args.plot.write_text(svg_plot(results), encoding="utf-8")
    if args.json and not args.report:
        largest = max((r for r in results if r["store"] == results[0]["store"]), key=lambda r: r["vectors"])
        summary = {"date": datetime.now(UTC).date().isoformat(), "cores": os.cpu_count(), **largest}
        print(json.dumps(summary | {"points": results}, indent=2))
    else:
        print(markdown_table(results))


if __name__ == "__main__":
    main()
