"""Embedders and rank fusion for the knowledge base.

``HTTPEmbedder`` runs against a real ``llama_cpp.server`` on loopback started with
``--embedding true`` on the embedded SmolLM2 (that server returns one vector per token for a
chat model: the client mean pools them), ``GGUFEmbedder`` on the same GGUF in-process. The two
must agree, since both mean pool the same model. Nothing is mocked.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytest
from llama_server import llama_cpp_server
from support import free_port

from chat import Settings
from chat.backends.local.model_files import embedded_model_path
from chat.errors import AuthFailed, BackendTimeout, ConfigError, Unavailable
from chat.knowledge.centring import LanguageCentred, chinese_share
from chat.knowledge.embeddings import Embedder, GGUFEmbedder, HTTPEmbedder, build_embedder, normalise
from chat.knowledge.fusion import fuse, reciprocal_rank_fusion

KEY = "sk-EMBEDDING-canary-51c0de"
MODEL = "smol-embed"
SLOW = 300.0  # seconds: the shared 2-core machine can be very busy; the time bound has its own test
TEXTS = [
    "Returns are accepted within 30 days.",
    "退货期限是三十天。",
    "The router light is red.",
    "",
    "x" * 3000,
]


def _dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _assert_unit_vectors(vectors: list[list[float]], count: int) -> None:
    assert len(vectors) == count
    assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) == 576  # SmolLM2's width
    assert all(abs(math.sqrt(_dot(v, v)) - 1) < 1e-5 for v in vectors)


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[str]:
    """``python -m llama_cpp.server --embedding true`` on the embedded GGUF; yields its /v1 URL."""
    with llama_cpp_server(MODEL, KEY, "--embedding", "true", "--n_ctx", "512", "--n_threads", "1") as base:
        yield base


@pytest.fixture(scope="module")
def local_embedder() -> Iterator[GGUFEmbedder]:
    # 128 tokens, not the default 512: TEXTS' 750-token text is truncated all the same, for a
    # quarter of the work; the other texts are far shorter, so their vectors do not change.
    embedder = GGUFEmbedder(embedded_model_path(), n_ctx=128)
    yield embedder
    embedder.close()


@pytest.mark.slow
def test_the_http_embedder_against_a_real_server(embedding_server: str, local_embedder: GGUFEmbedder) -> None:
    client = HTTPEmbedder(embedding_server, MODEL, api_key=KEY, batch_size=2, timeout=SLOW)
    vectors = client.embed(TEXTS[:3])
    _assert_unit_vectors(vectors, 3)
    # The server's per-token vectors, pooled here, are what llama.cpp pools in-process. It gets
    # the second text of a request wrong, so the client fell back to one text per request.
    local = local_embedder.embed(TEXTS[:3])
    assert [_dot(a, b) for a, b in zip(vectors, local, strict=True)] == pytest.approx([1, 1, 1], abs=1e-3)
    assert client.batch_size == 1
    assert client.name == MODEL and KEY not in repr(client)
    client.close()


@pytest.mark.slow
def test_the_http_embedder_maps_failures_without_the_key(embedding_server: str) -> None:
    wrong = "sk-WRONG-key-9e8d7c"
    with pytest.raises(AuthFailed) as refused:
        HTTPEmbedder(embedding_server, MODEL, api_key=wrong, timeout=SLOW).embed(["hello"])
    assert refused.value.backend == "embeddings"
    assert wrong not in str(refused.value) and wrong not in refused.value.user_message("zh")
    with pytest.raises(BackendTimeout):  # a request and a model's answer take longer than 1 ms
        HTTPEmbedder(embedding_server, MODEL, api_key=KEY, timeout=0.001).embed(TEXTS[:1])
    with pytest.raises(Unavailable):
        HTTPEmbedder(f"http://127.0.0.1:{free_port()}/v1", MODEL).embed(["hello"])


def test_the_local_embedder_pools_normalises_and_ranks(local_embedder: GGUFEmbedder) -> None:
    vectors = local_embedder.embed(TEXTS)  # an empty text included
    _assert_unit_vectors(vectors, len(TEXTS))
    assert local_embedder.embed(TEXTS[:1])[0] == pytest.approx(vectors[0], abs=1e-5)
    question = local_embedder.embed(["How many days do I have to return an item?"])[0]
    assert _dot(question, vectors[0]) > _dot(question, vectors[2])
    assert local_embedder.embed([]) == []
    assert local_embedder.name == "SmolLM2-135M-Instruct.Q4_1"
    # its context holds one batch of sequences, not llama-cpp-python's 256 (100 MB for e5)
    assert local_embedder._llm.context_params.n_seq_max == local_embedder.batch_size  # noqa: SLF001


def test_the_local_embedder_truncates_a_long_text() -> None:
    short = GGUFEmbedder(embedded_model_path(), n_ctx=64)  # 601 tokens in, 64 embedded
    try:
        _assert_unit_vectors(short.embed(["word " * 600]), 1)
    finally:
        short.close()


def test_the_local_embedder_is_time_bounded(local_embedder: GGUFEmbedder) -> None:
    budget = local_embedder.timeout
    local_embedder.timeout = 1e-9  # over budget before the first batch
    try:
        with pytest.raises(BackendTimeout):
            local_embedder.embed(["one", "two"])
    finally:
        local_embedder.timeout = budget


def test_normalise_keeps_zero_vectors_zero() -> None:
    assert normalise([3.0, 4.0]) == pytest.approx([0.6, 0.8])
    assert normalise([0.0, 0.0]) == [0.0, 0.0]


def test_settings_choose_the_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_embedder(Settings()) is None
    remote = build_embedder(
        Settings(embedding_url="http://127.0.0.1:9/v1", embedding_model="e5", embedding_centre=False)
    )
    assert isinstance(remote, HTTPEmbedder) and remote.name == "e5"
    with pytest.raises(ConfigError, match="--embedding-model"):
        build_embedder(Settings(embedding_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigError, match="not found"):
        build_embedder(Settings(embedding_model="/nonexistent/model.gguf"))
    with pytest.raises(ConfigError, match="embedding-timeout"):
        Settings(embedding_timeout=0)
    env = {"CHAT_EMBEDDING_URL": "http://h/v1", "CHAT_EMBEDDING_MODEL": "m", "CHAT_EMBEDDING_API_KEY": KEY}
    settings = Settings.from_sources([], env)
    assert (settings.embedding_url, settings.embedding_model, settings.embedding_api_key) == (
        "http://h/v1",
        "m",
        KEY,
    )
    assert KEY not in repr(settings)


def test_rrf_rewards_agreement_and_rank() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["d"] == pytest.approx(1 / 63)


def test_rrf_edge_cases() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([[1, 2]]) == [(1, 1 / 61), (2, 1 / 62)]  # one ranking: its order
    assert reciprocal_rank_fusion([["x", "x", "y"]], k=0) == [("x", 1.0), ("y", 1 / 3)]  # best rank counts
    assert [i for i, _ in reciprocal_rank_fusion([["p"], ["q"]])] == ["p", "q"]  # ties: first seen
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=-1)


class TopicAndLanguage:
    """An embedder where language dominates, as in real multilingual models: [en, zh, topics...]."""

    name = "toy"
    TOPICS = (("return", "退货"), ("router", "路由器"))

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [
            normalise(
                [3.0 * (1 - chinese_share(t)), 3.0 * chinese_share(t)]
                + [float(en in t.lower() or zh in t) for en, zh in self.TOPICS]
            )
            for t in texts
        ]


def test_language_centring_lets_a_question_cross_languages() -> None:
    plain, centred = TopicAndLanguage(), LanguageCentred(TopicAndLanguage())
    docs = ["How to return an item", "路由器的指示灯"]  # an English answer, an unrelated Chinese text
    question = "退货怎么办？"
    for embedder, best in ((plain, 1), (centred, 0)):
        q = embedder.embed([question])[0]
        scores = [_dot(q, d) for d in embedder.embed(docs)]
        assert max(range(2), key=scores.__getitem__) == best
    assert all(abs(math.sqrt(_dot(v, v)) - 1) < 1e-9 for v in centred.embed(docs))
    assert centred.name == "toy+centred" and centred.embed([]) == []


def test_chinese_share() -> None:
    assert chinese_share("Returns within 30 days") == 0.0
    assert chinese_share("退货期限") == 1.0
    assert 0.3 < chinese_share("Skylink 路由器") < 0.7
    assert chinese_share("123 !?") == 0.0


def test_settings_centre_by_default() -> None:
    on = build_embedder(Settings(embedding_url="http://127.0.0.1:9/v1", embedding_model="e5"))
    off = build_embedder(
        Settings(embedding_url="http://127.0.0.1:9/v1", embedding_model="e5", embedding_centre=False)
    )
    assert isinstance(on, LanguageCentred) and isinstance(on.inner, HTTPEmbedder)
    assert isinstance(off, HTTPEmbedder)


def test_fuse_gives_a_cross_language_answer_its_second_vote() -> None:
    chinese = {"en-answer": False, "en-other": False, "zh-noise": True, "zh-near": True}.__getitem__
    # A Chinese question about an English document: full text matches Chinese noise, the
    # embeddings rank a Chinese text above the answer (language bias). Fusing the two rankings
    # leaves the answer third; the other-language ranking gives it a second vote.
    fulltext, dense = ["zh-noise"], ["zh-near", "en-answer", "en-other", "zh-noise"]
    assert [i for i, _ in reciprocal_rank_fusion([fulltext, dense])][:3] == [
        "zh-noise",
        "zh-near",
        "en-answer",
    ]
    fused = fuse(fulltext, dense, chinese, "退货要几天？", depth=3)
    assert fused[0] == ("en-answer", pytest.approx(1 / 62 + 1 / 61))
    # A same-language answer found by both rankings keeps first place.
    fused = fuse(["zh-near"], dense, chinese, "退货要几天？", depth=3)
    assert fused[0][0] == "zh-near"
    # Depth bounds every ranking; for an English question the Chinese chunks are the other language.
    fused = fuse([], dense, chinese, "How long for returns?", depth=1)
    assert [i for i, _ in fused] == ["zh-near"]


@pytest.mark.slow
def test_a_multilingual_model_crosses_languages_once_centred(e5_server: str) -> None:
    settings = Settings(
        embedding_url=e5_server, embedding_model="multilingual-e5-small-q4", embedding_timeout=SLOW
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, LanguageCentred)
    texts = [  # the English answer, and Chinese texts on other subjects from the evaluation set
        "Return window\nYou can return most items within 30 days of delivery.",
        "积分有效期\n积分自获得之日起十二个月内有效，过期自动清零。",
        "校服\n周一升旗仪式必须穿正装校服，其他时间穿运动校服。",
        "滤网更换\n滤网一般每六个月更换一次。",
    ]
    question = "收到商品后多少天内可以退货？"

    def answer_rank(model: Embedder) -> int:
        q = model.embed([question])[0]
        scores = [_dot(q, v) for v in model.embed(texts)]
        return sorted(scores, reverse=True).index(scores[0]) + 1

    plain, centred = answer_rank(embedder.inner), answer_rank(embedder)
    assert centred == 1 and plain >= centred, (plain, centred)  # plain e5 puts Chinese texts first
    embedder.close()
