"""Knowledge bases: each file type parsed into chunks that keep their headings, bad files refused
with a clear message and nothing half-indexed, replace and delete, a restart, and BM25 retrieval
in English and Chinese on SQLite and a real PostgreSQL.

No model is needed: full-text search alone. The fused path runs with a keyword embedder (a real
``Embedder`` whose vectors are word counts over a tiny bilingual vocabulary), which stands in for
a multilingual embedding model only to show that its ranking is fused in.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import docx
import pypdf
import pytest
from pg import DATABASES, empty_database

from chat import Settings, Unavailable
from chat.i18n import MESSAGES
from chat.knowledge import (
    BadKnowledgeName,
    BrokenDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    KnowledgeBase,
    KnowledgeError,
    UnsupportedType,
    open_knowledge,
    terms,
)
from chat.knowledge.chunk import CHUNK_CHARS, Block, chunk, split_text
from chat.knowledge.terms import query_terms
from chat.store import Store

RETURNS_MD = """\
# Returns

You can return any item within 30 days of delivery. Keep the receipt.

## Refunds

Refunds reach your card within 5 business days after we receive the parcel.

```
# not a heading: inside a code block
```

# 配送

我们通过顺丰快递发货，一般三天内送达。

| Product | Price | Stock |
|---|---|---|
| Green tea | 25 | yes |
| Oolong | 40 | no |
"""


def tiny_pdf(lines: Sequence[str]) -> bytes:
    """A one-page PDF with ``lines`` of text (Helvetica), written by hand with a correct xref."""
    text = " ".join(f"({line}) Tj 0 -20 Td" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td {text} ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
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


def encrypted_pdf(user_password: str, owner_password: str = "owner") -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(tiny_pdf(["Secret warranty terms."]))))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def word_file() -> bytes:
    document = docx.Document()
    document.add_heading("Warranty", level=1)
    document.add_paragraph("Every kettle has a two year warranty against defects.")
    document.add_heading("保修范围", level=2)
    document.add_paragraph("人为损坏不在保修范围内。")
    table = document.add_table(rows=2, cols=2)
    for cell, text in zip(table._cells, ["Model", "Years", "K-100", "2"], strict=True):
        cell.text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def csv_file() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerows([["sku", "name", "price"], ["A1", "Jasmine tea", "18"], ["B2", "普洱茶", "66"]])
    return out.getvalue().encode()


HTML = """<html><head><title>FAQ</title><script>var hidden = "script text";</script></head>
<body><nav>Home | Shop</nav><h1>Opening hours</h1><p>The shop opens at nine every morning.</p>
<h2>Holidays</h2><p>Closed on <b>New Year's Day</b>.</p>
<table><tr><th>Day</th><th>Hours</th></tr><tr><td>Sunday</td><td>10-16</td></tr></table></body></html>"""

# name, content, question, (heading, words in the chunk) of the best hit, chunks
FILES = [
    ("returns.md", RETURNS_MD.encode(), "how many days until refunds arrive", ("Returns > Refunds", "5 business days"), 5),
    ("notes.txt", b"Parking is free on weekends.\n\nThe cafe serves lunch from noon.", "when is lunch", ("", "noon"), 1),
    ("faq.html", HTML.encode(), "opening on Sunday", ("Opening hours > Holidays", "Sunday"), 3),
    ("prices.csv", csv_file(), "普洱茶多少钱", ("", "price: 66"), 2),
    ("warranty.docx", word_file(), "保修范围", ("Warranty > 保修范围", "人为损坏"), 3),
    ("manual.pdf", tiny_pdf(["Descale the kettle every month.", "Use white vinegar."]), "descale kettle", ("", "vinegar"), 1),
]  # fmt: skip


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'kb.db'}")
    yield opened
    opened.close()


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    base = open_knowledge(Settings(data_dir=str(tmp_path), store=False), None)
    yield base
    base.close()


@pytest.mark.parametrize(("name", "data", "question", "best", "count"), FILES, ids=[f[0] for f in FILES])
def test_each_file_type_is_indexed_by_structure_and_found(
    kb: KnowledgeBase, name: str, data: bytes, question: str, best: tuple[str, str], count: int
) -> None:
    info = kb.add_document("shop", name, data)
    assert (info.name, info.knowledge, info.chunks) == (name, "shop", count)
    found = kb.search("shop", question)
    assert found, question
    heading, words = best
    assert (found[0].document, found[0].heading, found[0].document_id) == (name, heading, info.id)
    assert words in found[0].text
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)


def test_structure_headings_tables_code_and_long_paragraphs(kb: KnowledgeBase) -> None:
    kb.add_document("shop", "returns.md", RETURNS_MD.encode())
    tea = kb.search("shop", "green tea price")[0]
    assert (tea.heading, tea.text) == ("配送", "Product: Green tea | Price: 25 | Stock: yes")
    # a "#" inside a code block is text, not a heading
    assert kb.search("shop", "inside code block")[0].heading == "Returns > Refunds"
    # A paragraph far over the bound is cut at sentence ends, in English and in Chinese.
    english = " ".join(f"Sentence number {i} ends here." for i in range(200))
    chinese = "".join(f"第{i}句话在这里结束。" for i in range(300))
    for text, end in ((english, "."), (chinese, "。")):
        pieces = split_text(text)
        assert len(pieces) > 3 and all(len(p) <= CHUNK_CHARS for p in pieces)
        assert all(p.endswith(end) for p in pieces)
        assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", text)
    # short paragraphs of one section share a chunk; a new heading starts a new one
    chunks = chunk(
        [Block("heading", "A", 1), Block("text", "one"), Block("text", "two"), Block("heading", "B", 2)]
    )
    assert [(c.heading, c.text) for c in chunks] == [("A", "one\n\ntwo")]


BAD = [
    ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\nnot a pdf at all", BrokenDocument),
    ("locked.pdf", encrypted_pdf("secret"), EncryptedDocument),
    ("empty.md", b"", EmptyDocument),
    ("blank.txt", b" \n\n \t\n", EmptyDocument),
    ("headings.md", b"# Only a heading\n\n## And another\n", EmptyDocument),
    ("no-text.pdf", tiny_pdf([]), EmptyDocument),
    ("broken.docx", b"PK\x03\x04 not really a zip", BrokenDocument),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, EncryptedDocument),
    ("binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00", BrokenDocument),
    ("program.exe", b"MZ\x90\x00", UnsupportedType),
    ("no-extension", b"hello", UnsupportedType),
    ("big.txt", b"word " * 1000, DocumentTooLarge),
]


@pytest.mark.parametrize(("name", "data", "error"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_get_a_clear_message_and_change_nothing(
    sqlite_store: Store, name: str, data: bytes, error: type[KnowledgeError]
) -> None:
    kb = KnowledgeBase(sqlite_store.engine, max_bytes=4096)
    kept = kb.add_document(
        "shop", Path(name).with_suffix(".md").name, b"# Kept\n\nThe earlier version stays."
    )
    with pytest.raises(error) as caught:
        kb.add_document("shop", name, data)
    for lang in ("en", "zh"):
        message = caught.value.user_message(lang)
        assert message and "Traceback" not in message and "{" not in message
        assert message != MESSAGES["error.internal"][lang]
    assert ("密码" in caught.value.user_message("zh")) == (error is EncryptedDocument)
    # Nothing was stored, and a failed replacement (empty.md) leaves the earlier document whole.
    assert kb.list_documents("shop") == [kept]
    assert kb.search("shop", "earlier version")[0].document_id == kept.id


def test_oversized_message_names_the_sizes(kb: KnowledgeBase) -> None:
    kb.max_bytes = 1024
    with pytest.raises(DocumentTooLarge) as caught:
        kb.add_document("shop", "big.txt", b"x" * 2000)
    assert "2000" in caught.value.user_message("en") and "1024" in caught.value.user_message("zh")


def test_a_pdf_with_only_an_owner_password_is_read(kb: KnowledgeBase) -> None:
    kb.add_document("shop", "restricted.pdf", encrypted_pdf(user_password=""))
    assert "warranty" in kb.search("shop", "warranty terms")[0].text


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x" * 65, "名字 有空格", "../etc", 7])
def test_bad_knowledge_names_are_refused(kb: KnowledgeBase, name: object) -> None:
    with pytest.raises(BadKnowledgeName) as caught:
        kb.add_document(name, "a.txt", b"text")  # type: ignore[arg-type]
    assert "1-64" in caught.value.user_message("zh")
    assert kb.exists(name) is False  # type: ignore[arg-type]


def test_replace_delete_and_isolation(kb: KnowledgeBase) -> None:
    first = kb.add_document("shop", "policy.txt", b"Returns are accepted within 14 days.")
    kb.add_document("school", "policy.txt", b"Homework is due on Friday.")
    second = kb.add_document("shop", "C:\\Users\\me\\policy.txt", b"Returns are accepted within 60 days.")
    assert second.name == "policy.txt" and second.id != first.id  # a Windows path: the file name only
    assert [(d.id, d.chunks) for d in kb.list_documents("shop")] == [(second.id, 1)]
    texts = [s.text for s in kb.search("shop", "returns accepted days", limit=10)]
    assert texts == ["Returns are accepted within 60 days."]  # the replaced text is gone
    assert kb.search("school", "returns accepted") == []  # another base's documents are not seen
    assert [(k.name, k.documents, k.chunks) for k in kb.list_knowledge()] == [
        ("school", 1, 1),
        ("shop", 1, 1),
    ]
    assert kb.delete_document("school", second.id) is False  # not that base's document
    assert kb.delete_document("shop", first.id) is False  # replaced: gone already
    assert kb.delete_document("shop", second.id) is True
    assert kb.search("shop", "returns accepted days") == [] and not kb.exists("shop")
    assert kb.list_documents("shop") == [] and [k.name for k in kb.list_knowledge()] == ["school"]


def test_knowledge_survives_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warmed = []  # jieba's dictionary is loaded ahead of the first question only if there are documents
    monkeypatch.setattr(terms, "warm_up", lambda: warmed.append(True))
    settings = Settings(data_dir=str(tmp_path), store=False)
    kb = open_knowledge(settings, None)
    info = kb.add_document("手册", "kettle.md", "# 除垢\n\n每月用白醋给水壶除垢一次。".encode())
    kb.close()
    assert (tmp_path / "knowledge.db").exists()
    assert warmed == []
    again = open_knowledge(settings, None)
    try:
        for thread in threading.enumerate():
            if thread.name == "jieba-warm-up":
                thread.join(5)
        assert warmed == [True]
        found = again.search("手册", "水壶多久除垢一次？")
        assert [(s.document_id, s.heading) for s in found] == [(info.id, "除垢")]
    finally:
        again.close()


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(empty_database(request, tmp_path))
    yield opened
    opened.close()


def test_retrieval_on_sqlite_and_postgresql(store: Store) -> None:
    kb = open_knowledge(Settings(), store)
    assert kb.engine is store.engine  # the conversation store's database
    kb.add_document("shop", "returns.md", RETURNS_MD.encode())
    kb.add_document("shop", "prices.csv", csv_file())
    kb.add_document("other", "misc.txt", "Refunds for the other shop take a year. 顺丰快递".encode())
    cases = [
        ("How long do refunds take?", "Returns > Refunds"),
        ("Can I return an item after delivery?", "Returns"),
        ("用什么快递发货？几天送达？", "配送"),
        ("jasmine tea", ""),
    ]
    for question, heading in cases:
        found = kb.search("shop", question, limit=3)
        assert found and found[0].heading == heading, (question, found)
        assert all(s.document in ("returns.md", "prices.csv") for s in found)
        assert found[0].score > 0
    doc = next(d for d in kb.list_documents("shop") if d.name == "returns.md")
    assert kb.delete_document("shop", doc.id)
    assert all(s.document != "returns.md" for s in kb.search("shop", "refunds delivery 快递", limit=10))
    assert kb.search("shop", "") == [] and kb.search("shop", "?!") == []


def test_query_terms_drop_stopwords_in_both_languages() -> None:
    assert query_terms("What is the return policy?") == ["return", "policy"]
    assert query_terms("请问退货政策是什么？") == ["退货", "政策"]
    assert query_terms("the") == ["the"]  # nothing else to search by: kept


class KeywordEmbedder:
    """Vectors that count a few concepts in either language: a stand-in for a multilingual model."""

    name = "keywords"
    CONCEPTS = [("refund", "退款"), ("deliver", "送达"), ("tea", "茶")]

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        vectors = []
        for text in texts:
            v = [float(sum(text.lower().count(word) for word in words)) for words in self.CONCEPTS] + [0.01]
            norm = sum(x * x for x in v) ** 0.5
            vectors.append([x / norm for x in v])
        return vectors


def test_embeddings_are_stored_and_fused(sqlite_store: Store) -> None:
    embedder = KeywordEmbedder()
    kb = KnowledgeBase(sqlite_store.engine, embedder=embedder)
    info = kb.add_document("shop", "returns.md", RETURNS_MD.encode())
    assert embedder.calls == [info.chunks]  # one call for the whole document
    found = kb.search("shop", "退款要多久？", limit=2)  # no Chinese word of it is in the refunds chunk
    assert found[0].heading == "Returns > Refunds"
    assert len(found) == 2 and found[0].score > found[1].score
    kb.delete_document("shop", info.id)
    assert kb.search("shop", "退款要多久？") == []


def test_a_zip_bomb_docx_is_refused_before_inflating(sqlite_store: Store) -> None:
    from chat.knowledge.limits import Limits

    kb = KnowledgeBase(sqlite_store.engine, limits=Limits(unpacked=1_000_000))
    packed = io.BytesIO(word_file())
    with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/padding.xml", b"\0" * 2_000_000)
    assert len(packed.getvalue()) < 100_000
    with pytest.raises(BrokenDocument) as caught:
        kb.add_document("shop", "bomb.docx", packed.getvalue())
    assert "1000000" in caught.value.user_message("en") and "解压" in caught.value.user_message("zh")


def test_a_search_does_not_wait_behind_a_writer(tmp_path: Path) -> None:
    """A chat turn's search reads beside a long upload (SQLite WAL): it never takes the lock."""
    store = Store.open(f"sqlite:///{tmp_path / 'kb.db'}")
    kb = KnowledgeBase(store.engine)
    kb.add_document("shop", "returns.md", RETURNS_MD.encode())
    writer = sqlite3.connect(tmp_path / "kb.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # as an upload's transaction holds it
    writer.execute("DELETE FROM knowledge_documents")
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.extend([kb.search("shop", "refunds"), kb.exists("shop")]))
    try:
        reader.start()
        reader.join(10)  # with the write lock it would wait for the 30 s busy timeout
        assert not reader.is_alive()
        assert found[0][0].heading == "Returns > Refunds" and found[1] is True  # type: ignore[index]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        reader.join()
        store.close()


