"""Backends: where text is generated. ``registry`` names them, ``base`` is the contract, ``local``
runs a GGUF model in this process and ``openai_compat`` calls any OpenAI-compatible server."""
