"""The default local model: a Chinese-capable GGUF a Space preloaded, else the embedded SmolLM2.

A Hugging Face Space downloads the files its README front matter lists under
``preload_from_hub`` into the Hub cache while it builds. With no ``CHAT_MODEL``, the app loads
the first of ``PRELOADED`` found in that cache: SmolLM2-135M cannot hold a conversation in
Chinese, Qwen2.5 can. Anywhere nothing was preloaded (a laptop, CI, an offline box) the
embedded SmolLM2 answers as before. Only the local cache is looked at, never the network;
``chat.backends.registry`` makes the choice and says which in the start-up log.
tests/test_space_model.py keeps this list and the README's front matter in step.
"""

from __future__ import annotations

from pathlib import Path

# (repo, file), in order of preference. Qwen2.5-0.5B-Instruct at Q4_K_M: 491 MB, about 20 words a
# second on a cpu-basic Space's 2 vCPUs, and it answers in Chinese and English.
PRELOADED: tuple[tuple[str, str], ...] = (
    ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf"),
)


def preloaded_model(cache_dir: str | Path | None = None) -> Path | None:
    """The first ``PRELOADED`` file in the local Hub cache (``cache_dir``: the default one)."""
    from huggingface_hub import try_to_load_from_cache

    for repo, filename in PRELOADED:
        found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
        if isinstance(found, str):  # a path; None or a "known missing" marker otherwise
            return Path(found)
    return None
