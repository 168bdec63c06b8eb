"""Files to text sections: plain text, Markdown, HTML and PDF (pypdf).

Every format becomes a list of `Section(heading, text)`, where `heading` is the path of
headings above the text ("Guide > Install > Linux"), or "page N" for a PDF.
"""

import io
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath

MEDIA_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
EXTENSIONS = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/html": ".html",
    "application/pdf": ".pdf",
}
ALIASES = {"text/x-markdown": "text/markdown", "application/xhtml+xml": "text/html"}
MAX_PDF_PAGES = 2000
PDF_SECONDS = 60


class UnsupportedType(ValueError):
    pass


class ParseError(ValueError):
    pass


@dataclass(frozen=True)
class Section:
    heading: str
    text: str


def media_type(declared: str | None, filename: str | None) -> str:
    """The supported media type of an upload, from its Content-Type or else its file name."""
    declared = (declared or "").split(";")[0].strip().lower()
    declared = ALIASES.get(declared, declared)
    if declared in EXTENSIONS:
        return declared
    suffix = PurePosixPath(filename or "").suffix.lower()
    if declared in ("", "application/octet-stream") and suffix in MEDIA_TYPES:
        return MEDIA_TYPES[suffix]
    raise UnsupportedType(
        f"unsupported file type {declared or suffix or 'unknown'}: upload plain text, Markdown, "
        "HTML or PDF"
    )


@dataclass(frozen=True)
class Parsed:
    """A file's sections, and the title it gives itself: a Markdown document's first heading,
    an HTML page's `<title>`, a PDF's metadata title (None: it gives none)."""

    title: str | None
    sections: list[Section]


def parse(data: bytes, content_type: str) -> Parsed:
    """A file of a type `media_type` returned, parsed; ParseError if it has no text."""
    title = None
    if content_type == "application/pdf":
        title, sections = _pdf_sections(data)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(f"the file is not UTF-8 text (byte {exc.start})") from None
        if "\x00" in text:
            raise ParseError(f"the file is not text: it holds a NUL byte (at {text.index(chr(0))})")
        if content_type == "text/plain":
            sections = [Section("", text)]
        else:
            if content_type == "text/html":
                title, text = html_to_markdown(text)
            first_heading, sections = markdown_sections(text)
            title = title or first_heading
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise ParseError("the document holds no text")
    return Parsed(title.strip() if title and title.strip() else None, sections)


_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_sections(text: str) -> tuple[str | None, list[Section]]:
    """The first heading, and the sections under each ATX heading (`#` to `######`); `#`
    inside code fences is text."""
    first = None
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fence = None

    def flush() -> None:
        if lines:
            sections.append(Section(" > ".join(title for _, title in path), "\n".join(lines)))
            lines.clear()

    for line in text.splitlines():
        marker = _FENCE.match(line)
        if marker and fence in (None, marker.group(1)):
            fence = None if fence else marker.group(1)
        heading = None if fence or marker else _ATX_HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, heading.group(2).strip()))
            first = first or heading.group(2).strip()
        else:
            lines.append(line)
    flush()
    return first, sections


class _HtmlText(HTMLParser):
    """HTML as Markdown-like text: headings as `#` lines, blocks on their own lines, no
    scripts, styles or head."""

    SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})
    BLOCKS = frozenset({"p", "div", "li", "tr", "br", "section", "article", "pre", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] = []  # the <title>'s text
        self.skipping = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        self.in_title = tag == "title" or self.in_title
        if tag in self.SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self.in_title = self.in_title and tag != "title"
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data) if data.strip() else " ")


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """The page's `<title>`, and its text as Markdown."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).splitlines())
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip() or None
    return title, re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _pdf_sections(data: bytes) -> tuple[str | None, list[Section]]:
    """The PDF's metadata title, and a section per page: at most MAX_PDF_PAGES pages, read
    within PDF_SECONDS (a crafted PDF can make a page's text slow to extract)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    end = time.monotonic() + PDF_SECONDS
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        if not encrypted and len(reader.pages) > MAX_PDF_PAGES:
            raise ParseError(
                f"the PDF has {len(reader.pages)} pages, more than {MAX_PDF_PAGES}: split it"
            )
        pages = []
        for page in [] if encrypted else reader.pages:
            # A PDF's text can hold NUL characters, which Postgres cannot store: dropped.
            pages.append((page.extract_text() or "").replace("\x00", ""))
            if time.monotonic() > end:
                raise ParseError(
                    f"the PDF's text takes more than {PDF_SECONDS} s to read (page "
                    f"{len(pages)}): split it, or upload its text"
                )
        title = None if encrypted or reader.metadata is None else reader.metadata.title
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"the PDF could not be read: {exc}") from None
    if encrypted:
        raise ParseError("the PDF is encrypted: upload it without a password")
    if not any(page.strip() for page in pages):
        raise ParseError("the PDF holds no text (a scanned PDF needs OCR first)")
    sections = [Section(f"page {n}", text) for n, text in enumerate(pages, 1)]
    return (str(title).replace("\x00", "") if title else None), sections
