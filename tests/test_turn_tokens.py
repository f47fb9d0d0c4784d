"""Later turns evaluate exactly the tokens they add, counted turn by turn on the real model.

Issue 10's benchmark saw turn 20 take up to 1.9x as long as turn 1 at temperature 0. Counting
per turn showed that the prompt cache was not the cause: a greedy reply cut at the token limit
re-tokenizes to the tokens it was generated as, so the next turn evaluates only what the
template and the new message add (the rest is the benchmark's turn 1 and attention's cost per
position; see bench/bench_turns.py). This pins that down, tighter than test_prompt_cache.py's
bound: a turn evaluates the tokens its prompt adds to the previous prompt and reply, plus
the previous reply's last token when it was cut at the limit (llama-cpp-python samples that
token but never decodes it). Counts only, never wall time.
"""

from __future__ import annotations

import pytest
from test_prompt_cache import backend, prompt_evals  # noqa: F401 - the same fixture and counter

from chat import ChatEngine, GenerationParams, Message
from chat.backends.local.backend import LlamaCppBackend

TURNS = 7
REPLY_TOKENS = 12  # greedy SmolLM2 answers at more length: replies are cut at the limit
SYSTEM = "You are a helpful assistant. Answer briefly."  # one system prompt for every user, as in the app
QUESTIONS = {
    "en": "Message {turn}: tell me one fact about the number {number}.",
    "zh": "第{turn}个问题：请介绍一下数字{number}的一个事实。",  # multi-byte text cut mid-reply
}


@pytest.mark.parametrize("languages", [("en",), ("en", "zh")], ids=["one", "two-interleaved"])
def test_each_later_turn_evaluates_only_its_new_tokens(
    backend: LlamaCppBackend,  # noqa: F811 - the fixture imported above
    languages: tuple[str, ...],
) -> None:
    engine = ChatEngine({"local": backend})
    params = GenerationParams(temperature=0.0, max_new_tokens=REPLY_TOKENS)
    histories = {lang: [Message("system", SYSTEM)] for lang in languages}
    previous: dict[str, tuple[int, int, str]] = {}  # prompt tokens, reply tokens, finish reason
    cut = 0
    for turn in range(1, TURNS + 1):
        for lang, messages in histories.items():
            text = QUESTIONS[lang].format(turn=turn, number=turn * 7 + len(lang))
            messages.append(Message("user", text))
            with prompt_evals(backend) as decoded:
                done = engine.reply(messages, params, use_cache=False)
            messages.append(Message("assistant", done.text))
            stats = done.stats
            assert stats.evaluated_prompt_tokens == decoded[0]  # llama.cpp's own count
            if lang in previous:
                prompt, reply, reason = previous[lang]
                new = stats.prompt_tokens - prompt - reply
                unevaluated_last = 1 if reason == "length" else 0
                assert stats.evaluated_prompt_tokens == new + unevaluated_last, (lang, turn)
            previous[lang] = (stats.prompt_tokens, stats.completion_tokens, stats.finish_reason)
            cut += stats.finish_reason == "length"
    assert cut >= TURNS * len(languages) // 2  # the case that matters was exercised
    if len(languages) > 1:
        assert len(backend.prompt_cache) >= 1  # the other conversation waited in the cache
