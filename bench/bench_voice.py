"""What voice costs on this machine: real-time factors of transcription and synthesis, and
what voice adds to a turn.

The speech is espeak-ng's (the app's own synthesiser), so the run needs nothing from outside:
about 10 s of English and of Mandarin, transcribed by the embedded Whisper base (int8, 2 CPU
threads) with greedy decoding (the app's choice) and with beam 5. Real-time factor = seconds
of work / seconds of audio (under 1: faster than real time); CPU seconds (all threads) hold
on a busy machine where wall seconds do not. Words right: the share of the
spoken words found in the transcript (English; Mandarin: the share of the characters).

    python bench/bench_voice.py [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat.voice.audio import RATE, decode  # noqa: E402
from chat.voice.desk import Voice  # noqa: E402
from chat.voice.espeak import Espeak  # noqa: E402
from chat.voice.whisper import LocalWhisper  # noqa: E402

ENGLISH = (
    "Good morning. I would like to book a table for four people on Friday evening at seven. "
    "One of us needs a vegetarian meal, and we would prefer a quiet corner near the window."
)
CHINESE = "我想喝一杯咖啡。明天下午三点我们在学校门口见面。这本书的价格是多少？请给我一张发票。"
QUESTION = "What time does the shop open on Sunday?"
REPLY = (
    "The shop opens at ten in the morning on Sunday and closes at six in the evening. "
    "On public holidays it opens an hour later. You can also order online at any time, "
    "and orders placed before noon are delivered the same day within the city."
)


def words_right(said: str, heard: str, chinese: bool) -> float:
    if chinese:
        wanted = [c for c in said if "\u4e00" <= c <= "\u9fff"]
        return sum(c in heard for c in wanted) / len(wanted)
    wanted = re.findall(r"[a-z]+", said.lower())
    got = set(re.findall(r"[a-z]+", heard.lower()))
    return sum(w in got for w in wanted) / len(wanted)


CPU: list[float] = []  # CPU seconds of the last timed() (all threads), read beside the wall time


def timed(fn, runs: int) -> tuple[float, object]:
    """Median wall seconds of ``fn`` and its last result; the median CPU seconds go to ``CPU``."""
    times, cpus, result = [], [], None
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    CPU[:] = [statistics.median(cpus)]
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    speaker = Espeak()
    greedy = LocalWhisper(threads=args.threads)
    start = time.perf_counter()
    greedy.load()
    load = time.perf_counter() - start
    beam = LocalWhisper(threads=args.threads, beam_size=5)  # the same loaded weights
    voice = Voice(greedy, speaker)

    print(
        f"Whisper base (embedded, int8, {args.threads} threads), load: {load:.2f} s; median of {args.runs} runs\n"
    )
    print("| what | audio s | work s | CPU s | real-time factor | words right |")
    print("|---|---|---|---|---|---|")
    for label, text, lang in (("English", ENGLISH, "en"), ("Mandarin", CHINESE, "zh")):
        wav = voice.say(text).audio
        audio_s = decode(wav, "x.wav", 300).seconds
        synth, _ = timed(partial(speaker.pcm, text, language=lang), args.runs)
        print(
            f"| synthesis, espeak-ng, {label} | {audio_s:.1f} | {synth:.3f} | {CPU[0]:.3f} | {synth / audio_s:.4f} | |"
        )
        for name, model in (("greedy (app)", greedy), ("beam 5", beam)):
            voice.transcriber = model
            work, heard = timed(partial(voice.hear, wav, "x.wav", lang), args.runs)
            right = words_right(text, heard.text, lang == "zh")
            row = f"| transcription, {name}, {label} | {audio_s:.1f} | {work:.2f} | {CPU[0]:.2f} | {work / audio_s:.2f} | {right:.0%} |"
            print(row)
    voice.transcriber = greedy
    for fmt in ("wav", "mp3", "opus"):
        work, speech = timed(partial(voice.say, REPLY, response_format=fmt), args.runs)
        print(
            f"| reply of {len(REPLY)} chars to {fmt} ({len(speech.audio) // 1024} KiB) | | {work:.3f} | {CPU[0]:.3f} | | |"
        )

    question = voice.say(QUESTION).audio
    hear, _ = timed(lambda: voice.hear(question, "q.wav", "en"), args.runs)
    say, _ = timed(lambda: voice.say(REPLY, response_format="mp3"), args.runs)
    spoken = decode(question, "q.wav", 300).seconds
    print(f"\nWhat voice adds to a turn: {hear:.2f} s to transcribe a {spoken:.1f} s question, ")
    print(f"{say:.3f} s to synthesise a {len(REPLY)}-character reply as MP3 (before the first sound).")
    print(f"(samples at {RATE} Hz; {os.cpu_count()} CPUs seen)")


if __name__ == "__main__":
    main()
