"""All settings in one frozen object, read once from command-line flags and environment variables.

Each option has a flag and an environment variable (flags win), so a Hugging Face Space is
configured without code. ``chat/`` never reads the environment itself: ``app.py`` builds a
``Settings`` and passes it down. The API key is read from the environment only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chat.options import comma_list, flag_bool, option, options_table, read_sources, validate

FEEDBACK_LOG_MAX_BYTES = 10 * 1024 * 1024  # the default of --feedback-log-max-bytes
FEEDBACK_LOG_BACKUPS = 3  # rotated files kept beside the feedback log
REPLY_LEASE_SECONDS = 15.0  # the default of --reply-lease (chat.store.leases)


@dataclass(frozen=True, kw_only=True)
class Settings:
    # model (local backend)
    model: str = option(
        "CHAT_MODEL",
        "GGUF path, or Hub reference org/repo:file-or-glob.gguf (default: embedded SmolLM2-135M)",
        default="",
    )
    n_ctx: int = option(
        "CHAT_N_CTX",
        "context window of each conversation on the local model, in tokens",
        parse=int,
        default=4096,
    )
    parallel: int | None = option(
        "CHAT_PARALLEL",
        "conversations the local model decodes at once, batched (1: one at a time; KV memory grows "
        "with it; default: 8 when eight full windows' KV cells take at most 1 GiB, else 4)",
        parse=int,
        default=None,
    )
    n_gpu_layers: int | None = option(
        "CHAT_N_GPU_LAYERS",
        "layers to offload to the GPU (-1 all; default: all if llama.cpp has GPU support, else 0)",
        parse=int,
        default=None,
    )
    threads: int | None = option(
        "CHAT_THREADS",
        "CPU threads of the local model, for the prompt and the reply (default: llama.cpp's choice)",
        parse=int,
        default=None,
    )
    prompt_cache_bytes: int = option(
        "CHAT_PROMPT_CACHE_BYTES",
        "memory for saved conversation prompts of the local model, in bytes (least recently used go first)",
        parse=int,
        default=512 * 1024 * 1024,
    )
    reproducible: bool = option(
        "CHAT_REPRODUCIBLE",
        "at temperature 0, evaluate every prompt from an empty cache, alone: identical replies, slower turns",
        parse=flag_bool,
        default=False,
    )
    # backends
    backend: str = option(
        "CHAT_BACKEND",
        "primary backend: local or cloud",
        default="local",
    )
    fallback: tuple[str, ...] = option(
        "CHAT_FALLBACK", "backends to try next, in order, e.g. cloud,local", parse=comma_list, default=()
    )
    api_base_url: str = option(
        "OPENAI_BASE_URL", "base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1", default=""
    )
    api_model: str = option("OPENAI_MODEL", "model name for the cloud backend", default="")
    api_key: str = option(
        "OPENAI_API_KEY",
        "API key for the cloud backend (environment only, never a flag)",
        flag=False,
        default="",
        repr=False,
    )
    connect_timeout: float = option(
        "CHAT_CONNECT_TIMEOUT", "seconds to connect to the cloud API", parse=float, default=5.0
    )
    read_timeout: float = option(
        "CHAT_READ_TIMEOUT",
        "seconds to wait for the first byte and between chunks",
        parse=float,
        default=30.0,
    )
    total_timeout: float = option(
        "CHAT_TOTAL_TIMEOUT",
        "seconds a whole request may take, retries and fallbacks included",
        parse=float,
        default=120.0,
    )
    max_attempts: int = option(
        "CHAT_MAX_ATTEMPTS", "attempts per backend before falling back", parse=int, default=3
    )
    # guards
    cache: bool = option("CHAT_CACHE", "response cache on/off", parse=flag_bool, default=True)
    cache_max_entries: int = option(
        "CHAT_CACHE_MAX_ENTRIES", "replies the cache keeps at most", parse=int, default=1024
    )
    cache_max_bytes: int = option(
        "CHAT_CACHE_MAX_BYTES", "total size of cached replies, in bytes", parse=int, default=16 * 1024 * 1024
    )
    cache_ttl: float = option(
        "CHAT_CACHE_TTL", "seconds a cached reply may be served", parse=float, default=3600.0
    )
    filters_dir: str = option(
        "CHAT_FILTERS_DIR",
        "directory of content filter rules (default: the shipped prompts/filters)",
        default="",
    )
    max_message_chars: int = option(
        "CHAT_MAX_MESSAGE_CHARS", "longest message a user may send, in characters", parse=int, default=2000
    )
    max_turns: int = option(
        "CHAT_MAX_TURNS", "user messages one conversation may have", parse=int, default=50
    )
    moderation_url: str = option(
        "CHAT_MODERATION_URL",
        "OpenAI-compatible moderation API base URL; on when set, refuses when unreachable",
        default="",
    )
    moderation_model: str = option(
        "CHAT_MODERATION_MODEL", "model for the moderation API (default: the service's)", default=""
    )
    moderation_api_key: str = option(
        "CHAT_MODERATION_API_KEY",
        "API key for the moderation API (environment only; default: OPENAI_API_KEY)",
        flag=False,
        default="",
        repr=False,
    )
    guard_model: str = option(
        "CHAT_GUARD_MODEL",
        "guard model that also checks input and output: GGUF path or Hub reference run in-process "
        "(e.g. a Qwen3Guard-Gen GGUF), or with --guard-url the model name there; off when empty",
        default="",
    )
    guard_url: str = option(
        "CHAT_GUARD_URL",
        "OpenAI-compatible chat API base URL whose model classifies input and output as safe/unsafe",
        default="",
    )
    guard_timeout: float = option(
        "CHAT_GUARD_TIMEOUT",
        "seconds the guard model may take per check; over it the message is refused (fails closed)",
        parse=float,
        default=10.0,
    )
    guard_api_key: str = option(
        "CHAT_GUARD_API_KEY",
        "API key for --guard-url (environment only)",
        flag=False,
        default="",
        repr=False,
    )
    guard_semantic: bool = option(
        "CHAT_GUARD_SEMANTIC",
        "the semantic guard layer: a sentence encoder and a classifier trained from the examples in "
        "the filters directory's examples/ folder stop the requests the rules miss; it adds 4-14 ms "
        "to each message on two idle cores, about 2 s to start-up and 220 MB of memory (docs/guard.md)",
        parse=flag_bool,
        default=True,
    )
    # knowledge base embeddings (off by default: full-text search alone needs no model)
    embedding_url: str = option(
        "CHAT_EMBEDDING_URL",
        "OpenAI-compatible embeddings API base URL (e.g. http://127.0.0.1:8001/v1) for knowledge search",
        default="",
    )
    embedding_model: str = option(
        "CHAT_EMBEDDING_MODEL",
        "embedding model: with --embedding-url its name there, else a GGUF path or Hub reference run here",
        default="",
    )
    embedding_api_key: str = option(
        "CHAT_EMBEDDING_API_KEY",
        "API key for --embedding-url (environment only)",
        flag=False,
        default="",
        repr=False,
    )
    embedding_timeout: float = option(
        "CHAT_EMBEDDING_TIMEOUT",
        "seconds one embedding call (a query, or a document's chunks) may take",
        parse=float,
        default=30.0,
    )
    embedding_centre: bool = option(
        "CHAT_EMBEDDING_CENTRE",
        "subtract each language's mean vector (en, zh) so questions find documents in the other language",
        parse=flag_bool,
        default=True,
    )
    # voice (chat/voice, docs/voice.md)
    stt: str = option(
        "CHAT_STT", "speech to text: local, off, or an OpenAI-compatible base URL", default="local"
    )
    stt_model: str = option(
        "CHAT_STT_MODEL",
        "local: a CTranslate2 Whisper folder or Hub name (default: the embedded Whisper base); URL: its model",
        default="",
    )
    stt_api_key: str = option(
        "CHAT_STT_API_KEY", "API key for --stt's URL", flag=False, default="", repr=False
    )
    tts: str = option(
        "CHAT_TTS",
        "text to speech: espeak, browser (the page's own), off, or an OpenAI-compatible URL",
        default="espeak",
    )
    tts_model: str = option(
        "CHAT_TTS_MODEL", "with a --tts URL: the model name there (default tts-1)", default=""
    )
    tts_api_key: str = option(
        "CHAT_TTS_API_KEY", "API key for --tts's URL", flag=False, default="", repr=False
    )
    max_audio_seconds: float = option(
        "CHAT_MAX_AUDIO_SECONDS", "longest recording transcribed, in seconds", parse=float, default=300.0
    )
    voice_recordings: str = option(
        "CHAT_VOICE_RECORDINGS",
        "folder that keeps each recording and its transcript (default: none kept)",
        default="",
    )
    # server
    host: str = option(
        ("CHAT_HOST", "GRADIO_SERVER_NAME"),
        "interface to listen on (0.0.0.0 for LAN/Docker)",
        default="127.0.0.1",
    )
    port: int = option(("CHAT_PORT", "GRADIO_SERVER_PORT"), "port to listen on", parse=int, default=7860)
    share: bool = option("CHAT_SHARE", "create a public gradio.live link", parse=flag_bool, default=False)
    auth: str = option(
        "CHAT_AUTH",
        "require a login, user:pass (set the variable: a flag shows in the process list)",
        default="",
        repr=False,
    )
    max_queue: int = option(
        "CHAT_MAX_QUEUE",
        "requests that may wait in the queue before new ones are refused",
        parse=int,
        default=64,
    )
    feedback_log: str = option(
        "CHAT_FEEDBACK_LOG",
        "JSON-lines file where likes and dislikes are also written (empty: off, the store keeps them)",
        default="",
    )
    feedback_log_max_bytes: int = option(
        "CHAT_FEEDBACK_LOG_MAX_BYTES",
        f"size at which the feedback log rotates, in bytes ({FEEDBACK_LOG_BACKUPS} older files are kept)",
        parse=int,
        default=FEEDBACK_LOG_MAX_BYTES,
    )
    # service routes (/api, /v1, /ws, /metrics)
    api_token: str = option(
        "CHAT_API_TOKEN",
        "bearer token the API routes require (environment only; empty: open)",
        flag=False,
        default="",
        repr=False,
    )
    redis_url: str = option(
        "CHAT_REDIS_URL",
        "redis://host:6379/0 that replicas share for one rate limit and one response cache "
        "(environment only; empty: each process its own)",
        flag=False,
        default="",
        repr=False,
    )
    rate_limit: int = option(
        "CHAT_RATE_LIMIT",
        "chat requests per minute per client, UI and APIs together (0: no limit); over it: 429",
        parse=int,
        default=0,
    )
    max_body_bytes: int = option(
        "CHAT_MAX_BODY_BYTES", "largest API request body or /ws message, in bytes", parse=int, default=1048576
    )
    max_ws_per_client: int = option(
        "CHAT_MAX_WS_PER_CLIENT", "open /ws connections one client may hold at once", parse=int, default=4
    )
    ws_idle_timeout: float = option(
        "CHAT_WS_IDLE_TIMEOUT",
        "seconds a /ws connection may stay silent (no message, no reply) before it is closed",
        parse=float,
        default=300.0,
    )
    metrics_token: str = option(
        "CHAT_METRICS_TOKEN",
        "bearer token that opens /metrics only, for a scraper (environment only)",
        flag=False,
        default="",
        repr=False,
    )
    trusted_proxies: tuple[str, ...] = option(
        "CHAT_TRUSTED_PROXIES",
        "proxy addresses/CIDRs whose X-Forwarded-For / X-Real-IP name the client (default: none)",
        parse=comma_list,
        default=(),
    )
    allowed_origins: tuple[str, ...] = option(
        "CHAT_ALLOWED_ORIGINS",
        "origins besides the app's own whose pages may open /ws, e.g. https://shop.example",
        parse=comma_list,
        default=(),
    )
    max_upload_bytes: int = option(
        "CHAT_MAX_UPLOAD_BYTES",
        "largest file the page may upload (an imported chat), in bytes",
        parse=int,
        default=10485760,
    )
    knowledge_max_bytes: int = option(
        "CHAT_KNOWLEDGE_MAX_BYTES",
        "largest document that may be added to a knowledge base, in bytes",
        parse=int,
        default=20971520,
    )
    knowledge_max_chars: int = option(
        "CHAT_KNOWLEDGE_MAX_CHARS",
        "most characters of text one document may hold",
        parse=int,
        default=4000000,
    )
    knowledge_max_chunks: int = option(
        "CHAT_KNOWLEDGE_MAX_CHUNKS", "most chunks one document may be cut into", parse=int, default=10000
    )
    knowledge_min_similarity: float = option(
        "CHAT_KNOWLEDGE_MIN_SIMILARITY",
        "with embeddings, a question whose nearest chunk is less similar gets no reference (0: always "
        "one); measured for multilingual-e5-small in bench/bench_knowledge_relevance.py",
        parse=float,
        default=0.28,
    )
    knowledge_seed: str = option(
        "CHAT_KNOWLEDGE_SEED",
        "folder of sample knowledge bases (a subfolder each, e.g. prompts/knowledge) loaded into those still empty",
        default="",
    )
    log_format: str = option("CHAT_LOG_FORMAT", "request log lines: text or json", default="text")
    log_user_text: bool = option(
        "CHAT_LOG_USER_TEXT",
        "include user messages and replies in request logs",
        parse=flag_bool,
        default=False,
    )
    # conversation store (chat/store)
    store: bool = option(
        "CHAT_STORE", "keep conversations on the server (off: nothing is kept)", parse=flag_bool, default=True
    )
    data_dir: str = option(
        "CHAT_DATA_DIR",
        "directory for the SQLite store and the embedded model's 16-bit copy "
        "(default: /data when writable, as on a Space, else ./data)",
        default="",
    )
    database_url: str = option(
        "CHAT_DATABASE_URL",
        "postgresql://user:pass@host/db to keep conversations in PostgreSQL (environment only)",
        flag=False,
        default="",
        repr=False,
    )
    retention_days: int = option(
        "CHAT_RETENTION_DAYS", "delete conversations idle for this many days (0: keep)", parse=int, default=0
    )
    reply_lease: float = option(
        "CHAT_REPLY_LEASE",
        "seconds a streaming reply's lease lasts (renewed every third of it); once it runs out, "
        "any replica marks the reply interrupted",
        parse=float,
        default=REPLY_LEASE_SECONDS,
    )
    cookie_secret: str = option(
        "CHAT_COOKIE_SECRET",
        "key that signs anonymous browsers' chat_visitor cookie; the same on every replica "
        "(environment only; default: a key kept in the database)",
        flag=False,
        default="",
        repr=False,
    )
    # tools (chat/tools, docs/tools.md)
    mcp_config: str = option(
        "CHAT_MCP_CONFIG", 'MCP servers the assistant may call: a JSON file {"mcpServers": {...}}', default=""
    )
    max_tool_rounds: int = option(
        "CHAT_MAX_TOOL_ROUNDS",
        "tool calling rounds one reply may take before it must answer",
        parse=int,
        default=4,
    )
    tool_timeout: float = option(
        "CHAT_TOOL_TIMEOUT", "seconds one tool call may take", parse=float, default=30.0
    )
    mcp_server: bool = option(
        "CHAT_MCP_SERVER",
        "serve the app as an MCP server at /gradio_api/mcp/",
        parse=flag_bool,
        default=False,
    )
    # page branding (chat/ui/branding.py); empty: neutral bilingual defaults
    title: str = option("CHAT_TITLE", "page title and header (default: Chat / 聊天)", default="")
    description: str = option(
        "CHAT_DESCRIPTION",
        "welcome text on an empty chat, Markdown (default: a bilingual greeting)",
        default="",
    )
    logo: str = option("CHAT_LOGO", "logo beside the title: an image file path or an http(s) URL", default="")
    primary_color: str = option(
        "CHAT_PRIMARY_COLOR", "primary colour: a Gradio hue name (indigo, teal...) or #rrggbb", default=""
    )
    footer: str = option("CHAT_FOOTER", "footer or disclaimer line under the chat, Markdown", default="")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def auth_pair(self) -> tuple[str, str] | None:
        if not self.auth:
            return None
        user, _, password = self.auth.partition(":")
        return user, password

    @classmethod
    def from_sources(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Flags first, then environment variables, then defaults. Bad values raise ConfigError."""
        return cls(**read_sources(cls, argv, env))


def settings_table() -> str:
    """The settings table of docs/configuration.md, generated so it cannot drift from the code."""
    return options_table(Settings)


if __name__ == "__main__":  # python -m chat.settings: the table for docs/configuration.md
    print(settings_table())
