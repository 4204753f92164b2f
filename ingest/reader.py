"""Finding files and reading them into sections of text, through llama-index readers.

A section is the unit the chunker starts from: a Markdown heading's body, a PDF page, or a whole
text/DOCX/HTML document. Every way a file can fail to read becomes a ``ReadError`` whose message
says why, so the run can report it and go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".pdf", ".docx", ".html", ".htm")
_TEXT_SUFFIXES = (".md", ".markdown", ".txt")

# pypdf logs every malformed object it meets; the reason reaches the user through ReadError instead.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class ReadError(Exception):
    """A file that cannot be ingested; the message is the reason, for the user."""


@dataclass
class Section:
    text: str
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)


@dataclass
class ReadDocument:
    path: Path
    title: str
    sections: list[Section]


@dataclass
class Discovery:
    """Files found under the given paths: (root, file) pairs to read, and what was skipped."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    skipped_hidden: int = 0
    skipped_unsupported: int = 0
    missing: list[str] = field(default_factory=list)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def discover(paths: list[Path]) -> Discovery:
    """Walk the given files and folders (recursively, in a stable order), skipping hidden and unsupported files."""
    found = Discovery()
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        if not given.exists():
            found.missing.append(str(given))
            continue
        if given.is_file():
            root, candidates = given.resolve().parent, [given.resolve()]
        else:
            root = given.resolve()
            candidates = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
        for path in candidates:
            if path in seen:
                continue
            seen.add(path)
            if path != root and _is_hidden(path, root):
                found.skipped_hidden += 1
            elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
                found.skipped_unsupported += 1
            else:
                found.files.append((root, path))
    return found


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise ReadError("binary content (NUL bytes), not a text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(f"not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    return text.replace("\r\n", "\n")


def _markdown_sections(text: str) -> tuple[str | None, list[Section]]:
    from llama_index.core import Document
    from llama_index.core.node_parser import MarkdownNodeParser

    title = None
    sections = []
    for node in MarkdownNodeParser().get_nodes_from_documents([Document(text=text)]):
        body = node.get_content().strip()
        if not body:
            continue
        path = [p for p in node.metadata.get("header_path", "/").split("/") if p]
        first = body.splitlines()[0]
        if first.startswith("#"):
            heading = first.lstrip("#").strip()
            if title is None and first.startswith("# "):
                title = heading
            path = path + [heading]
        sections.append(Section(text=body, heading_path=path))
    return title, sections


def _read_pdf(path: Path) -> list[Section]:
    from llama_index.readers.file import PDFReader
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        if PdfReader(str(path)).is_encrypted:
            raise ReadError("password-protected PDF")
        pages = PDFReader(return_full_document=False).load_data(path)
    except ReadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError) as exc:
        raise ReadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    sections = []
    for number, page in enumerate(pages, start=1):
        label = page.metadata.get("page_label")
        page_no = int(label) if str(label).isdigit() else number
        if page.text.strip():
            sections.append(Section(text=page.text.strip(), page=page_no))
    return sections


def _read_docx(path: Path) -> list[Section]:
    import zipfile

    from llama_index.readers.file import DocxReader

    try:
        docs = DocxReader().load_data(path)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ReadError(f"corrupt or unreadable DOCX ({type(exc).__name__}: {exc})") from None
    text = "\n".join(d.text for d in docs).strip()
    return [Section(text=text)] if text else []


def _read_html(path: Path) -> tuple[str | None, list[Section]]:
    from bs4 import BeautifulSoup
    from llama_index.readers.file import HTMLTagReader

    raw = _read_text(path)  # same encoding checks as plain text
    soup = BeautifulSoup(raw, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else None
    docs = HTMLTagReader(tag="body").load_data(path) if soup.body else []
    text = "\n".join(d.text for d in docs).strip() or soup.get_text("\n", strip=True)
    return title, [Section(text=text)] if text else []


def check_file_size(path: Path, max_bytes: int | None = None) -> int:
    """The file's size; ReadError when it cannot be opened, is empty, or is over ``max_bytes``."""
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise ReadError(f"cannot open: {exc.strerror}") from None
    if size == 0:
        raise ReadError("empty file")
    if max_bytes is not None and size > max_bytes:
        raise ReadError(f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit (ATTEST_MAX_FILE_MB)")
    return size


def read_file(path: Path, max_bytes: int | None = None) -> ReadDocument:
    """Read one supported file into sections; raises ReadError with the reason when it cannot."""
    path = Path(path)
    check_file_size(path, max_bytes)
    suffix = path.suffix.lower()
    title = None
    try:
        if suffix in (".md", ".markdown"):
            title, sections = _markdown_sections(_read_text(path))
        elif suffix == ".txt":
            text = _read_text(path).strip()
            sections = [Section(text=text)] if text else []
        elif suffix == ".pdf":
            sections = _read_pdf(path)
        elif suffix == ".docx":
            sections = _read_docx(path)
        elif suffix in (".html", ".htm"):
            title, sections = _read_html(path)
        else:
            raise ReadError(f"unsupported file type {suffix!r}")
    except PermissionError:
        raise ReadError("permission denied") from None
    if not sections:
        raise ReadError("no text could be extracted" + (" (a scanned PDF without a text layer?)" if suffix == ".pdf" else ""))
    return ReadDocument(path=path, title=title or path.stem.replace("-", " ").replace("_", " "), sections=sections)
