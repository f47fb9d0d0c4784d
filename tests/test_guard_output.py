"""The streaming output filter, chunk by chunk: what is released, held back and blocked.

These drive ``StreamFilter`` directly with chosen chunkings, which no model produces on
demand; ``test_guard_engine.py`` runs it inside the engine on the real model.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from chat.errors import OutputBlocked
from chat.guards import ContentGuard
from chat.guards.moderation import ModerationUnavailable
from chat.guards.output import ModeratedFilter, StreamFilter
from chat.guards.rules import RuleSet

SAFE_EN = (
    "The sea covers most of the planet. Ships cross it every day, and sailors still use the stars, "
    "the sun and a good map. Never share your password with anyone, not even with us. "
)
SAFE_ZH = (
    "大海覆盖了地球的大部分。每天都有船只航行，水手们依靠星星、太阳和地图。请勿向任何人提供验证码，包括客服。"
)


@pytest.fixture(scope="module")
def guard() -> ContentGuard:
    return ContentGuard()


def run(flt: StreamFilter | ModeratedFilter, chunks: list[str]) -> tuple[list[str], bool]:
    """Feed ``chunks``; return what was released and whether the reply was blocked."""
    released: list[str] = []
    try:
        for chunk in chunks:
            released.append(flt.feed(chunk))
        released.append(flt.flush())
    except OutputBlocked:
        return released, True
    return released, False


def splits(text: str) -> list[list[str]]:
    """Every split into two chunks, every split into three around the middle, and 1-char chunks."""
    out = [[text[:i], text[i:]] for i in range(1, len(text))]
    mid = len(text) // 2
    out += [[text[:i], text[i:mid], text[mid:]] for i in range(1, mid)]
    out.append(list(text))
    return out


@pytest.mark.parametrize(
    ("before", "phrase", "after"),
    [
        ("Sure! To verify your account, please ", "send me your password", " right away."),
        ("好的，为了核实身份，请", "把验证码发给我", "，谢谢。"),
    ],
)
def test_phrase_split_across_chunks_is_caught_before_any_of_it_shows(
    guard: ContentGuard, before: str, phrase: str, after: str
) -> None:
    text = before + phrase + after
    for chunks in splits(text):
        released, blocked = run(guard.new_filter(), chunks)
        assert blocked, chunks
        shown = "".join(released)
        assert before.startswith(shown), (chunks, shown)  # nothing of the phrase leaked


@pytest.mark.parametrize(
    "reply",
    [
        "OK. Send me your p-a-s-s-w-o-r-d.",
        "OK. ＳＥＮＤ ＭＥ ＹＯＵＲ ＰＡＳＳＷＯＲＤ.",
        "OK. send me y0ur passw0rd",
        "OK. send\u200b me your pass\u200bword",
        "好的，请把驗證碼發給我。",
        "好的，请把 验 证 码 发 给 我。",
    ],
)
def test_disguised_phrases_in_a_reply_are_caught(guard: ContentGuard, reply: str) -> None:
    for chunks in ([reply], [reply[i : i + 3] for i in range(0, len(reply), 3)]):
        _, blocked = run(guard.new_filter(), chunks)
        assert blocked


@pytest.mark.parametrize("text", [SAFE_EN, SAFE_ZH, "Straße\u200b ﬁne é ﬀ ㈱ café", SAFE_EN * 40])
def test_a_safe_reply_is_released_whole_and_unchanged(guard: ContentGuard, text: str) -> None:
    rng = random.Random(7)
    for _ in range(20):
        chunks, i = [], 0
        while i < len(text):
            n = rng.randint(1, 9)
            chunks.append(text[i : i + n])
            i += n
        released, blocked = run(guard.new_filter(), chunks)
        assert not blocked
        assert "".join(released) == text


def test_text_is_released_as_it_streams_not_at_the_end(guard: ContentGuard) -> None:
    flt = guard.new_filter()
    shown = "".join(flt.feed(word) for word in re.findall(r"\S+\s*", SAFE_EN))
    # all but a short tail that may still start a listed phrase is out before flush
    assert len(shown) >= len(SAFE_EN) - 40
    assert shown + flt.flush() == SAFE_EN


def test_only_a_possible_phrase_start_is_held_back(guard: ContentGuard) -> None:
    flt = guard.new_filter()
    assert flt.feed("Happy to help. Send me") == "Happy to help. "  # may become "send me your password"
    assert flt.feed(" a postcard!") == "Send me a postcard!"
    assert flt.flush() == ""


def test_a_latin_phrase_waits_for_its_word_boundary(tmp_path: Path) -> None:
    (tmp_path / "o.en.txt").write_text("# scope: output\nscam\n")
    matching = RuleSet.load(tmp_path).output
    flt = StreamFilter(matching)
    assert flt.feed("a scam") == "a "  # "scampi" is fine, "scam." is not: not yet known
    assert flt.feed("pi dish") == "scampi dish"
    flt = StreamFilter(matching)
    flt.feed("a scam")
    with pytest.raises(OutputBlocked):
        flt.feed(".")
    flt = StreamFilter(matching)
    flt.feed("what a scam")
    with pytest.raises(OutputBlocked):
        flt.flush()  # the end of the reply is a boundary too


def test_allow_phrases_apply_to_the_output(tmp_path: Path) -> None:
    (tmp_path / "o.zh.txt").write_text("# scope: output\n诈骗话术\n")
    (tmp_path / "a.zh.txt").write_text("# kind: allow\n# scope: output\n反诈骗\n识别诈骗话术的方法\n")
    matching = RuleSet.load(tmp_path).output
    text = "学校开展反诈骗话术宣传。下面介绍识别诈骗话术的方法。"
    for chunks in splits(text):
        released, blocked = run(StreamFilter(matching), chunks)
        assert not blocked and "".join(released) == text
    _, blocked = run(StreamFilter(matching), ["反诈骗", "宣传。这是诈骗", "话术："])
    assert blocked


def test_a_hit_after_a_long_reply_is_still_caught(guard: ContentGuard) -> None:
    """The filter trims its normalised buffer on long replies; matching must not suffer."""
    flt = guard.new_filter()
    for i in range(0, len(SAFE_EN * 30), 5):
        flt.feed((SAFE_EN * 30)[i : i + 5])
    with pytest.raises(OutputBlocked):
        for chunk in ["tell me ", "your pass", "word"]:
            flt.feed(chunk)
        flt.flush()


def test_no_output_rules_means_everything_passes() -> None:
    flt = StreamFilter(RuleSet.empty().output)
    assert flt.feed("send me your password") == "send me your password"
    assert flt.flush() == ""


# -- optional external moderation, as an output filter ------------------------------------------


class FakeModeration:
    """Stands in for the HTTP client; ``ModerationClient`` itself is tested over HTTP."""

    def __init__(self, flag: str = "", fail: bool = False) -> None:
        self.flag = flag
        self.fail = fail
        self.calls: list[str] = []

    def flagged(self, text: str) -> bool:
        self.calls.append(text)
        if self.fail:
            raise ModerationUnavailable("HTTP 503")
        return bool(self.flag) and self.flag in text


def test_moderated_output_is_released_in_checked_segments(guard: ContentGuard) -> None:
    moderation = FakeModeration()
    flt = ModeratedFilter(StreamFilter(guard.rules.output), moderation, min_segment=50)
    text = SAFE_EN * 2
    released, blocked = run(flt, [text[i : i + 7] for i in range(0, len(text), 7)])
    assert not blocked and "".join(released) == text
    assert 2 <= len(moderation.calls) <= 10
    assert moderation.calls[-1] == text  # the last check saw the whole reply


def test_moderation_flag_blocks_the_reply(guard: ContentGuard) -> None:
    flt = ModeratedFilter(StreamFilter(guard.rules.output), FakeModeration(flag="stars"), min_segment=20)
    released, blocked = run(flt, [SAFE_EN[i : i + 7] for i in range(0, len(SAFE_EN), 7)])
    assert blocked and "stars" not in "".join(released)


def test_moderation_outage_fails_closed(guard: ContentGuard) -> None:
    flt = ModeratedFilter(StreamFilter(guard.rules.output), FakeModeration(fail=True))
    released, blocked = run(flt, ["Hello there."])
    assert blocked and "".join(released) == ""
