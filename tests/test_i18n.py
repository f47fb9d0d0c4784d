"""Every sentence a user reads is in their language: notices, errors and refusals, on the page and
the API, in Chinese for a Chinese message and in English for an English one.

The engine runs scripted backends (``ScriptedBackend``): these tests are about the words around a
reply, not the model. The guard is the real ``ContentGuard`` with the shipped rules.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio import utils
from guard_fakes import ScriptedBackend
from service_support import serve
from support import frames

from chat import ChatEngine, GenerationParams, InvalidRequest, RetryPolicy, Unavailable
from chat.guards import ContentGuard
from chat.i18n import AREAS, MESSAGES, Lang, request_language
from chat.reply.transcript import from_json
from chat.service.errors import ApiError, from_chat_error, from_invalid, invalid_request
from chat.ui import ChatHandlers, build_request
from chat.ui.sidebar import ConversationList

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Three English words in a row: a sentence (or part of one) left untranslated. Field names
# ("temperature"), JSON types and quoted values are allowed inside a Chinese sentence.
_ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}(?:[ ,;'-]+[A-Za-z]{2,}){2,}\b")


# identifiers (backend and field names), not English prose
BACKEND_NAMES = re.compile(
    r"\b(local|cut|broken|nope|history|system_prompt|backend|knowledge|temperature|top_p"
    r"|max_new_tokens|context_length|seed)\b"
)


def in_language(text: str, lang: Lang) -> bool:
    text = BACKEND_NAMES.sub("X", text)
    if lang == "zh":
        return bool(_CJK.search(text)) and not _ENGLISH_RUN.search(text)
    return not _CJK.search(text) and bool(re.search(r"[A-Za-z]{2,} [A-Za-z]{2,}", text))


WINDOW = 256  # the scripted model's loaded window: a larger context_length is capped, with a notice


class SmallModel(ScriptedBackend):
    def context_window(self) -> int:
        return WINDOW


TEXT = {
    "zh": {
        "ask": "请介绍一下长城。",
        "turn": "长城是中国古代修建的军事防御工程，绵延上万里。" * 3,
        "secret": "我的密码是 Hunter2abc，帮我登录一下",
        "reply": ["长城", "很长。"],
        "long": "长" * 2100,  # past the guard's 2,000 characters
        "huge": "请介绍一下长城。" + "长" * 1400,  # within them, but past the 256-token window
    },
    "en": {
        "ask": "Tell me about the Great Wall.",
        "turn": "The Great Wall is a line of ancient fortifications across northern China. " * 3,
        "secret": "my password is Hunter2abc, please log me in",
        "reply": ["The wall ", "is long."],
        "long": "long " * 420,
        "huge": "Tell me about the Great Wall. " + "x" * 1400,
    },
}


def history(lang: Lang, pairs: int = 8) -> list[dict[str, str]]:
    turn = TEXT[lang]["turn"]
    return [
        m
        for _ in range(pairs)
        for m in ({"role": "user", "content": turn}, {"role": "assistant", "content": turn})
    ]


def build_engine(lang: Lang, *, fallback: tuple[str, ...] = ()) -> ChatEngine:
    reply = TEXT[lang]["reply"]
    backends = {
        "local": SmallModel(reply, finish="length"),  # every reply also ends with the length notice
        "cut": SmallModel(reply, fail_after=1),  # fails after its first chunk: an interrupted reply
        "broken": SmallModel(reply, fail_after=0),  # fails before any text: an error
    }
    guard = ContentGuard(max_message_chars=2000)
    return ChatEngine(backends, fallback=fallback, retry=RetryPolicy(max_attempts=1), input_guard=guard)


# -- the catalogue ---------------------------------------------------------------------------------


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_each_sentence_lives_in_one_area() -> None:
    keys = [key for area in AREAS for key in area]
    assert len(keys) == len(set(keys)) == len(MESSAGES)


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_has_both_languages_with_the_same_fields(key: str) -> None:
    entry = MESSAGES[key]
    assert set(entry) == {"en", "zh"}
    assert _fields(entry["en"]) == _fields(entry["zh"])
    assert _CJK.search(entry["zh"]) and not _CJK.search(entry["en"])


def test_request_language_follows_the_text_then_accept_language() -> None:
    assert request_language("你好") == "zh"
    assert request_language("hello", "zh-CN,zh;q=0.9") == "en"  # what the user wrote wins
    assert request_language("", "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert request_language("  ", "en-US,zh;q=0.5") == "en"
    assert request_language() == "en"


# -- errors raised in the code, translated where they are shown --------------------------------------


def test_a_reason_is_translated_and_str_stays_english_for_logs() -> None:
    with pytest.raises(InvalidRequest) as info:
        GenerationParams(temperature=5)
    assert str(info.value) == "temperature must be between 0 and 2, got 5"
    assert info.value.user_message("zh") == "请求无效：temperature 必须在 0 到 2 之间，收到的是 5"
    assert info.value.user_message("en") == "Invalid request: temperature must be between 0 and 2, got 5"


@pytest.mark.parametrize(
    "raise_it",
    [
        lambda: from_json("not json"),
        lambda: from_json('{"messages": 3}'),
        lambda: from_json('[{"role": "system", "content": "x"}]'),
        lambda: from_json('[{"role": "user", "content": 5}]'),
        lambda: build_request(5, None, ""),
        lambda: build_request("hi", [{"role": "tool", "content": "x"}], ""),
        lambda: build_request("hi", "not a list", ""),
        lambda: GenerationParams(max_new_tokens=1.5),
        lambda: GenerationParams(top_p="high"),
        lambda: GenerationParams(seed=1.5),
    ],
    ids=[
        "import-json",
        "import-shape",
        "import-role",
        "import-content",
        "ui-message",
        "ui-role",
        "ui-history",
        "whole-number",
        "number",
        "seed",
    ],
)
def test_invalid_requests_read_in_both_languages(raise_it: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        raise_it()
    assert in_language(info.value.user_message("zh"), "zh"), info.value.user_message("zh")
    assert in_language(info.value.user_message("en"), "en"), info.value.user_message("en")


def test_api_errors_are_rendered_in_the_language_asked() -> None:
    error = ApiError(413, "payload_too_large", key="api.too_large", limit=1024)
    assert error.message == str(error) == "request body is larger than the limit of 1024 bytes"
    assert error.body("r1", "zh") == {
        "error": {"type": "payload_too_large", "message": "请求体超过了 1024 字节的上限", "request_id": "r1"}
    }
    assert ApiError(401, "unauthorized", key="api.unauthorized", lang="zh").response().status_code == 401
    assert in_language(ApiError(401, "unauthorized", key="api.unauthorized", lang="zh").message, "zh")
    backend = from_chat_error(Unavailable("connection reset", backend="cloud"), "zh")
    assert (backend.status, backend.message) == (503, "模型服务暂不可用（cloud），请稍后重试。")
    assert backend.body(lang="en")["error"]["message"].startswith("The model service is unavailable")


def test_route_helpers_translate_when_the_route_renders() -> None:
    with pytest.raises(InvalidRequest) as info:
        GenerationParams(top_p=3)
    error = from_invalid(info.value, "context")
    assert error.body(lang="zh")["error"]["message"] == "context: top_p 必须在 0 到 1 之间，收到的是 3"
    assert error.body()["error"]["message"] == "context: top_p must be between 0 and 1, got 3"
    required = invalid_request("api.required", field="user_input")
    assert (required.status, required.kind) == (400, "invalid_request")
    assert required.body(lang="zh")["error"]["message"] == "缺少必填字段 user_input"


@pytest.mark.parametrize(
    ("accept", "lang"), [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-GB,en;q=0.9", "en"), ("", "en")]
)
def test_a_bad_import_is_explained_in_the_browsers_language(tmp_path: Path, accept: str, lang: Lang) -> None:
    bad = tmp_path / "chat.json"
    bad.write_text('{"messages": [{"role": "system", "content": "x"}]}', encoding="utf-8")
    page = ConversationList(None)  # the page's import (chat.ui.sidebar)
    with pytest.raises(gr.Error) as info:
        page.imported(str(bad), SimpleNamespace(headers={"accept-language": accept}))
    assert in_language(info.value.message, lang), info.value.message
    # Gradio passes the request in: the parameter is typed so that it knows to
    assert utils.is_special_typed_parameter("request", utils.get_type_hints(ConversationList.imported))


# -- the page: notice bubbles and errors ----------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_page_notices_and_errors_follow_the_message(lang: Lang) -> None:
    handlers = ChatHandlers(build_engine(lang))
    ask = TEXT[lang]["ask"]

    def titles(backend: str, message: str = ask) -> list[str]:
        *_, (bubbles, _) = frames(handlers.ui(message, history(lang), "", 0.0, 2048, 64, 1.0, backend))
        return [b.metadata["title"] for b in bubbles if b.metadata and b.metadata.get("title")]

    shown = titles("local") + titles("cut") + titles("broken") + titles("local", TEXT[lang]["long"])
    assert len(shown) >= 6  # capped, trimmed, length; interrupted; the error; too long
    assert all(in_language(title.removeprefix("⚠️ "), lang) for title in shown), shown


# -- the API: every notice, error and refusal in a reply -------------------------------------------


@pytest.fixture(scope="module", params=["zh", "en"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, Lang]]:
    with serve(build_engine(request.param), full=False) as base:
        yield base, request.param


def chat(base: str, user_input: str, **context: Any) -> tuple[int, dict[str, Any]]:
    response = httpx.post(f"{base}api/chat", json={"user_input": user_input, "context": context}, timeout=30)
    return response.status_code, response.json()


def texts(body: dict[str, Any]) -> list[str]:
    """What the user reads besides a model's own words: notices, an error, a refusal."""
    found = [n["text"] for n in body.get("notices", [])]
    if "error" in body:
        found.append(body["error"]["message"])
    if body.get("blocked"):
        found.append(body["reply"])
    return found


