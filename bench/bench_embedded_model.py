"""The embedded model as shipped (Q4_1) against its copies as Q8_0, F16, BF16 and Q4_0
(chat.backends.local.requantize): prompt and reply speed on this CPU, for one reply and for four
at once, how often greedy replies stay the same, and perplexity.

Each configuration is llama-cpp-python's own ``Llama`` on the file; the rounds alternate between
them, and every figure is the median over rounds. Prompts evaluate from an empty cache. "4 at
once" is four sequences decoded together, one ``llama_decode`` per step over their next tokens
in a context of four sequences (as the app's scheduler does), sampling left out. Prints a
Markdown table.

    python bench/bench_embedded_model.py [--rounds 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llama_cpp import Llama  # noqa: E402

from chat.backends.local.model_files import embedded_model_path  # noqa: E402
from chat.backends.local.requantize import copy_type, cpu_copy  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "How do I return an item I bought online?",
    "Give me three tips for studying.",
    "请介绍一下你自己。",
    "Why is the sky blue?",
    "Write a short email asking for a refund.",
    "北京是哪个国家的首都？",
]
LONG_TURNS = 12  # a conversation of about 1,000 prompt tokens
REPLY_TOKENS = 48


def long_conversation() -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a helpful shop assistant."}]
    for i in range(LONG_TURNS):
        messages.append({"role": "user", "content": f"Question {i}: {QUESTIONS[i % len(QUESTIONS)]}"})
        messages.append({"role": "assistant", "content": "Here is a careful answer. " * 6})
    messages.append({"role": "user", "content": "Thank you. One more: how long does shipping take?"})
    return messages


def measure(path: Path, threads: int) -> tuple[float, float, float, float, list[str], int]:
    """(prompt tokens/s of the long conversation, reply tokens/s after it, reply tokens/s of a
    new chat's turn, tokens/s of four sequences at once, greedy replies to QUESTIONS, the
    prompt's tokens)."""
    llm = Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    try:
        prompt = llm.tokenize(_render(llm, long_conversation()), special=True)
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prompt_speed = len(prompt) / (time.perf_counter() - start)
        start = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=REPLY_TOKENS, temperature=0)
        long_reply = out["usage"]["completion_tokens"] / (time.perf_counter() - start)
        replies, tokens, seconds = [], 0, 0.0
        for question in QUESTIONS:
            llm.reset()
            start = time.perf_counter()
            out = llm.create_chat_completion(
                [{"role": "user", "content": question}], temperature=0, max_tokens=REPLY_TOKENS
            )
            seconds += time.perf_counter() - start
            tokens += out["usage"]["completion_tokens"]
            replies.append(out["choices"][0]["message"]["content"])
        together = four_at_once(llm, prompt[:48])
        return prompt_speed, long_reply, tokens / seconds, together, replies, len(prompt)
    finally:
        llm.close()


def perplexity(path: Path) -> tuple[float, float]:
    """Perplexity of the model on the README's first 1,024 tokens (English) and on the shop
    messages of the guard's examples (Chinese): how much a copy's numbers moved the model."""
    import math

    import numpy as np

    english = (ROOT / "README.md").read_text(encoding="utf-8")[:6000]
    chinese = (ROOT / "prompts/filters/examples/shop_support.benign.txt").read_text(encoding="utf-8")
    llm = Llama(str(path), n_ctx=2048, n_threads=os.cpu_count() or 1, logits_all=True, verbose=False)
    try:
        out = []
        for text in (english, "".join(ch for ch in chinese if ord(ch) > 0x2E80 or ch in "，。？！\n")[:3000]):
            tokens = llm.tokenize(text.encode())[:1024]
            llm.reset()
            llm.eval(tokens)
            logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            nll = -log_probs[np.arange(len(tokens) - 1), tokens[1:]].mean()
            out.append(math.exp(nll))
        return out[0], out[1]
    finally:
        llm.close()


def four_at_once(llm: Llama, prompt: list[int], steps: int = 48) -> float:
    """Tokens/s of four sequences decoded together after a 48-token prompt each."""
    import llama_cpp

    params = type(llm.context_params).from_buffer_copy(llm.context_params)
    params.n_ctx, params.n_seq_max, params.kv_unified = 2048 * 4, 4, True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)  # noqa: SLF001
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    try:

        def decode(tokens: list[tuple[int, int, int]]) -> None:  # (sequence, position, token)
            for n, (seq, pos, token) in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
                batch.seq_id[n][0], batch.logits[n] = seq, True
            batch.n_tokens = len(tokens)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")

        decode([(seq, pos, token) for seq in range(4) for pos, token in enumerate(prompt)])
        start = time.perf_counter()
        for step in range(steps):
            decode([(seq, len(prompt) + step, prompt[step % len(prompt)]) for seq in range(4)])
        return 4 * steps / (time.perf_counter() - start)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def _render(llm: Llama, messages: list[dict[str, str]]) -> bytes:
    """The conversation through the GGUF's own chat template, as the app renders it."""
    from chat.backends.local.backend import _template_formatter

    return _template_formatter(llm)(messages=messages).prompt.encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    shipped = embedded_model_path()
    folder = Path(tempfile.mkdtemp(prefix="bench-copies-"))
    configs = [("Q4_1 as shipped", shipped)]
    for kind in ("Q8_0", "F16", "BF16", "Q4_0"):  # Q4_0: a 4-bit type with repacked kernels on x86
        mark = " (the app on this CPU)" if kind == copy_type() else ""
        configs.append((f"{kind} copy{mark}", cpu_copy(shipped, folder / kind, kind)))
    rows = []
    for threads in args.threads:
        results: dict[str, list[tuple[float, float, float, float, list[str], int]]] = {
            name: [] for name, _ in configs
        }
        for _ in range(args.rounds):
            for name, path in configs:
                results[name].append(measure(path, threads))
        baseline = results[configs[0][0]][0][4]
        prompt_tokens = results[configs[0][0]][0][5]
        for name, path in configs:
            runs = results[name]
            same = sum(a == b for a, b in zip(runs[0][4], baseline, strict=True))
            rows.append(
                (
                    name,
                    threads,
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                    statistics.median(r[2] for r in runs),
                    statistics.median(r[3] for r in runs),
                    same,
                    perplexity(path),
                )
            )
    print(
        f"SmolLM2-135M-Instruct, {os.cpu_count()} cores, median of {args.rounds} rounds; prompt: a "
        f"{LONG_TURNS}-turn conversation ({prompt_tokens} tokens) from an empty cache; replies {REPLY_TOKENS} tokens, greedy\n"
    )
    print(
        "| model file | threads | prompt tok/s | reply tok/s after it | new chat reply tok/s "
        "| 4 at once, tok/s in all | greedy replies as Q4_1's | perplexity en / zh |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, threads, prompt, after, fresh, together, same, (en, zh) in rows:
        print(
            f"| {name} | {threads} | {prompt:.0f} | {after:.0f} | {fresh:.0f} | {together:.0f} "
            f"| {same}/{len(QUESTIONS)} | {en:.1f} / {zh:.1f} |"
        )


if __name__ == "__main__":
    main()
