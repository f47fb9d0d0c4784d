"""Gradio's page assets: replayed from memory after the first request, kept by browsers, bounded.

The whole app on uvicorn for what a browser meets; a small Starlette app for the bounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import gradio.routes
import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import serve, service_engine
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from chat import Settings
from chat.server import build_app
from chat.service.asset_cache import MAX_ENTRY_BYTES, AssetCache
from chat.service.door.access import DoorMiddleware

CHROMIUM_ENCODINGS = "gzip, deflate, br, zstd"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve(service_engine(ScriptedBackend(["Hi."]))) as url:
        yield url


@pytest.fixture
def gradio_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The asset paths Gradio itself was asked for (its route reads the file and compresses it)."""
    asked: list[str] = []
    real = gradio.routes.file_response

    def counted(developer_path, user_path):  # noqa: ANN001, ANN202 - Gradio's own signature
        asked.append(str(user_path))
        return real(developer_path, user_path)

    monkeypatch.setattr(gradio.routes, "file_response", counted)
    return asked


def page_scripts(base: str) -> list[str]:
    return re.findall(r'src="\./(assets/[^"]+\.js)"', httpx.get(base).text)


def test_an_asset_is_read_once_then_replayed_with_browser_caching(base: str, gradio_files: list[str]) -> None:
    script = page_scripts(base)[0]
    headers = {"accept-encoding": CHROMIUM_ENCODINGS}
    first, second = (httpx.get(base + script, headers=headers) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert gradio_files == [script.removeprefix("assets/")]  # the second never reached Gradio
    assert first.headers["content-encoding"] == second.headers["content-encoding"] == "br"
    assert first.content == second.content and len(first.content) > 1000
    for response in (first, second):
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "javascript" in response.headers["content-type"]

    # another Accept-Encoding is another entry: plain bytes for a client without Brotli
    plain = httpx.get(base + script, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == first.content  # httpx decoded the Brotli one
    assert len(gradio_files) == 2


def test_static_files_are_kept_for_a_day(base: str) -> None:
    font = "static/fonts/IBMPlexMono/IBMPlexMono-Regular.woff2"
    response = httpx.get(base + font)
    assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=86400"


def test_missing_files_are_not_kept(base: str, gradio_files: list[str]) -> None:
    for _ in range(2):
        missing = httpx.get(base + "assets/no-such-file-0000.js")
        assert missing.status_code == 404 and "cache-control" not in missing.headers
    assert gradio_files == ["no-such-file-0000.js"] * 2


def test_a_browser_revalidating_its_copy_gets_a_304(base: str) -> None:
    script = page_scripts(base)[0]
    first = httpx.get(base + script)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for validators in (
        {"if-none-match": etag},
        {"if-none-match": f'"other", {etag}'},
        {"if-modified-since": modified},
    ):
        again = httpx.get(base + script, headers=validators)
        assert again.status_code == 304 and again.content == b"", validators
        assert again.headers["etag"] == etag and "immutable" in again.headers["cache-control"]
    changed = httpx.get(base + script, headers={"if-none-match": '"other"'})
    assert changed.status_code == 200 and changed.content == first.content


def test_the_page_and_the_api_are_never_cached(base: str) -> None:
    page = httpx.get(base)
    assert page.status_code == 200 and "cache-control" not in page.headers
    assert "cache-control" not in httpx.get(base + "healthz").headers


def test_the_door_stands_outside_the_cache() -> None:
    """Starlette runs the first of ``user_middleware`` outermost: the door sees every request,
    replayed assets included."""
    app = build_app(service_engine(ScriptedBackend(["Hi."])), Settings(n_ctx=2048, store=False))
    order = [m.cls for m in app.user_middleware]
    assert order.index(DoorMiddleware) < order.index(AssetCache)


# -- bounds, on a small app ----------------------------------------------------------------------


def files_app(sizes: dict[str, int], served: list[str]) -> Starlette:
    """Serves ``/assets/<name>`` as ``sizes[name]`` bytes; ``/assets/cookie`` sets a cookie."""

    def asset(request) -> Response:  # noqa: ANN001
        name = request.path_params["name"]
        served.append(name)
        if name == "cookie":
            return Response(b"x" * 10, headers={"set-cookie": "a=b"})
        if name not in sizes:
            return Response(b"missing", status_code=404)
        return Response(name[0].encode() * sizes[name], media_type="text/plain")

    return Starlette(routes=[Route("/assets/{name}", asset, methods=["GET", "POST"])])


def test_memory_is_bounded_and_the_least_recent_go_first() -> None:
    served: list[str] = []
    app = files_app({"a": 4000, "b": 4000, "c": 4000, "huge": MAX_ENTRY_BYTES + 1}, served)
    cache = AssetCache(app, max_bytes=10_000)  # room for two of them
    with TestClient(cache) as client:
        for name in ("a", "b", "a", "c", "a", "b"):
            assert client.get(f"/assets/{name}").content == name.encode() * 4000
        assert served == ["a", "b", "c", "b"]  # c pushed b out, the least recently used
        assert cache.bytes <= 10_000 and (cache.hits, cache.misses) == (2, 4)

        for _ in range(2):  # too large to keep, a cookie, a POST: served every time
            assert len(client.get("/assets/huge").content) == MAX_ENTRY_BYTES + 1
            assert client.get("/assets/cookie").headers["set-cookie"] == "a=b"
            assert client.post("/assets/a").status_code == 200
        assert served[4:] == ["huge", "cookie", "a"] * 2
        assert cache.bytes <= 10_000

    served.clear()
    small = AssetCache(files_app({"a": 20_000}, served), max_bytes=10_000)
    with TestClient(small) as client:  # larger than the whole cache: served, never kept
        assert [len(client.get("/assets/a").content) for _ in range(2)] == [20_000] * 2
        assert served == ["a", "a"] and small.bytes == 0
