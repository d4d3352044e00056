"""Checks that every loader's output must pass, shared by the loader tests of each format."""

from __future__ import annotations

from index.types import Document


def assert_block_contract(doc: Document) -> None:
    """`text[block.start:block.end]` is a trimmed, non-empty piece; blocks are ordered and disjoint; heading
    levels are 0..6."""
    previous_end = 0
    for block in doc.blocks:
        piece = doc.text[block.start : block.end]
        assert piece and piece == piece.strip(), block
        assert block.start >= previous_end, "blocks must be ordered and disjoint"
        assert 0 <= block.heading_level <= 6
        previous_end = block.end
