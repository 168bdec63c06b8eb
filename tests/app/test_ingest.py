"""Parsing uploads into sections and splitting them into chunks."""

import io
import itertools

import pytest
from fpdf import FPDF
from pypdf import PdfWriter

from app.ingest import parse as parse_module
from app.ingest.chunk import chunk_sections, count_tokens
from app.ingest.parse import ParseError, Section, UnsupportedType, media_type, parse


def pdf(*pages: str, title: str | None = None) -> bytes:
    document = FPDF()
    if title:
        document.set_title(title)
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    return bytes(document.output())


@pytest.mark.parametrize(
    ("declared", "filename", "expected"),
    [
        ("text/markdown; charset=utf-8", None, "text/markdown"),
        ("text/x-markdown", "a.txt", "text/markdown"),
        ("application/octet-stream", "Notes.MD", "text/markdown"),
        (None, "page.htm", "text/html"),
        ("", "report.pdf", "application/pdf"),
        ("text/plain", "a.pdf", "text/plain"),  # a declared supported type wins
    ],
)
def test_media_type_from_content_type_or_file_name(declared, filename, expected):
    assert media_type(declared, filename) == expected


@pytest.mark.parametrize(
    ("declared", "filename"), [("image/png", "a.png"), ("text/csv", "a.md"), (None, "a.docx")]
)
def test_unsupported_types_are_named(declared, filename):
    with pytest.raises(UnsupportedType, match=r"unsupported file type .*plain text, Markdown"):
        media_type(declared, filename)


def test_markdown_sections_follow_the_heading_path():
    text = (
        "Preface line.\n# Guide\nIntro.\n## Install\n```\n# a comment, not a heading\n```\n"
        "### Linux ###\nUse apt.\n## Usage\nRun it.\n"
    )
    parsed = parse(text.encode(), "text/markdown")
    assert parsed.title == "Guide"  # the first heading, not a heading path
    assert parsed.sections == [
        Section("", "Preface line."),
        Section("Guide", "Intro."),
        Section("Guide > Install", "```\n# a comment, not a heading\n```"),
        Section("Guide > Install > Linux", "Use apt."),
        Section("Guide > Usage", "Run it."),
    ]


def test_html_keeps_headings_and_drops_scripts_and_styles():
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<h1>Top</h1><p>Fish &amp; chips</p><script>alert(1)</script>"
        "<h2>Sub</h2><ul><li>one</li><li>two</li></ul></body></html>"
    )
    parsed = parse(html.encode(), "text/html")
    assert parsed.title == "T"  # the page's <title>
    sections = parsed.sections
    assert [s.heading for s in sections] == ["Top", "Top > Sub"]
    assert "Fish & chips" in sections[0].text
    assert sections[1].text.split() == ["one", "two"]
    assert "alert" not in str(sections) and "p{}" not in str(sections)


def test_pdf_pages_are_sections():
    parsed = parse(pdf("Alpha page text.", "Beta page text."), "application/pdf")
    assert [(s.heading, s.text.strip()) for s in parsed.sections] == [
        ("page 1", "Alpha page text."),
        ("page 2", "Beta page text."),
    ]
    assert parsed.title is None  # no metadata title: the caller falls back to the file name
    titled = parse(pdf("Text.", title="Annual Report 2026"), "application/pdf")
    assert titled.title == "Annual Report 2026"


def test_a_page_without_title_or_heading_gives_none():
    assert parse(b"<p>just text</p>", "text/html").title is None
    assert parse(b"just text", "text/markdown").title is None
    assert parse(b"# Looks like a heading", "text/plain").title is None


def test_a_pdf_is_read_within_its_page_and_time_bounds(monkeypatch):
    """A PDF crafted to be slow (many pages, pages slow to extract) is refused saying so."""
    monkeypatch.setattr(parse_module, "MAX_PDF_PAGES", 3)
    with pytest.raises(ParseError, match="the PDF has 4 pages, more than 3: split it"):
        parse(pdf("a", "b", "c", "d"), "application/pdf")
    monkeypatch.setattr(parse_module, "PDF_SECONDS", 0)
    with pytest.raises(ParseError, match="takes more than 0 s to read \\(page 1\\)"):
        parse(pdf("a", "b"), "application/pdf")


def test_bad_pdfs_are_parse_errors():
    with pytest.raises(ParseError, match="could not be read"):
        parse(b"%PDF-1.7 this is not really a PDF", "application/pdf")
    writer = PdfWriter(clone_from=io.BytesIO(pdf("secret")))
    writer.encrypt("password")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(ParseError, match="encrypted"):
        parse(locked.getvalue(), "application/pdf")
    with pytest.raises(ParseError, match="no text"):
        parse(pdf(""), "application/pdf")


def test_text_that_is_not_utf8_or_is_blank_is_refused():
    with pytest.raises(ParseError, match="not UTF-8"):
        parse("café".encode("latin-1"), "text/plain")
    with pytest.raises(ParseError, match="no text"):
        parse(b" \n\t\n", "text/markdown")


def test_chunks_stay_under_the_limit_and_overlap():
    text = " ".join(f"Sentence number {i} says something." for i in range(60))
    chunks = chunk_sections([Section("H", text)], max_tokens=30, overlap=12)
    assert len(chunks) > 5
    assert all(count_tokens(c.content) <= 30 and c.heading == "H" for c in chunks)
    for before, after in itertools.pairwise(chunks):
        # Sentences are 6 tokens: the next chunk starts with the last two (12 tokens).
        sentences = before.content.split(" Sentence")
        assert after.content.startswith("Sentence" + " Sentence".join(sentences[-2:]))
    # Every sentence is in some chunk, in order.
    joined = " ".join(c.content for c in chunks)
    assert all(f"number {i} says" in joined for i in range(60))


def test_a_sentence_longer_than_a_chunk_is_cut():
    words = " ".join(f"w{i}" for i in range(100))
    chunks = chunk_sections([Section("", words)], max_tokens=40, overlap=0)
    assert [count_tokens(c.content) for c in chunks] == [40, 40, 20]
    assert " ".join(c.content for c in chunks) == words