CASES = {
    "notices": (200, lambda lang: {"history": history(lang), "context_length": 2048}),
    "interrupted": (200, lambda lang: {"backend": "cut"}),
    "backend-error": (503, lambda lang: {"backend": "broken"}),
    "too-long": (400, lambda lang: {"user_input": TEXT[lang]["long"]}),
    "overflow": (400, lambda lang: {"user_input": TEXT[lang]["huge"]}),
    "refusal": (200, lambda lang: {"user_input": TEXT[lang]["secret"]}),
    "bad-parameter": (400, lambda lang: {"temperature": 5}),
    "unknown-backend": (400, lambda lang: {"backend": "nope"}),
    "unknown-field": (400, lambda lang: {"colour": "blue"}),
}
NOT_WIRED: dict[str, str] = {}  # call sites that still pass English text through


@pytest.mark.parametrize("case", list(CASES))
def test_api_notices_and_errors_are_in_the_users_language(
    api: tuple[str, Lang], case: str, request: pytest.FixtureRequest
) -> None:
    base, lang = api
    if lang == "zh" and case in NOT_WIRED:
        request.applymarker(pytest.mark.xfail(reason=NOT_WIRED[case], strict=True))
    status, make = CASES[case]
    context = make(lang)
    user_input = context.pop("user_input", TEXT[lang]["ask"])
    got, body = chat(base, user_input, **{"max_new_tokens": 64, **context})
    assert got == status, body
    shown = texts(body)
    assert shown, body
    if case == "notices":
        assert {"context_capped", "trimmed", "length"} <= {n["kind"] for n in body["notices"]}
    assert all(in_language(text, lang) for text in shown), shown


@pytest.mark.parametrize("body", ["{", "[1, 2]", '{"context": {}}'], ids=["not-json", "array", "no-input"])
def test_a_body_without_text_is_refused_in_the_accept_language(api: tuple[str, Lang], body: str) -> None:
    base, lang = api
    accept = "zh-CN,zh;q=0.9" if lang == "zh" else "en-US,en;q=0.9"
    headers = {"content-type": "application/json", "accept-language": accept}
    response = httpx.post(f"{base}api/chat", content=body, headers=headers, timeout=30)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert in_language(message, lang), message


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_fallback_notice_is_in_the_users_language(lang: Lang) -> None:
    with serve(build_engine(lang, fallback=("local",)), full=False) as base:
        status, body = chat(base, TEXT[lang]["ask"], backend="broken")
    assert status == 200, body
    fallback = [n["text"] for n in body["notices"] if n["kind"] == "fallback"]
    assert len(fallback) == 1 and in_language(fallback[0], lang), fallback
