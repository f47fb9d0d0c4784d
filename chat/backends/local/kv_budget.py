"""How many conversations the local model batches when ``--parallel`` is not set.

The batched context holds ``n_ctx x parallel`` KV cells, allocated at start-up, so every
conversation can reach its full window while the others do too. Eight slots let eight users who
arrive together all see a first token within a few hundred milliseconds (four slots make the last
four wait for whole replies: bench/README.md, "Several users at once"), and cost nothing per step
while they are empty; what they cost is memory. So the default is eight when eight full windows'
cells fit in ``KV_BUDGET_BYTES``, else four: the embedded SmolLM2 or a 0.5-1.5B model at 4,096
tokens gets eight, a 7B model or a long window gets four, and ``--parallel`` sets any number.
"""

from __future__ import annotations

from typing import Any

import llama_cpp

WIDE, NARROW = 8, 4  # slots when the budget allows, and otherwise
KV_BUDGET_BYTES = 1 << 30  # what eight full windows' cells may take for eight slots to be the default
KV_CELL_BYTES = 2  # F16 keys and values, llama.cpp's default cache type


def kv_bytes_per_token(llm: Any) -> int:
    """Bytes of KV cache one token takes in every layer: keys and values of each KV head."""
    model = llm._model.model  # noqa: SLF001 - the model handle llama.cpp's API needs
    n_head = max(1, llama_cpp.llama_model_n_head(model))
    arch = llm.metadata.get("general.architecture", "")
    key = int(llm.metadata.get(f"{arch}.attention.key_length", llama_cpp.llama_model_n_embd(model) // n_head))
    value = int(llm.metadata.get(f"{arch}.attention.value_length", key))
    layers = llama_cpp.llama_model_n_layer(model)
    return layers * llama_cpp.llama_model_n_head_kv(model) * (key + value) * KV_CELL_BYTES


def default_parallel(bytes_per_token: int, n_ctx: int) -> int:
    """Eight slots when eight windows of ``n_ctx`` tokens fit in the budget, else four."""
    return WIDE if WIDE * n_ctx * bytes_per_token <= KV_BUDGET_BYTES else NARROW
