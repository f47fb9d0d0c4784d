"""Entry point: read settings, load the model, serve the chat UI and its API.

python app.py                          # embedded SmolLM2, http://127.0.0.1:7860
python app.py --model org/repo:*Q4_K_M.gguf --n-ctx 8192 --share
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phone-home on an offline box

from chat import ChatError, Settings, build_engine  # noqa: E402
from chat.personas import load_personas  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_sources(argv)
        engine = build_engine(settings, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from chat.ui import I18N, build_ui

    max_context = min(b.context_window() or settings.n_ctx for b in engine.backends.values())
    demo = build_ui(engine, personas=load_personas(), max_context=max_context)
    demo.queue(max_size=settings.max_queue)
    _, local_url, share_url = demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        auth=settings.auth_pair,
        i18n=I18N,
        prevent_thread_lock=True,
        quiet=True,
    )
    print(f"Chat running at {local_url}", file=sys.stderr, flush=True)
    if settings.share:
        if share_url:
            print(
                f"Public link: {share_url} (anyone with it can use this app; consider --auth)",
                file=sys.stderr,
            )
        else:
            print(
                "error: could not create the public share link (no internet, or gradio.live is "
                "unreachable); still serving locally at " + local_url,
                file=sys.stderr,
                flush=True,
            )
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
