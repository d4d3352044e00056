"""Bring the index in line with the files: add new, replace changed, delete removed, skip bad.

Invariants, whatever happens mid-run (an exception, `kill -9`, a bad file):
- a document's new chunks are written before its stale chunks are deleted, and its record (content hash)
  is written last, so every indexed document stays answerable and an interrupted update is simply redone
  by the next run (chunk ids derive from source and text, so redoing it creates no duplicates);
- text whose chunk is already stored is never passed to the embedding model again;
- a file that cannot be read (or is over a bound) is reported and skipped, and its previous chunks (if any)
  are kept; only a symbolic link out of its folder also leaves the index (see `discover`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from filelock import FileLock

from index.chunking import chunk_document, chunk_sentences
from index.discovery import SourceFile, discover, is_folder_readme, links_outside
from index.loaders import load_document
from index.ocr import OcrReader
from index.types import Chunk, LoadError, size_limit_reason
from rag.language import detect_language
from rag.lexical import LexicalIndex, entries_of
from rag.schema import DocumentRecord, Progress, RefreshReport
from rag.store import ChunkVectors, VectorStore

# Bump when loaders, chunking or sentence spans change what they produce: documents are then re-chunked (and
# re-embedded) on the next refresh.
PIPELINE_VERSION = "6"
# What BM25 reads of a chunk (`Chunk.search_text`) and how `rag.lexical` analyses it: a new one makes every
# document of a persisted BM25 index stale, so each is read again from the store, without re-embedding anything.
LEXICAL_VERSION = "3"
_MIN_SENTENCE_CHARS = 25  # shorter fragments ("Table 3.") only add noise to sentence search


class PassageEmbedder(Protocol):
    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...


def index_lock(data_dir: Path) -> FileLock:
    data_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(data_dir / "index.lock", timeout=0)


def lexical_key(record: DocumentRecord) -> str:
    """What the lexical index read of a document (its content, chunked how and when, analysed how): a record
    whose key differs from the one the index holds means the index must read that document again."""
    return f"{LEXICAL_VERSION}\x00{record.content_hash}\x00{record.pipeline}\x00{record.indexed_at}"


def catch_up_lexical(lexical: LexicalIndex, store: VectorStore, sources: Collection[str] | None = None) -> int:
    """Bring `lexical` in line with `store` document by document: documents gone are removed, new or changed
    ones read again from the store; the cost is that of what changed plus listing the document records, or,
    given `sources` (the documents this process just changed), reading those records only.
    Safe against a concurrent refresh: a record is written after its chunks, so a key seen here has its chunks
    in place, and chunks newer than the key are read again at the next catch-up. Returns documents changed."""
    wanted = {source: lexical_key(record) for source, record in store.documents(sources).items()}
    held = lexical.keys()
    if sources is not None:
        held = {source: key for source, key in held.items() if source in sources}
    for source in held.keys() - wanted.keys():
        lexical.remove(source)
    changed = sorted(source for source, key in wanted.items() if held.get(source) != key)
    if changed:
        chunks: dict[str, list[Chunk]] = {source: [] for source in changed}
        everything = sources is None and len(changed) == len(wanted)
        for chunk in store.chunks(None if everything else changed):
            if chunk.source in chunks:
                chunks[chunk.source].append(chunk)
        for source in changed:
            lexical.put(source, wanted[source], entries_of(chunks[source]))
    changed_documents = len(changed) + len(held.keys() - wanted.keys())
    if lexical.checkpoint_due(changed_documents):
        lexical.checkpoint()
    return changed_documents


def build_lexical(store: VectorStore, directory: Path | None = None) -> LexicalIndex:
    """A lexical index of everything `store` holds (persisted in `directory` when given)."""
    lexical = LexicalIndex(directory)
    catch_up_lexical(lexical, store)
    return lexical


class Refresher:
    """One refresh run over a store; the embedder is called only for text the store does not hold."""

    def __init__(
        self,
        store: VectorStore,
        embedder: PassageEmbedder,
        *,
        chunk_size: int,
        chunk_overlap: int,
        table_row_chunks: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        after_write: Callable[[str], None] | None = None,
        write_guard: Callable[[], AbstractContextManager] = nullcontext,
        max_file_bytes: int | None = None,
        ocr_cache: Path | None = None,
    ):
        self.store = store
        self.embedder = embedder
        self.pipeline = f"{PIPELINE_VERSION}:{chunk_size}:{chunk_overlap}" + (":rows" if table_row_chunks else "")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.table_row_chunks = table_row_chunks
        self.on_progress = on_progress
        # Test hook: called between writing a document's new chunks and deleting its stale ones.
        self.after_write = after_write
        # Held around each document's switch from old to new chunks, so readers never see it half done.
        self.write_guard = write_guard
        # Files bigger than this are skipped unread (None: no limit).
        self.max_file_bytes = max_file_bytes
        # Scanned pages and images: read in this run's thread (never the answering one), one page at a time,
        # each page reported as progress; the document's language picks Tesseract's language pack.
        self.ocr = OcrReader(ocr_cache, detect=detect_language, on_page=self._ocr_progress)
        self._position = Progress(0, 0, 0, "")
        self.changed_sources: set[str] = set()  # documents this run wrote or deleted

    def run(self, paths: Sequence[Path], *, prune: bool = True) -> RefreshReport:
        """Refresh the files under `paths`; with `prune`, indexed documents of a scanned folder that discovery
        no longer finds are deleted.

        A folder README that is already indexed (it can only get there by being given directly, as an upload
        is) is refreshed with its folder like any document rather than pruned: a README uploaded on purpose
        stays until its file is deleted, while the corpus's own description is never indexed by a folder run.
        """
        files, roots, skipped = discover(paths)
        report = RefreshReport(skipped=skipped)
        # Files given one by one (an upload) need only their own records; a folder needs all (to prune).
        records = self.store.documents(None if roots else [f.source for f in files])
        files += _indexed_readmes(records, files, roots)
        seen: set[str] = set()
        chunks_done = 0
        for number, file in enumerate(files, start=1):
            source = file.source
            if source in seen:
                report.skipped.append(
                    {"path": str(file.path), "reason": f"another file is already indexed as {source}"}
                )
                continue
            seen.add(source)
            self._position = Progress(number - 1, len(files), chunks_done, source)
            outcome = self._refresh_file(file, records.get(source), report)
            if outcome is not None:
                records[source] = outcome
                chunks_done += outcome.chunks
                self.changed_sources.add(source)
            if self.on_progress:
                self.on_progress(Progress(number, len(files), chunks_done, source))
        if prune:
            scanned = {str(root) for root in roots}  # files given one by one prune nothing
            for source, record in list(records.items()):
                if source not in seen and record.root in scanned:
                    self.store.delete(self.store.ids_for_source(source))
                    self.store.delete_document(source)
                    del records[source]
                    report.deleted += 1
                    self.changed_sources.add(source)
        report.documents = len(records) if roots else self.store.document_count()
        report.chunks = self.store.count()
        return report

    def _refresh_file(self, file: SourceFile, known: DocumentRecord | None, report: RefreshReport):
        """Index one file; returns its new record, or None when it was skipped."""
        try:
            stat = file.path.stat()
            if self.max_file_bytes is not None and stat.st_size > self.max_file_bytes:
                raise LoadError(size_limit_reason(stat.st_size, self.max_file_bytes))
            current = known is not None and known.pipeline == self.pipeline
            if current and (known.size, known.mtime_ns, known.root) == (stat.st_size, stat.st_mtime_ns, str(file.root)):
                report.unchanged += 1
                return None
            data = file.path.read_bytes()
            content_hash = hashlib.sha256(data).hexdigest()
            if current and known.content_hash == content_hash:
                # Touched but not changed: remember the new stat so the next run skips it without reading.
                record = _record(file, known.kind, known.title, content_hash, stat, known.chunks, self.pipeline)
                self.store.put_document(record)
                report.unchanged += 1
                return record
            document = load_document(file.path, file.root, ocr=self.ocr)
        except LoadError as error:
            report.skipped.append({"path": str(file.path), "reason": error.reason})
            return None
        except OSError as error:
            report.skipped.append({"path": str(file.path), "reason": f"cannot read: {error.strerror or error}"})
            return None
        chunks = [
            replace(chunk, language=detect_language(chunk.text))
            for chunk in chunk_document(
                document, self.chunk_size, self.chunk_overlap, table_row_chunks=self.table_row_chunks
            )
        ]
        if not chunks:
            report.skipped.append({"path": str(file.path), "reason": "no text to index"})
            return None
        record = _record(file, document.kind, document.title, content_hash, stat, len(chunks), self.pipeline)
        self._write(record, chunks)
        report.notes.extend({"path": str(file.path), "note": note} for note in document.notes)
        if known:
            report.updated += 1
        else:
            report.added += 1
        return record

    def _ocr_progress(self, page: int, pages: int) -> None:
        if self.on_progress:
            self.on_progress(replace(self._position, current=f"{self._position.current} (OCR {page}/{pages})"))

    def _write(self, record: DocumentRecord, chunks: list[Chunk]) -> None:
        """New chunks first (re-using stored vectors), then stale ones out, then the record."""
        source = record.source
        stale = self.store.ids_for_source(source)
        stored = self.store.embeddings_for([c.id for c in chunks if c.id in stale])
        # A chunk stored without sentence vectors (an index from before they existed) is embedded again.
        missing = [c for c in chunks if c.id not in stored or not stored[c.id].sentences]
        if missing:
            stored.update(embed_chunks(self.embedder, missing))
        with self.write_guard():
            self.store.upsert(chunks, [stored[c.id] for c in chunks])
            if self.after_write:
                self.after_write(source)
            self.store.delete(stale - {c.id for c in chunks})
            self.store.put_document(record)


def _indexed_readmes(
    records: dict[str, DocumentRecord], files: list[SourceFile], roots: list[Path]
) -> list[SourceFile]:
    """The scanned folders' READMEs that the index already holds and that are still there to read."""
    scanned = {str(root) for root in roots}
    listed = {(str(f.root), f.source) for f in files}
    found = []
    for source, record in records.items():
        path, root = Path(record.path), Path(record.root)
        if (
            record.root in scanned
            and (record.root, source) not in listed
            and is_folder_readme(path, root)
            and path.is_file()
            and not links_outside(path, root)
        ):
            found.append(SourceFile(root, path))
    return found


