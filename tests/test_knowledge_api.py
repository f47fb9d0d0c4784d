"""The knowledge base routes through the real app on loopback: upload, list, replace and delete
(a deleted document is never retrieved again), bad files and bodies as JSON errors in the
caller's language, and the door: with a token configured, uploads need it.

The backend is scripted: no reply is generated here. Retrieval after the app's writes is checked
by opening the app's own database file again, as a restarted app would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import serve, service_engine

from chat.knowledge import KnowledgeBase
from chat.store import Store

MAX_BYTES = 4096
TOKEN = "kb-token-5b1c"
MANUAL = b"# Kettle\n\n## Descaling\n\nDescale the kettle every month with white vinegar.\n"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("knowledge-api")
    with serve(
        service_engine(ScriptedBackend(["ok"])), data_dir=str(folder), knowledge_max_bytes=MAX_BYTES
    ) as url:
        yield url, folder


def upload(http: httpx.Client, name: str, *files: tuple[str, bytes], **headers: str) -> httpx.Response:
    parts = [("file", (filename, data)) for filename, data in files]
    return http.post(f"/api/knowledge/{name}/documents", files=parts, headers=headers)


def search(folder: Path, knowledge: str, question: str) -> list[str]:
    """What a (re)started app retrieves from the same database file."""
    store = Store.open(f"sqlite:///{folder / 'chat.db'}", recover=False)
    try:
        return [s.text for s in KnowledgeBase(store.engine).search(knowledge, question, limit=10)]
    finally:
        store.close()


def test_upload_list_replace_and_delete(app: tuple[str, Path]) -> None:
    url, folder = app
    with httpx.Client(base_url=url, timeout=30) as http:
        added = upload(http, "kitchen", ("kettle.md", MANUAL), ("faq.txt", b"The kettle holds 1.7 litres."))
        assert added.status_code == 201, added.text
        docs = added.json()["documents"]
        assert [(d["name"], d["chunks"]) for d in docs] == [("kettle.md", 1), ("faq.txt", 1)]
        assert all(len(d["id"]) >= 20 for d in docs)
        assert search(folder, "kitchen", "how to descale") == [
            "Descale the kettle every month with white vinegar."
        ]

        listed = http.get("/api/knowledge").json()["knowledge"]
        assert {"name": "kitchen", "documents": 2, "chunks": 2} in listed
        documents = http.get("/api/knowledge/kitchen/documents").json()
        assert documents["knowledge"] == "kitchen"
        assert [d["name"] for d in documents["documents"]] == ["faq.txt", "kettle.md"]

        # Re-uploading the same name replaces the document: new id, the old text is gone.
        replaced = upload(http, "kitchen", ("kettle.md", b"# Kettle\n\nDescale it with citric acid."))
        new_id = replaced.json()["documents"][0]["id"]
        assert new_id != docs[0]["id"]
        assert search(folder, "kitchen", "descale vinegar citric") == ["Descale it with citric acid."]

        gone = http.delete(f"/api/knowledge/kitchen/documents/{docs[0]['id']}")
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found"
        deleted = http.delete(f"/api/knowledge/kitchen/documents/{new_id}")
        assert deleted.json() == {"id": new_id, "deleted": True}
        assert search(folder, "kitchen", "descale citric acid kettle") == ["The kettle holds 1.7 litres."]
        http.delete(f"/api/knowledge/kitchen/documents/{docs[1]['id']}")
        assert search(folder, "kitchen", "kettle litres descale") == []
        missing = http.get("/api/knowledge/kitchen/documents", headers={"Accept-Language": "zh-CN"})
        assert missing.status_code == 404 and "kitchen" in missing.json()["error"]["message"]
        assert "知识库" in missing.json()["error"]["message"]


BAD = [
    ("broken.pdf", b"%PDF-1.7 nothing else", 422, "broken_document", "不是有效的 PDF"),
    ("empty.txt", b"", 422, "empty_document", "没有文字"),
    ("tool.exe", b"MZ", 415, "unsupported_media_type", ".exe"),
    ("big.md", b"x" * (MAX_BYTES + 1), 413, "payload_too_large", str(MAX_BYTES)),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, 422, "encrypted_document", "密码"),
]


@pytest.mark.parametrize(("filename", "data", "status", "kind", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_are_json_errors_in_the_callers_language(
    app: tuple[str, Path], filename: str, data: bytes, status: int, kind: str, words: str
) -> None:
    with httpx.Client(base_url=app[0], timeout=30) as http:
        answer = upload(http, "bad-files", (filename, data), **{"Accept-Language": "zh-CN,zh;q=0.9"})
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["type"] == kind and words in error["message"]
        assert http.get("/api/knowledge/bad-files/documents").status_code == 404  # nothing was stored


def test_bad_requests(app: tuple[str, Path]) -> None:
    with httpx.Client(base_url=app[0], timeout=30) as http:
        bad_name = upload(http, "no spaces", ("a.txt", b"text"))
        assert bad_name.status_code == 400 and "1-64" in bad_name.json()["error"]["message"]
        no_file = http.post("/api/knowledge/shop/documents", files={"other": ("a.txt", b"text")})
        assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]["message"]
        not_multipart = http.post("/api/knowledge/shop/documents", json={"file": "text"})
        assert not_multipart.status_code == 400
        huge = upload(http, "shop", ("a.txt", b"x" * (11 * MAX_BYTES + 70_000)))  # refused by its length
        assert huge.status_code == 413 and huge.json()["error"]["type"] == "payload_too_large"
        # The same body sent chunked (no Content-Length) is cut off while it is read.
        body = b"--b0\r\nContent-Disposition: form-data; name=file; filename=a.txt\r\n\r\n"
        body += b"x" * (11 * MAX_BYTES + 70_000) + b"\r\n--b0--\r\n"
        chunked = http.post(
            "/api/knowledge/shop/documents",
            content=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]),
            headers={"Content-Type": "multipart/form-data; boundary=b0"},
        )
        assert chunked.status_code == 413 and "content-length" not in chunked.request.headers
        # Several files: the one that fails is named; the ones before it were added.
        mixed = upload(http, "mixed", ("good.txt", b"Fine text."), ("bad.pdf", b"%PDF-broken"))
        assert mixed.status_code == 422 and mixed.json()["error"]["message"].startswith("bad.pdf: ")
        assert [d["name"] for d in http.get("/api/knowledge/mixed/documents").json()["documents"]] == [
            "good.txt"
        ]


def test_uploads_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    engine = service_engine(ScriptedBackend(["ok"]))
    with (
        serve(engine, data_dir=str(tmp_path), api_token=TOKEN) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        refused = upload(http, "shop", ("a.txt", b"Secret price list."))
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
        assert http.get("/api/knowledge").status_code == 401
        assert http.delete("/api/knowledge/shop/documents/x").status_code == 401
        allowed = upload(http, "shop", ("a.txt", b"Secret price list."), Authorization=f"Bearer {TOKEN}")
        assert allowed.status_code == 201
        listed = http.get("/api/knowledge", headers={"Authorization": f"Bearer {TOKEN}"})
        assert listed.json() == {"knowledge": [{"name": "shop", "documents": 1, "chunks": 1}]}


def test_openapi_page_documents_the_knowledge_routes(app: tuple[str, Path]) -> None:
    spec = httpx.get(app[0] + "api/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/knowledge", "/api/knowledge/{name}/documents"} <= set(paths)
    assert "delete" in paths["/api/knowledge/{name}/documents/{document_id}"]
    body = paths["/api/knowledge/{name}/documents"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]


def test_without_a_login_only_the_servers_own_machine_may_change_documents(tmp_path: Path) -> None:
    """An open app (no login, no token) serves everyone, but adding or deleting documents is the
    operator's: a request a proxy forwarded (a visitor of a deployed app) gets 403, in its
    language, while reading still works; the server's own machine, straight in, may. (Behind a
    trusted proxy nobody may: tests/test_hardening.py.)"""
    with (
        serve(service_engine(ScriptedBackend(["ok"])), data_dir=str(tmp_path)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        visitor = {"X-Forwarded-For": "203.0.113.7"}
        refused = upload(http, "shop", ("prices.md", MANUAL), **visitor, **{"Accept-Language": "zh-CN"})
        assert refused.status_code == 403 and "管理员" in refused.json()["error"]["message"]
        local = upload(http, "shop", ("prices.md", MANUAL))
        assert local.status_code == 201, local.text
        doc = local.json()["documents"][0]["id"]
        assert http.get("/api/knowledge/shop/documents", headers=visitor).status_code == 200
        assert http.delete(f"/api/knowledge/shop/documents/{doc}", headers=visitor).status_code == 403
        assert http.delete(f"/api/knowledge/shop/documents/{doc}").status_code == 200


def test_behind_a_share_link_every_visitor_arrives_from_loopback_and_may_not_change_documents(
    tmp_path: Path,
) -> None:
    engine = service_engine(ScriptedBackend(["ok"]))
    with (
        serve(engine, data_dir=str(tmp_path), share=True) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        assert upload(http, "shop", ("prices.md", MANUAL)).status_code == 403
    with (
        serve(engine, data_dir=str(tmp_path), share=True, api_token=TOKEN) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        allowed = upload(http, "shop", ("prices.md", MANUAL), Authorization=f"Bearer {TOKEN}")
        assert allowed.status_code == 201, allowed.text


def test_the_pages_admin_panel_refuses_a_visitor_who_is_not_the_operator(tmp_path: Path) -> None:
    """The page's upload and delete buttons follow the same rule as the routes: the door's word
    (scope state) that this request is not the operator's leaves the documents as they were."""
    import gradio as gr
    from starlette.requests import Request

    from chat.reply.personas import load_persona_list
    from chat.service.door.identity import OPERATOR_KEY
    from chat.ui.knowledge import knowledge_controls

    def request(operator: bool) -> gr.Request:
        scope = {
            "type": "http",
            "headers": [(b"accept-language", b"en-US")],
            "state": {OPERATOR_KEY: operator},
        }
        return gr.Request(request=Request(scope))

    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    try:
        library = KnowledgeBase(store.engine)
        doc = library.add_document("shop", "kettle.md", MANUAL)
        (tmp_path / "new.md").write_bytes(MANUAL)
        with gr.Blocks():
            controls = knowledge_controls(library, load_persona_list())
        refused = controls.add("shop", [str(tmp_path / "new.md")], None, request(operator=False))
        assert "Only the operator" in refused[0].value
        assert controls.remove("shop", doc.id, None, request(operator=False))[0].value.startswith("⚠️")
        assert [d.name for d in library.list_documents("shop")] == ["kettle.md"]  # nothing changed
        controls.add("shop", [str(tmp_path / "new.md")], None, request(operator=True))
        assert sorted(d.name for d in library.list_documents("shop")) == ["kettle.md", "new.md"]
    finally:
        store.close()
