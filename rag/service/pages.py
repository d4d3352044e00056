"""Citations shown on their page: where a quote stands on a PDF or image page (`CitationBox`es, added to every
citation the service returns), the page as an image, and the original file, for the UI's source card and the API."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from pathlib import Path

from index.pages import PAGED_KINDS, page_png, quote_boxes
from rag.errors import DocumentError
from rag.schema import Citation, CitationBox, DocumentRecord, StreamEvent
from rag.service.components import Components
from rag.settings import Settings


class Pages:
    def __init__(self, settings: Settings, components: Components):
        self.settings = settings
        self.components = components

    def with_boxes(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        """`events` with each citation to a PDF or an image given the boxes of its quote on the page, and the
        page where the quote stands."""
        records: dict[str, DocumentRecord] = {}
        for event in events:
            citations = event.answer.citations if event.answer else event.citations
            paged = [c for c in citations if c.page is not None and not c.boxes]
            if paged:
                unread = sorted({c.source for c in paged} - records.keys())
                records |= self.components.store.documents(unread)
                for citation in paged:
                    citation.boxes = self._boxes(citation, records.get(citation.source))
                    if citation.boxes:  # a passage's page is where it starts; the quote can be on the next
                        citation.page = citation.boxes[0].page
            yield event

    def _boxes(self, citation: Citation, record: DocumentRecord | None) -> list[CitationBox]:
        if record is None or record.kind not in PAGED_KINDS or citation.page is None:
            return []
        found = quote_boxes(
            record.path, record.kind, record.content_hash, citation.page, citation.quote, self.settings.ocr_dir
        )
        return [CitationBox(**vars(box)) for box in found]

    def page_image(self, source: str, page: int, dpi: int = 110) -> bytes:
        """Page `page` of a PDF or image document as PNG."""
        record = self._record(source)
        png = page_png(record.path, record.kind, record.content_hash, page, dpi)
        if png is None:
            raise DocumentError(
                f"{source} has no page {page} to show (only PDFs and images have pages; or the file changed "
                "since it was indexed).",
                404,
            )
        return png

    def document_file(self, source: str) -> tuple[Path, str]:
        """The indexed file itself and its media type."""
        path = Path(self._record(source).path)
        if not path.is_file():
            raise DocumentError(f"The file of {source} is gone; refresh the index.", 404)
        return path, mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    def _record(self, source: str) -> DocumentRecord:
        record = self.components.store.documents([source]).get(source)
        if record is None:
            raise DocumentError(f"No indexed document {source!r}.", 404)
        return record
