"""Indexing speed: our pipeline beside a bare SentenceTransformer.encode of the same texts, in one run.

    .venv/bin/python bench/index.py [--json]
    .venv/bin/python bench/index.py --formats [--json]


Indexes corpus/ and ../shared/corpus/related/ into a fresh data dir (the e5 model folder is reused from
.rag-test/models or materialised), then:
- pipeline: `rag index` end to end (load, chunk, embed chunks and sentences, write Chroma and BM25);
- bare: `SentenceTransformer.encode` of exactly the texts the pipeline embedded (chunk texts with their
  heading context, and sentences), same batch size, same process;
- refresh: a second run over the unchanged corpus (target: under 1 s).
Overhead = pipeline time / bare encode time - 1 (target: at most 15%).

`--formats` measures extraction alone (load and chunk, no embedding), per format, on the files the tests build
(tests/office_samples.py, tests/samples.py) and on the corpus's PDFs: documents/s and characters/s; and OCR
pages/s on a scanned French PDF (Tesseract, one page at a time, no cache).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from index.discovery import discover  # noqa: E402
from rag.refresh import texts_to_embed  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402


def formats() -> dict[str, dict[str, float]]:
    """Extraction throughput per format: each sample file loaded and chunked until a second has passed."""
    sys.path.insert(0, str(REPO / "tests"))
    import office_samples as office
    from samples import scanned_pdf

    from index.chunking import chunk_document
    from index.loaders import load_document
    from index.ocr import OcrReader

    related = REPO.parent / "shared" / "corpus" / "related"
    samples = {
        ".docx": office.docx_bytes(),
        ".pptx": office.pptx_bytes(),
        ".xlsx": office.xlsx_bytes(rows=2000),
        ".csv": office.csv_bytes(),
        ".odt": office.odt_bytes(),
        ".odp": office.odp_bytes(),
        ".ods": office.ods_bytes(),
        ".epub": office.epub_bytes(),
        ".eml": office.eml_bytes(),
        ".pdf": (related / "deepseek_v2_tech_report_en.pdf").read_bytes(),
    }
    work = Path(tempfile.mkdtemp(prefix="rag-bench-formats-"))
    results: dict[str, dict[str, float]] = {}
    for suffix, data in samples.items():
        path = work / f"sample{suffix}"
        path.write_bytes(data)
        runs, chars, started = 0, 0, time.perf_counter()
        while runs == 0 or time.perf_counter() - started < 1.0:
            document = load_document(path, work)
            chunk_document(document)
            runs, chars = runs + 1, chars + len(document.text)
        elapsed = time.perf_counter() - started
        results[suffix] = {"docs_per_s": round(runs / elapsed, 1), "chars_per_s": round(chars / elapsed)}
    path = work / "scan.pdf"
    pages = [[f"Page {n} : la Commission européenne a présenté un plan d'investissement."] * 12 for n in range(3)]
    path.write_bytes(scanned_pdf(pages))
    started = time.perf_counter()
    load_document(path, work, ocr=OcrReader())
    results["ocr"] = {"pages_per_s": round(len(pages) / (time.perf_counter() - started), 2)}
    shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--formats", action="store_true", help="extraction speed per format and OCR pages/s")
    args = parser.parse_args()
    if args.formats:
        result = formats()
        print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>6}: {v}" for k, v in result.items()))
        return
    paths = [REPO / "corpus", REPO.parent / "shared" / "corpus" / "related"]
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    (work / "data").mkdir()
    models = REPO / ".rag-test" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (work / "data" / "models").symlink_to(models, target_is_directory=True)
    settings = Settings(_env_file=None, data_dir=work / "data", generator="extractive")
    service = RagService(settings)
    embedder = service.embedder
    embedder.embed_query("warm up")  # load the model outside the timings

    started = time.perf_counter()
    report = service.refresh(paths)
    pipeline_s = time.perf_counter() - started
    embedded = embedder.texts_embedded - 1

    # The same texts, straight through sentence-transformers (the pipeline embeds each document's chunks together).
    texts = [text for r in service.documents() for text in texts_to_embed(service.store.chunks([r.source]))]
    model = embedder.model
    started = time.perf_counter()
    model.encode(texts, prompt="passage: ", batch_size=settings.embedding_batch_size, normalize_embeddings=True)
    bare_s = time.perf_counter() - started

    started = time.perf_counter()
    again = service.refresh(paths)
    refresh_s = time.perf_counter() - started

    result = {
        "files": len(discover(paths)[0]),
        "chunks": report.chunks,
        "texts_embedded": embedded,
        "texts_bare": len(texts),
        "pipeline_s": round(pipeline_s, 1),
        "bare_encode_s": round(bare_s, 1),
        "pipeline_chunks_per_s": round(report.chunks / pipeline_s, 2),
        "bare_chunks_per_s": round(report.chunks / bare_s, 2),
        "overhead_pct": round((pipeline_s / bare_s - 1) * 100, 1),
        "unchanged_refresh_s": round(refresh_s, 3),
        "unchanged_refresh_report": again.as_dict(),
    }
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
