"""`rag` command line: index, status, ask, eval, serve. Thin: every command calls the service layer."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rag.settings import Settings


def _progress_printer(enabled: bool):
    """A tqdm bar over files (with the chunk count) on stderr, so --json stdout stays clean."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="file", file=sys.stderr, dynamic_ncols=True, leave=False)

    def update(progress) -> None:
        bar.total = progress.files_total
        bar.n = progress.files_done
        bar.set_postfix_str(f"{progress.chunks_done} chunks · {progress.current}", refresh=False)
        bar.refresh()

    return update, bar.close


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    print(
        f"added {report['added']}, updated {report['updated']}, unchanged {report['unchanged']}, "
        f"deleted {report['deleted']} · {report['documents']} documents, {report['chunks']} chunks"
    )
    for skipped in report["skipped"]:
        print(f"skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    for noted in report.get("notes", []):
        print(f"note {noted['path']}: {noted['note']}", file=sys.stderr)


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from rag.errors import IndexBusyError, ReadOnlyError
    from rag.service import RagService

    service = RagService(settings)
    paths = [Path(p) for p in args.paths] or [settings.corpus_dir]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2

    def run_once(rebuild: bool = False) -> dict:
        update, close = _progress_printer(sys.stderr.isatty() and not args.json)
        try:
            return service.refresh(paths, rebuild=rebuild, on_progress=update).as_dict()
        finally:
            close()

    try:
        _print_report(run_once(args.rebuild), args.json)
    except IndexBusyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except ReadOnlyError as error:  # RAG_READ_ONLY: this node is a reader, and --watch never starts
        print(f"error: {error}", file=sys.stderr)
        return 5
    if args.watch:
        from index.watch import watch

        print(f"watching {', '.join(map(str, paths))} (Ctrl-C to stop)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            watch(paths, lambda: _print_report(run_once(), args.json), settle_seconds=args.settle)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from rag.service import RagService

    service = RagService(settings)
    status = service.status()
    if args.json:
        shown = status.model_dump() | {"documents_list": [vars(r) for r in service.documents()]}
        print(json.dumps(shown, ensure_ascii=False))
        return 0
    print(f"{status.documents} documents, {status.chunks} chunks (lexical {status.lexical_chunks})")
    print(f"embedding model {status.embedding_model} ({status.dimension} dims), store {status.store}")
    for record in service.documents():
        print(f"  {record.source:<70} {record.kind:<4} {record.chunks:>4} chunks  {record.indexed_at}")
    return 0


def _print_sources(answer) -> None:
    if answer.fallback_reason:
        print(f"\n(note: {answer.fallback_reason})", file=sys.stderr)
    if answer.refused or not answer.citations:
        return
    print("\nSources:")
    for citation in answer.citations:
        page = f", p. {citation.page}" if citation.page else ""
        print(f"  [{citation.n}] {citation.source}{page}: « {' '.join(citation.quote.split())} »")
    for sentence in answer.unsupported:
        why = sentence.reason or "no passage says it"
        print(f"  (unsupported, {why}: {sentence.text})")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from rag.service import RagService

    service = RagService(settings)
    options = {"k": args.k, "generator": args.generator}
    if args.json:
        print(service.ask(args.question, **options).model_dump_json(indent=2))
        return 0
    final = None
    for event in service.ask_stream(args.question, **options):
        if event.type == "token":
            print(event.text, end="", flush=True)
        elif event.type == "final":
            final = event.answer
    print()
    if final is not None:
        _print_sources(final)
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.evaluation import append_history, evaluate, format_history, load_items, select_split

    history_path = settings.data_dir / "eval_history.csv"
    if args.history:
        if args.file:
            print("error: give a question file or --history, not both", file=sys.stderr)
            return 2
        table = format_history(history_path)
        print(table if table else f"no evaluation history yet ({history_path} is written by each `rag eval` run)")
        return 0
    if not args.file:
        print("error: a question file (JSONL) is needed, or --history", file=sys.stderr)
        return 2

    from rag.schema import Answer
    from rag.service import RagService

    items = select_split(load_items(Path(args.file)), args.split)
    if not items:
        print(f"error: no items in the {args.split} split of {args.file}", file=sys.stderr)
        return 2
    service = RagService(settings)

    def progress(result: dict) -> None:
        if not args.json:
            mark = "refused" if result["refused"] else ("ok" if result.get("correct") else "-")
            print(f"{result['id']:<10} {mark:<8} {result['timings_ms']['total']:>8.0f} ms  {result['question'][:70]}")

    def ask(question: str, history: list[dict[str, str]]) -> Answer:
        return service.ask(question, history=history, k=args.k, generator=args.generator)

    report = evaluate(items, ask, progress)
    append_history(history_path, report, Path(args.file).name, args.split)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(json.dumps(report["metrics"], ensure_ascii=False, indent=2))
        print(f"(run appended to {history_path})", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The HTTP API (and the UI at / when it exists) in one uvicorn worker: the models load once."""
    import uvicorn

    from rag.api import create_app_from_settings

    if args.read_only:  # a reader: the service refuses writes, and so never reconciles at start-up (--no-index)
        settings = settings.model_copy(update={"read_only": True})
    app = create_app_from_settings(settings, with_ui=not args.no_ui, index_on_start=not args.no_index)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="info" if args.verbose else "warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Grounded, cited Q&A over your documents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="bring the index in line with the files")
    p.add_argument("paths", nargs="*", help="files or folders (default: RAG_CORPUS_DIR)")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything aside, swap in on success")
    p.add_argument("--watch", action="store_true", help="keep watching and refresh when files settle")
    p.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before a watched refresh")
    p.add_argument("--json", action="store_true", help="print one JSON object per refresh")
    p.set_defaults(func=cmd_index)

    generators = ["local", "extractive", "openai", "ollama"]
    p = sub.add_parser("ask", help="answer a question from the documents, with citations")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the whole answer structure")
    p.add_argument("--k", type=int, default=None, help="passages to retrieve (default RAG_K)")
    p.add_argument("--generator", choices=generators, default=None)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="measure retrieval, citations, answers and refusals on a JSONL set")
    p.add_argument("file", nargs="?", help="the question set (JSONL); not needed with --history")
    p.add_argument("--json", action="store_true", help='print {"metrics": ..., "items": [...]}')
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--generator", choices=generators, default=None)
    p.add_argument(
        "--split",
        choices=["even", "odd", "all"],
        default="all",
        help="only items whose id number is even or odd (ids without a number: all only)",
    )
    p.add_argument("--history", action="store_true", help="print the past runs (RAG_DATA_DIR/eval_history.csv)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="run the HTTP API (and the UI) with uvicorn")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--no-ui", action="store_true", help="serve the API only, without the UI at /")
    p.add_argument("--no-index", action="store_true", help="do not reconcile the corpus dir with the index at start-up")
    p.add_argument(
        "--read-only",
        action="store_true",
        help="a reader replica (RAG_READ_ONLY=true): refuse uploads, deletions and refreshes; implies --no-index",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("status", help="what is indexed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        settings = Settings()
    except Exception as error:  # pydantic's message names the bad RAG_* variable
        print(f"error: invalid settings: {error}", file=sys.stderr)
        return 2
    from rag.errors import IndexMismatchError

    try:
        return args.func(args, settings)
    except IndexMismatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
