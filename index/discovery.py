"""Which files of a folder are documents: supported, not hidden, not linked from outside, not its README."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from index.loaders import SUPPORTED_SUFFIXES


@dataclass(frozen=True)
class SourceFile:
    root: Path
    path: Path

    @property
    def source(self) -> str:
        return self.path.relative_to(self.root).as_posix()


LINK_OUTSIDE = "symbolic link to outside the folder: not followed"


def discover(paths: Iterable[Path]) -> tuple[list[SourceFile], list[Path], list[dict[str, str]]]:
    """Supported files under each path (a folder is walked, hidden entries skipped), the roots scanned, and
    the entries passed over for a reason the user should see (as in `RefreshReport.skipped`).

    A file given directly has its parent folder as root; the roots bound which documents a refresh may
    delete, so `rag index one.pdf` never removes the rest of the corpus.

    Symbolic links met in a folder: one whose target lies outside that folder is not followed and is reported,
    so a link dropped into the corpus cannot pull other files (`/etc`, a home folder) into the index, and a
    link indexed before this rule leaves the index at the next folder refresh. A file link that stays inside
    is followed (indexed under the link's name); a directory link is never walked into (no loops; one that
    stays inside is walked anyway). A file given directly is the caller's explicit choice and is read as is.

    A folder's own README (at its top) describes the folder and is not walked into the index; one given
    directly (an upload) is indexed and then kept by folder refreshes: see `Refresher.run`.
    """
    files: list[SourceFile] = []
    roots: list[Path] = []
    skipped: list[dict[str, str]] = []
    for given in paths:
        path = given.resolve()
        if path.is_dir():
            roots.append(path)
            for found in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in found.relative_to(path).parts):
                    continue
                supported = found.suffix.lower() in SUPPORTED_SUFFIXES
                if links_outside(found, path):
                    if supported or found.is_dir():
                        skipped.append({"path": str(found), "reason": LINK_OUTSIDE})
                elif found.is_file() and supported and not is_folder_readme(found, path):
                    files.append(SourceFile(path, found))
        else:
            files.append(SourceFile(path.parent, path))
    return files, roots, skipped


def is_folder_readme(path: Path, root: Path) -> bool:
    """A README at the top of the folder: the folder's own description, not one of its documents."""
    return path.parent == root and path.stem.upper() == "README"


def links_outside(path: Path, root: Path) -> bool:
    return path.is_symlink() and not path.resolve().is_relative_to(root)
