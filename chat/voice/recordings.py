"""Recordings kept on the operator's request (``--voice-recordings FOLDER``); off by default.

Each kept recording is the upload as sent and a JSON file beside it with its transcript, in a
folder per UTC day, under a random name: nothing links it to the person or the conversation.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from chat.voice.audio import Clip
from chat.voice.base import Transcript

_EXTENSION = re.compile(r"^\.[a-z0-9]{1,5}$")


class Recordings:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    def keep(self, clip: Clip, transcript: Transcript) -> Path:
        """Write the upload and its transcript; the upload's path."""
        day = self.folder / time.strftime("%Y-%m-%d", time.gmtime())
        day.mkdir(parents=True, exist_ok=True)
        suffix = Path(clip.filename).suffix.lower()
        name = uuid.uuid4().hex
        audio = day / (name + (suffix if _EXTENSION.match(suffix) else ".audio"))
        audio.write_bytes(clip.data)
        record = {"audio": audio.name, "time": int(time.time()), **asdict(transcript)}
        (day / f"{name}.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        return audio