def test_embeddings_of_another_model_or_a_failing_embedder_leave_full_text(sqlite_store: Store) -> None:
    old = KeywordEmbedder()
    KnowledgeBase(sqlite_store.engine, embedder=old).add_document("shop", "returns.md", RETURNS_MD.encode())

    class Wider(KeywordEmbedder):
        name = "wider"
        fail = False

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            if self.fail:
                raise Unavailable("embedding service down", backend="embeddings")
            return [[*v, 0.0] for v in super().embed(texts)]

    wider = Wider()
    kb = KnowledgeBase(sqlite_store.engine, embedder=wider)
    # The stored vectors are another model's (other dimensions): only full text ranks them.
    assert [s.heading for s in kb.search("shop", "refunds", limit=1)] == ["Returns > Refunds"]
    wider.fail = True
    assert [s.heading for s in kb.search("shop", "refunds", limit=1)] == ["Returns > Refunds"]


def test_concurrent_uploads_of_one_name_leave_one_document(store: Store) -> None:
    kb = KnowledgeBase(store.engine)
    errors: list[BaseException] = []

    def upload(n: int) -> None:
        try:
            kb.add_document("shop", "same.txt", f"Version {n} of the price list.".encode())
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    for _ in range(5):  # on PostgreSQL without the name lock, most rounds fail on the unique name
        threads = [threading.Thread(target=upload, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert [d.name for d in kb.list_documents("shop")] == ["same.txt"]
    assert len(kb.search("shop", "price list version", limit=10)) == 1


def test_pdf_bookmarks_become_headings(kb: KnowledgeBase) -> None:
    writer = pypdf.PdfWriter()
    for lines in (["Read this manual first."], ["Descale the kettle monthly."], ["Two years of warranty."]):
        writer.add_page(pypdf.PdfReader(io.BytesIO(tiny_pdf(lines))).pages[0])
    care = writer.add_outline_item(title="Care", page_number=1)
    writer.add_outline_item(title="Descaling", page_number=1, parent=care)
    writer.add_outline_item(title="保修", page_number=2)
    out = io.BytesIO()
    writer.write(out)
    kb.add_document("shop", "manual.pdf", out.getvalue())
    assert [(s.heading, s.text) for s in kb.search("shop", "descale monthly", limit=1)] == [
        ("Care > Descaling", "Descale the kettle monthly.")
    ]
    assert kb.search("shop", "warranty", limit=1)[0].heading == "保修"
    assert kb.search("shop", "manual first", limit=1)[0].heading == ""


def test_markdown_front_matter_marks_and_rules_are_not_text(kb: KnowledgeBase) -> None:
    page = b"---\ntitle: Shop FAQ\nlayout: page\n---\n# **Delivery** and [returns](https://x.example)\n\n"
    page += b"We ship on Mondays.\n\n---\n\nSetext title\n------------\n\nGift wrap costs 2 euros.\n"
    info = kb.add_document("shop", "faq.md", page)
    assert info.chunks == 2
    first = kb.search("shop", "ship mondays")[0]
    assert (first.heading, first.text) == ("Delivery and returns", "We ship on Mondays.")
    assert kb.search("shop", "gift wrap")[0].heading == "Delivery and returns > Setext title"
    assert kb.search("shop", "layout page") == []  # the front matter is not indexed


def test_a_cross_language_answer_gets_the_other_language_vote(sqlite_store: Store) -> None:
    """Full text finds a Chinese chunk about shipping; the embeddings point at the English refunds
    chunk. The fused ranking (``fusion.fuse``) also ranks the chunks in the other language than
    the question, so the cross-language answer wins the tie a two-way fusion would give away."""
    kb = KnowledgeBase(sqlite_store.engine, embedder=KeywordEmbedder())
    kb.add_document("shop", "returns.md", RETURNS_MD.encode())
    assert [s.heading for s in KnowledgeBase(sqlite_store.engine).search("shop", "退款 发货", limit=1)] == [
        "配送"
    ]
    assert kb.search("shop", "退款 发货", limit=2)[0].heading == "Returns > Refunds"


def test_with_embeddings_an_unrelated_question_gets_no_chunks(sqlite_store: Store) -> None:
    """Below the similarity floor (CHAT_KNOWLEDGE_MIN_SIMILARITY) nothing is offered as a
    reference, even when full text finds words in common; a related question still finds its
    chunk, in either language."""

    class WithMars(KeywordEmbedder):
        CONCEPTS = [*KeywordEmbedder.CONCEPTS, ("mars", "火星")]  # a concept no document has

    kb = KnowledgeBase(sqlite_store.engine, embedder=WithMars(), min_similarity=0.5)
    kb.add_document("shop", "returns.md", RETURNS_MD.encode())
    assert kb.search("shop", "How long do refunds take?")[0].heading == "Returns > Refunds"
    assert kb.search("shop", "退款要多久？")[0].heading == "Returns > Refunds"
    unrelated = "Hello! How long is a day on Mars?"  # "long": a word the refunds chunk has too
    assert kb.search("shop", unrelated) == []
    assert KnowledgeBase(sqlite_store.engine, embedder=WithMars()).search("shop", unrelated)  # no floor
