"""Entry point: read settings, load the model, serve the chat UI and its APIs.

python app.py                          # embedded SmolLM2, http://127.0.0.1:7860
python app.py --model org/repo:*Q4_K_M.gguf --n-ctx 8192 --share
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phone-home on an offline box

from chat import ChatError, Settings, build_engine  # noqa: E402
from chat.gradio_stubs import skip_stub_regeneration  # noqa: E402

skip_stub_regeneration()  # before Gradio's first import (chat.server): 1.3-2 s less to start


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_sources(argv)
        engine = build_engine(settings, progress=log, background=True)
    except ChatError as exc:
        log(f"error: {exc}")
        return 2

    from chat.server import Server, build_app

    try:
        server = Server(build_app(engine, settings), host=settings.host, port=settings.port)
        server.start()
    except (ChatError, OSError) as exc:  # the store's database cannot be used, or the port is taken
        log(f"error: {exc}")
        return 2
    log(f"Chat running at {server.local_url}")
    if settings.share:
        try:
            url = server.open_share_link()
            log(f"Public link: {url} (anyone with it can use this app; consider --auth)")
        except Exception as exc:  # noqa: BLE001 - the tunnel raises many kinds; all mean "no link"
            log(
                f"error: could not create the public share link ({type(exc).__name__}: no internet, "
                f"or the share server is unreachable); still serving locally at {server.local_url}"
            )
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
