"""Your own documents: real PDF, DOCX and PPTX files indexed with their pages, cited as
``file.pdf p. N``; PDFs without a text layer and corrupt files reported; incremental re-builds."""

from __future__ import annotations

import asyncio
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

from core.config import DEFAULT_CONFIG_PATH, load_config
from core.rules import PAGE_BREAK
from graphs.context import JobContext, Providers
from graphs.research.action import ResearchInput, research
from graphs.research.citations import check_citations, cited_pages, sources_section
from graphs.research.passages import split_passages
from providers.base import LLMConfig, Message
from providers.search import index_store
from providers.search.chain import SearchChain
from providers.search.index_store import build_index, describe
from providers.search.local_index import LocalIndexSearch
from providers.testing import FunctionLLM
from swarm import cli
from swarm.index_cli import ProgressReport

MANUAL_PAGES = [
    ["Operations manual", "This manual covers the deployment of the ingest service."],
    ["Failure handling", "The circuit breaker opens after five consecutive failures.",
     "It stays open for thirty seconds before a probe request is let through."],
    ["Storage", "Snapshots are written to the object store every night at two o'clock."],
]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]]) -> bytes:
    """A real PDF: one Helvetica text object per page (an empty page has no text layer)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        ops = ["BT /F1 12 Tf 16 TL 72 720 Td", *(f"({_escape(line)}) Tj T*" for line in lines), "ET"] if lines else []
        stream = "\n".join(ops).encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            f" /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return pdf_file(objects)


def pdf_file(objects: list[bytes]) -> bytes:
    """``objects`` (numbered from 1, the catalog first) as a PDF file, with its offset table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def blank_pdf(pages: int = 2) -> bytes:
    """What a scanner without OCR gives: pages and no text (written by pypdf itself)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Deployment guide", 0)
    document.add_heading("Rollback", 1)
    document.add_paragraph("A rollback restores the previous release within ten minutes.")
    table = document.add_table(rows=2, cols=2)
    for row, (key, value) in zip(table.rows, [("Region", "Replicas"), ("eu-west", "three")], strict=True):
        row.cells[0].text, row.cells[1].text = key, value
    document.save(str(path))


def make_pptx(path: Path) -> None:
    import pptx
    import pptx.util

    deck = pptx.Presentation()
    slides = [
        ("Quarterly review", "Revenue grew in every region."),
        ("Hiring", "The platform team hires two engineers."),
        ("Roadmap", "The search backend gains OCR support next quarter."),
    ]
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text_frame.text = body
    deck.slides[2].notes_slide.notes_text_frame.text = "Mention the pilot customers."
    group = deck.slides[1].shapes.add_group_shape()
    box = group.shapes.add_textbox(pptx.util.Inches(1), pptx.util.Inches(6), pptx.util.Inches(4), pptx.util.Inches(1))
    box.text_frame.text = "Budget approved in March."
    deck.save(str(path))


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "manual.pdf").write_bytes(make_pdf(MANUAL_PAGES))
    make_docx(root / "guide.docx")
    make_pptx(root / "review.pptx")
    (root / "notes.md").write_text("# Notes\n\nThe ingest service is written in Go.\n", encoding="utf-8")
    return root


def test_pdf_docx_and_pptx_are_indexed_with_their_pages(documents, tmp_path):
    stats = build_index([documents], tmp_path / "idx.sqlite")
    assert (stats.added, stats.total, stats.problems) == (4, 4, [])
    info = describe(tmp_path / "idx.sqlite")
    assert info["by_kind"]["pdf"] == {"documents": 1, "pages": 3}
    assert info["by_kind"]["pptx"] == {"documents": 1, "pages": 3}
    assert info["by_kind"]["docx"] == {"documents": 1, "pages": 0}


async def test_search_names_the_best_page_and_reading_keeps_every_page(documents, tmp_path):
    backend = LocalIndexSearch([documents], tmp_path / "idx.sqlite")
    hits = await backend.search("circuit breaker failures")
    manual = (documents / "manual.pdf").resolve().as_uri()
    assert hits[0].url == manual + "#page=2" and "circuit breaker opens" in hits[0].snippet
    assert hits[0].title == "Operations manual"
    slide = (await backend.search("OCR support roadmap"))[0]
    assert slide.url == (documents / "review.pptx").resolve().as_uri() + "#page=3"
    guide = (await backend.search("rollback previous release"))[0]
    assert guide.url == (documents / "guide.docx").resolve().as_uri() and guide.title == "Deployment guide"

    title, text = await backend.read_document(hits[0].url)
    pages = text.split(PAGE_BREAK)
    assert title == "Operations manual" and len(pages) == 3
    assert "thirty seconds" in pages[1] and "Snapshots" in pages[2]
    passages = split_passages(text)
    [breaker] = [p for p in passages if "circuit breaker" in p["text"]]
    assert breaker["page"] == 2 and breaker["heading"] == "Failure handling"  # a PDF heading line is a heading
    assert breaker["text"].startswith("The circuit breaker opens")
    _, deck = await backend.read_document(slide.url)
    by_slide = {p["page"]: p for p in split_passages(deck)}
    assert by_slide[3]["heading"] == "Roadmap" and "pilot customers" in by_slide[3]["text"]
    assert by_slide[2]["text"] == "The platform team hires two engineers.\n\nBudget approved in March."
    _, guide_text = await backend.read_document(guide.url)
    assert "# Rollback" in guide_text and "eu-west | three" in guide_text
    # a DOCX table is a Markdown one (its rows ran into one "sentence": "Region | Replicas eu-west | three"),
    # and the research quotes each row naming its cells by their columns
    assert "| Region | Replicas |\n| --- | --- |\n| eu-west | three |" in guide_text
    from graphs.research.quoting import flatten

    assert "Region: eu-west; Replicas: three." in flatten(guide_text)
    assert {p["page"] for p in split_passages(guide_text)} == {None}


def _brain(queries: list[str]) -> Any:
    def answer(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            return {"queries": queries}
        raise AssertionError(f"an extractive report calls no writer ({config.step})")

    return answer


async def test_a_one_page_pdf_and_a_one_slide_deck_are_cited_with_their_page(tmp_path):
    """A one-slide PPTX was cited as "[1] [Quuxel speed](<...quuxel.pptx#page=1>)", without
    "— quuxel.pptx p. 1" and with passage.page null: one page had no break to count."""
    import pptx

    root = tmp_path / "one"
    root.mkdir()
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Quuxel speed"
    slide.placeholders[1].text_frame.text = "The quuxel turbine spins at 9,000 rpm."
    deck.save(str(root / "quuxel.pptx"))
    (root / "single.pdf").write_bytes(make_pdf([["Plorf valves close in two seconds."]]))
    backend = LocalIndexSearch([root], tmp_path / "idx.sqlite")
    for query, name in (("quuxel turbine", "quuxel.pptx"), ("plorf valves", "single.pdf")):
        [hit] = await backend.search(query)
        assert hit.url == (root / name).resolve().as_uri() + "#page=1"
        _, text = await backend.read_document(hit.url)
        assert PAGE_BREAK not in text  # read as it is: no form feed in the text a resource shows
        passages = split_passages(text, paged="#page=" in hit.url)
        assert passages and {p["page"] for p in passages} == {1}, passages
    from test_research_graph import Script, _context

    ctx, _ = _context(tmp_path, FunctionLLM(Script(plan="no JSON")), SearchChain([("local", backend)]))
    result = await research(ResearchInput(question="How fast does the quuxel turbine spin?", mode="extractive"), ctx)
    assert result["citations"] and all(c["passage"]["page"] == 1 for c in result["citations"]), result["citations"]
    assert "— quuxel.pptx p. 1" in result["report"], result["report"]


async def test_research_over_a_pdf_cites_file_and_page(documents, tmp_path):
    config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home")})
    chain = SearchChain([("local", LocalIndexSearch([documents], tmp_path / "idx.sqlite"))])
    brain = _brain(["circuit breaker failures", "circuit breaker open seconds"])
    providers = Providers(config=config, factories={"llm": lambda: FunctionLLM(brain), "search": lambda: chain})
    ctx = JobContext(job_id="pdf-1", config=config, providers=providers)
    result = await research(ResearchInput(question="When does the circuit breaker open?", depth="quick", mode="extractive"), ctx)

    manual = next(s for s in result["sources"] if s["url"].startswith((documents / "manual.pdf").resolve().as_uri()))
    cited = [c for c in result["citations"] if manual["id"] in c["source_ids"]]
    assert cited and all(c["passage"]["page"] == 2 for c in cited)
    sources = result["report"].split("## Sources", 1)[1]
    assert re.search(rf"^- \[{manual['id']}\] \[Operations manual\]\(<file://[^>]*manual\.pdf#page=2>\) — manual\.pdf p\. 2$",
                     sources, re.MULTILINE), sources


def test_sources_list_names_the_cited_pages():
    sources = [{"id": 1, "url": "file:///data/my%20docs/manual.pdf#page=9", "title": "Manual"},
               {"id": 2, "url": "https://example.org/a", "title": "Web"}]
    evidence = [{"source_id": 1, "page": 12}, {"source_id": 1, "page": 3}, {"source_id": 1, "page": 4},
                {"source_id": 2, "page": None}]
    assert cited_pages(evidence) == {1: [3, 4, 12]}
    section = sources_section(sources, [1, 2], cited_pages(evidence))
    assert "- [1] [Manual](<file:///data/my%20docs/manual.pdf#page=3>) — manual.pdf pp. 3-4, 12\n" in section
    assert section.endswith("[2] [Web](<https://example.org/a>)\n")
    report = check_citations("The breaker opens after five failures [1].", sources, pages={1: [2]}).report
    assert report.endswith("— manual.pdf p. 2\n")


def test_passages_never_span_a_page_and_a_title_holds_on_its_own_slide():
    text = PAGE_BREAK.join(["# Intro\n\nShort one.", "Short two.", "# Last\n\nShort three."])
    passages = split_passages(text)
    assert [(p["page"], p["heading"], p["text"]) for p in passages] == [
        (1, "Intro", "Short one."), (2, None, "Short two."), (3, "Last", "Short three.")]
    assert all(text[p["start"]:p["end"]] == p["text"] for p in passages)


def test_pdf_without_text_layer_is_reported_not_skipped(documents, tmp_path):
    (documents / "scan.pdf").write_bytes(blank_pdf(3))
    index = tmp_path / "idx.sqlite"
    stats = build_index([documents], index)
    assert (stats.added, stats.no_text, stats.total) == (4, 1, 4)
    [problem] = stats.problems
    assert problem["path"] == str((documents / "scan.pdf").resolve()) and problem["kind"] == "no_text"
    assert "no text layer on any of its 3 page(s)" in problem["reason"] and "OCR" in problem["reason"]
    again = build_index([documents], index)  # remembered, still reported, not read again
    assert (again.no_text, again.unchanged, again.problems[0]["new"]) == (1, 4, False)
    info = describe(index)
    assert info["no_text"] == 1 and info["problems"][0]["reason"] == problem["reason"]


def test_a_pdf_with_some_scanned_pages_is_indexed_and_says_which(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "mixed.pdf").write_bytes(make_pdf([["Text on the first page."], [], [], ["Text on page four."]]))
    stats = build_index([root], tmp_path / "idx.sqlite")
    assert stats.added == 1 and stats.problems == [
        {"path": str((root / "mixed.pdf").resolve()), "kind": "partial", "reason": "2 of 4 pages have no text (2-3)", "new": True}]


async def test_corrupt_files_are_reported_by_name_and_the_build_goes_on(documents, tmp_path):
    (documents / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    (documents / "broken.docx").write_bytes(b"PK\x03\x04 truncated zip")
    (documents / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0 legacy")
    from pypdf import PdfWriter

    locked = PdfWriter()
    locked.add_blank_page(width=612, height=792)
    locked.encrypt("secret")
    locked.write(str(documents / "locked.pdf"))
    stats = build_index([documents], tmp_path / "idx.sqlite")
    reasons = {Path(p["path"]).name: p["reason"] for p in stats.problems}
    assert stats.added == 4 and stats.skipped == 4
    assert set(reasons) == {"broken.pdf", "broken.docx", "old.doc", "locked.pdf"}
    assert "encrypted with a password" in reasons["locked.pdf"]
    assert reasons["broken.pdf"].startswith("not a readable PDF (")
    assert reasons["broken.docx"].startswith("not a readable DOCX (")
    assert "save it as .docx" in reasons["old.doc"]
    backend = LocalIndexSearch([documents], tmp_path / "idx.sqlite")
    assert (await backend.search("circuit breaker"))[0].title == "Operations manual"


def test_incremental_rebuild_reads_only_the_changed_file(documents, tmp_path, monkeypatch):
    index = tmp_path / "idx.sqlite"
    build_index([documents], index)
    read: list[str] = []
    real_extract = index_store.extract

    def spy(path: Path, raw: bytes) -> Any:
        read.append(path.name)
        return real_extract(path, raw)

    monkeypatch.setattr(index_store, "extract", spy)
    assert build_index([documents], index).unchanged == 4 and read == []
    (documents / "manual.pdf").write_bytes(make_pdf([*MANUAL_PAGES, ["Appendix", "Contact the on-call engineer."]]))
    os.utime(documents / "manual.pdf", ns=(1, 1))
    (documents / "review.pptx").unlink()
    stats = build_index([documents], index)
    assert read == ["manual.pdf"]
    assert (stats.updated, stats.removed, stats.unchanged, stats.total) == (1, 1, 2, 3)
    assert describe(index)["by_kind"]["pdf"]["pages"] == 4


def test_cli_build_prints_progress_lines_and_names_problems(documents, capsys):
    (documents / "scan.pdf").write_bytes(blank_pdf(1))
    assert cli.main(["index", "build", str(documents)]) == 0
    out, err = capsys.readouterr()
    assert "indexed 5/5 files (100%)" in err and "\r" not in err
    assert "4 documents (4 added" in out and "1 PDF(s) with no text layer" in out
    assert f"{(documents / 'scan.pdf').resolve()}: no text layer" in out
    assert cli.main(["index", "stats"]) == 0
    out, _ = capsys.readouterr()
    assert "pdf: 1 (3 pages)" in out and "pptx: 1 (3 pages)" in out and "scan.pdf: no text layer" in out


def test_progress_on_a_terminal_is_one_redrawn_bar():
    stream = io.StringIO()
    report = ProgressReport(stream, tty=True)
    for done in range(1, 4):
        report(done, 3, f"/docs/file{done}.pdf")
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 2  # one line, redrawn with \r, ended once
    assert lines[0].startswith("\r[") and "] 3/3 /docs/file3.pdf" in lines[0]
    assert "[" + "#" * 24 + "]" in lines[0]


def test_parsers_are_not_imported_by_the_doors():
    import subprocess
    import sys

    code = "import sys, mcp_server.server, swarm.cli; print([m for m in ('pypdf', 'docx', 'pptx', 'lxml') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_text_in_any_common_encoding_is_indexed_and_a_binary_empty_or_misnamed_file_is_named(tmp_path, capsys):
    """A reviewer's folder: Notepad's "Unicode" (UTF-16) and a Windows-1252 file were stored as
    garbage ("wombat" and "café" found nothing), random bytes and an empty file counted as added
    documents, and a file whose name is not UTF-8 crashed the build and lost it whole."""
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "utf16.txt").write_bytes("Hello world wombat\r\n".encode("utf-16"))
    (root / "bare16.txt").write_bytes("Numbat notes without a mark\n".encode("utf-16-le"))
    (root / "latin1.txt").write_bytes("caf\xe9 r\xe9sum\xe9 aardvark\n".encode("cp1252"))
    (root / "nul.md").write_bytes(b"# Kangaroo\n\nA stray\x00 NUL in a kangaroo note.\n")
    (root / "random.txt").write_bytes(bytes(range(256)) * 8)
    (root / "empty.md").write_bytes(b"")
    (root / os.fsdecode(b"r\xe9sum\xe9.md")).write_bytes(b"# Named in Latin-1\n")
    (root / "good.md").write_text("# Good\n\nZebras are striped.\n", encoding="utf-8")
    assert cli.main(["index", "build", str(root)]) == 0
    out, _ = capsys.readouterr()
    assert "5 documents (5 added" in out, out
    assert "random.txt: it is not text" in out and "empty.md: the file holds no text" in out
    assert "r\ufffdsum\ufffd.md: its name is not valid UTF-8: rename it to index it" in out
    backend = LocalIndexSearch([str(root)], str(tmp_path / "swarm-home" / "index.sqlite"))
    for word, name in (("wombat", "utf16.txt"), ("numbat", "bare16.txt"), ("café", "latin1.txt"),
                       ("aardvark", "latin1.txt"), ("kangaroo", "nul.md"), ("zebras", "good.md")):
        hits = asyncio.run(backend.search(word))
        assert [h.url.rsplit("/", 1)[-1] for h in hits] == [name], (word, hits)
    title, body = asyncio.run(backend.read_document((root / "nul.md").as_uri()))
    assert "\x00" not in body and title == "Kangaroo"
    # the index says it as the build did, after a second build too, until the file is gone
    for _ in range(2):
        assert cli.main(["index", "stats"]) == 0
        out, _ = capsys.readouterr()
        assert "r\ufffdsum\ufffd.md: its name is not valid UTF-8: rename it to index it" in out, out
        assert cli.main(["index", "build", str(root)]) == 0
        capsys.readouterr()
    (root / os.fsdecode(b"r\xe9sum\xe9.md")).unlink()
    assert cli.main(["index", "build", str(root)]) == 0 and cli.main(["index", "stats"]) == 0
    assert "r\ufffdsum\ufffd.md" not in capsys.readouterr()[0]


def test_a_file_the_index_does_not_read_named_on_its_own_is_refused(tmp_path, capsys):
    """``swarm index build script.py`` said "0 documents", exit 0, and kept the file as a root."""
    script = tmp_path / "script.py"
    script.write_text("x = 1\n", encoding="utf-8")
    assert cli.main(["index", "build", str(script)]) == 2
    assert f"error: path: {script}: .py is not read; the index reads .docx" in capsys.readouterr().err
    assert cli.main(["index", "stats"]) in (0, 2)
    assert str(script) not in capsys.readouterr().out


def test_utf8_with_a_stray_byte_stays_utf8():
    """One invalid byte sent a whole UTF-8 file to Windows-1252: "Café" read "CafÃ©" throughout."""
    from providers.web.text import decode_text

    assert decode_text("Café au lait, résumé\n".encode() + b"\xff end\n") == "Café au lait, résumé\n\ufffd end\n"
    assert decode_text("caf\xe9 r\xe9sum\xe9\n".encode("cp1252")) == "café résumé\n"


def test_a_slides_bullets_and_a_docx_table_read_as_items_and_rows(tmp_path):
    """A slide's bullets were one line each with no end, quoted as one sentence ("Ship multi-region
    replication Cut p99 ingest latency below 250 ms"); a DOCX table's rows ran into one as well."""
    import pptx

    from graphs.research.quoting import flatten
    from providers.web.documents import extract

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Q1 Goals"
    slide.placeholders[1].text_frame.text = "Ship multi-region replication\nCut p99 ingest latency below 250 ms"
    path = tmp_path / "goals.pptx"
    deck.save(path)
    page = extract(path, path.read_bytes()).pages[0]
    assert page == "# Q1 Goals\n\n- Ship multi-region replication\n- Cut p99 ingest latency below 250 ms"
    assert flatten(page) == "Ship multi-region replication. Cut p99 ingest latency below 250 ms"
