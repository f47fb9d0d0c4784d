"""``response_format`` (issue 9, point 5): validation, the local grammar on the real model, /v1.

The grammar tests sample from the real embedded SmolLM2 through llama.cpp with the grammar
``llama_grammar`` builds; the /v1 tests send requests to the service on loopback, with a cloud
backend pointed at the fault server (which records each request body) or a scripted local one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fault_server import FaultServer
from guard_fakes import ScriptedBackend
from service_support import serve

from chat import ChatEngine, GenerationParams, InvalidRequest
from chat.backends.local.grammars import STRUCTURED_FORMATS, llama_grammar, parse_response_format
from chat.backends.local.model_files import embedded_model_path
from chat.backends.openai_compat import OpenAICompatBackend, payload
from chat.engine.cache import ReplyCache
from chat.messages import Message

PERSON = {
    "type": "object",
    "properties": {
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
        "count": {"type": "integer"},
        "happy": {"type": "boolean"},
    },
    "required": ["colour", "count", "happy"],
    "additionalProperties": False,
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
ASK = [{"role": "user", "content": "Describe a cat as JSON."}]


# -- parsing ----------------------------------------------------------------------------------


def test_shapes_become_canonical_json_and_text_means_none() -> None:
    assert parse_response_format(None) is None
    assert parse_response_format({"type": "text"}) is None
    assert parse_response_format({"type": "json_object"}) == '{"type":"json_object"}'
    canonical = parse_response_format(SCHEMA_FORMAT)
    assert json.loads(canonical) == SCHEMA_FORMAT
    reordered = {"json_schema": {"strict": True, "schema": PERSON, "name": "person"}, "type": "json_schema"}
    assert parse_response_format(reordered) == canonical  # one cache key for one format
    params = GenerationParams(response_format=canonical)
    assert hash(params) == hash(GenerationParams(response_format=canonical))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("json", "response_format must be an object"),
        ({"type": "xml"}, "response_format.type must be one of text, json_object, json_schema, got 'xml'"),
        ({}, "response_format.type must be one of"),
        ({"type": "json_schema"}, "response_format.json_schema must be an object"),
        ({"type": "json_schema", "json_schema": {"schema": PERSON}}, "json_schema.name must be 1-64"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": PERSON}}, "got 'a b'"),
        ({"type": "json_schema", "json_schema": {"name": "p"}}, "json_schema.schema must be a JSON Schema"),
        ({"type": "json_schema", "json_schema": {"name": "p", "schema": []}}, "must be a JSON Schema object"),
        (
            {"type": "json_schema", "json_schema": {"name": "p", "schema": {}, "strict": "yes"}},
            "json_schema.strict must be true or false",
        ),
        ({"type": "json_schema", "json_schema": {"name": "p", "schema": {}, "x": 1}}, "unknown field(s)"),
    ],
)
def test_malformed_response_format_is_refused_with_a_clear_message(value: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_response_format(value)
    assert message in caught.value.detail


def test_the_format_is_part_of_the_cache_key_and_of_the_cloud_request() -> None:
    backend = OpenAICompatBackend("http://127.0.0.1:9/v1", "m")
    messages = [Message("user", "hi")]
    free, json_mode = (
        GenerationParams(),
        GenerationParams(response_format=parse_response_format({"type": "json_object"})),
    )
    cache = ReplyCache()
    assert cache.key(backend, messages, free) != cache.key(backend, messages, json_mode)
    assert "response_format" not in payload("m", messages, free)
    assert payload("m", messages, json_mode)["response_format"] == {"type": "json_object"}
    assert backend.response_formats == STRUCTURED_FORMATS


# -- the local grammar on the real model ------------------------------------------------------


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    """The embedded SmolLM2 through llama-cpp-python itself (the grammar is what is under test)."""
    from llama_cpp import Llama

    model = Llama(model_path=str(embedded_model_path()), n_ctx=1024, verbose=False)
    yield model
    model.close()


def _complete(llm: Any, response_format: str | None, content: str, max_tokens: int = 160) -> str:
    llm.reset()  # greedy output is reproducible only from an empty KV cache (see the README)
    result = llm.create_chat_completion(
        [{"role": "user", "content": content}],
        temperature=0,
        max_tokens=max_tokens,
        grammar=llama_grammar(response_format),
    )
    choice = result["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # the grammar ended it, not the token limit
    return choice["message"]["content"]


def test_json_object_grammar_yields_a_json_object(llm: Any) -> None:
    text = _complete(
        llm,
        parse_response_format({"type": "json_object"}),
        'Reply with a JSON object: {"answer": "yes"} if the sky is blue.',
    )
    assert isinstance(json.loads(text), dict)


def test_json_schema_grammar_yields_json_the_schema_accepts(llm: Any) -> None:
    text = _complete(
        llm, parse_response_format(SCHEMA_FORMAT), "Describe a cat: its colour, how many, happy?"
    )
    value = json.loads(text)
    assert set(value) == {"colour", "count", "happy"}  # required, and no additional properties
    assert value["colour"] in ("red", "green", "blue")
    assert isinstance(value["count"], int) and not isinstance(value["count"], bool)
    assert isinstance(value["happy"], bool)


def test_no_format_means_no_grammar_and_an_unsupported_schema_is_a_clear_error() -> None:
    assert llama_grammar(None) is None
    odd = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "tuple-of-things"}}}
    with pytest.raises(InvalidRequest) as caught:
        llama_grammar(parse_response_format(odd))
    assert "not supported by the local model's grammar" in caught.value.detail


# -- /v1 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


def _post(base: str, **body: Any) -> httpx.Response:
    request = {"model": "any", "messages": ASK, "max_tokens": 16, **body}
    return httpx.post(base + "v1/chat/completions", json=request, timeout=30)


def test_v1_passes_the_format_through_to_a_cloud_backend(fault: FaultServer) -> None:
    url = fault.url("ok")
    engine = ChatEngine({"cloud": OpenAICompatBackend(url, "fault-model")})
    with serve(engine, full=False) as base:
        plain = _post(base, response_format={"type": "text"})
        assert plain.status_code == 200, plain.text
        reply = _post(base, response_format=SCHEMA_FORMAT, stream=True)
        assert reply.status_code == 200, reply.text
        assert "data: [DONE]" in reply.text
    bodies = [seen.body for seen in fault.seen(url)]
    assert "response_format" not in bodies[0]  # "text" is the default: nothing to send
    assert bodies[1]["response_format"] == SCHEMA_FORMAT


@pytest.fixture(scope="module")
def scripted_service() -> Iterator[str]:
    """The service over a backend that honours only free text (as the base contract says)."""
    with serve(ChatEngine({"scripted": ScriptedBackend(["plain text"])}), full=False) as base:
        yield base


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"type": "yaml"}, "response_format.type must be one of text, json_object, json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "p"}}, "response_format.json_schema.schema"),
        ("json_object", "response_format must be an object"),
        ({"type": "json_object"}, "response_format json_object is not supported by the scripted backend"),
    ],
)
def test_v1_refuses_a_format_it_cannot_honour_with_a_400(
    scripted_service: str, value: Any, message: str
) -> None:
    response = _post(scripted_service, response_format=value)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert message in response.json()["error"]["message"]


def test_v1_answers_a_text_format_from_any_backend(scripted_service: str) -> None:
    response = _post(scripted_service, response_format={"type": "text"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "plain text"


def test_v1_json_schema_on_the_local_model(local_backend) -> None:
    """End to end: /v1 with a schema, answered by the in-process model under its grammar."""
    with serve(ChatEngine({"local": local_backend}), full=False) as base:
        response = _post(base, response_format=SCHEMA_FORMAT, max_tokens=160, temperature=0)
    assert response.status_code == 200, response.text
    value = json.loads(response.json()["choices"][0]["message"]["content"])
    assert set(value) == {"colour", "count", "happy"} and value["colour"] in ("red", "green", "blue")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"type": "yaml"}, "response_format.type 必须是"),
        ({"type": "json_object"}, "后端（"),
    ],
)
def test_v1_format_errors_follow_the_callers_language(
    scripted_service: str, value: Any, message: str
) -> None:
    response = httpx.post(
        scripted_service + "v1/chat/completions",
        json={"messages": [{"role": "user", "content": "你好"}], "response_format": value},
        headers={"Accept-Language": "zh-CN"},
        timeout=30,
    )
    assert response.status_code == 400 and message in response.json()["error"]["message"], response.text