def sentence_spans(chunk: Chunk) -> list[tuple[int, int]]:
    """The sentences of a chunk's text that get a vector of their own."""
    return [(s, e) for s, e in chunk_sentences(chunk.text, chunk.heading_path) if e - s >= _MIN_SENTENCE_CHARS]


def texts_to_embed(chunks: Sequence[Chunk]) -> list[str]:
    """What a document's chunks send to the model: each chunk's embedding text and its sentences, each distinct
    text once (the same text has the same vector). The sentences in the overlap of two neighbouring chunks are in
    both: 7% of the texts of the corpus and its related documents, though only 2% of their characters."""
    texts = [c.embedding_text for c in chunks]
    texts += [c.text[s:e] for c in chunks for s, e in sentence_spans(c)]
    return list(dict.fromkeys(texts))


def embed_chunks(embedder: PassageEmbedder, chunks: Sequence[Chunk]) -> dict[str, ChunkVectors]:
    """Vectors for each chunk and each of its sentences, in one call to the model."""
    unique = texts_to_embed(chunks)
    vectors = dict(zip(unique, embedder.embed_documents(unique), strict=True))
    return {
        chunk.id: ChunkVectors(
            vectors[chunk.embedding_text], [(s, e, vectors[chunk.text[s:e]]) for s, e in sentence_spans(chunk)]
        )
        for chunk in chunks
    }


def _record(
    file: SourceFile, kind: str, title: str, content_hash: str, stat: os.stat_result, chunks: int, pipeline: str
) -> DocumentRecord:
    return DocumentRecord(
        source=file.source,
        root=str(file.root),
        path=str(file.path),
        content_hash=content_hash,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        kind=kind,
        title=title,
        chunks=chunks,
        indexed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pipeline=pipeline,
    )
