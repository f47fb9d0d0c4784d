"""Voice on the page: ``assets/voice.js`` run on page load with its labels and what the server
offers (speech to text; speech from the server, the browser, or none).

The script adds a microphone to the message box (the words land in the box for editing, or are
sent at once when the user asks), a speaker button to each reply and two settings kept in the
browser. It calls the server's ``/v1/audio/*`` routes (chat.service.audio_routes), so a recording
goes through the same door, limits and checks as any client's, and Gradio never stores it.
"""

from __future__ import annotations

import json

import gradio as gr

from chat.i18n import t
from chat.ui.assets import FOLDER
from chat.voice import Voice

LABELS = ("mic", "mic_stop", "listening", "transcribing", "read", "settings", "send_now", "read_all")
LABELS += ("mic_denied", "no_mic", "no_voice", "failed")


def page_config(voice: Voice) -> dict[str, object]:
    return {"stt": voice.transcriber is not None, "tts": voice.page_speech, "maxSeconds": voice.max_seconds}


def voice_script(voice: Voice) -> str:
    labels = {lang: {name: t(f"voice.page.{name}", lang) for name in LABELS} for lang in ("en", "zh")}
    script = (FOLDER / "voice.js").read_text(encoding="utf-8")
    css = (FOLDER / "voice.css").read_text(encoding="utf-8")
    arguments = ", ".join(json.dumps(x, ensure_ascii=False) for x in (labels, page_config(voice), css))
    return f"() => (\n{script}\n)({arguments})"


def attach_voice(demo: gr.Blocks, voice: Voice | None) -> None:
    """Run the voice script on page load (nothing when voice is off both ways); inside ``with demo:``."""
    if voice is None:
        return
    config = page_config(voice)
    if not config["stt"] and config["tts"] == "off":
        return
    demo.load(None, None, None, js=voice_script(voice), queue=False, api_visibility="private")
