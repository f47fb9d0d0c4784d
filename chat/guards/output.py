"""The output filter: check a streamed reply as it arrives, release only what is safe.

Text is released once it can no longer be the start of a listed phrase, so a phrase split
across chunks ("Send me your pass" + "word") is still caught before any of it is shown. The
held-back tail lives in normalised (phrase view) space and maps back to original positions, so
spacing, full-width letters or look-alikes in a reply do not hide a phrase either.
"""

from __future__ import annotations

import re

from chat.engine.protocols import OutputFilter
from chat.errors import OutputBlocked
from chat.guards.moderation import Moderation, ModerationUnavailable
from chat.guards.normalise import MULTI, PHRASE_TABLE
from chat.guards.rules import Matching


class StreamFilter:
    """One reply's ``OutputFilter`` over the output word lists (not thread-safe: one per reply)."""

    TRIM_AFTER = 256  # view characters kept before the release point beyond what matching needs

    def __init__(self, matching: Matching) -> None:
        self._matching = matching
        self._hit_search = matching.block.pattern.search
        self._hold_search = matching.block.prefix_pattern.search
        self._view = ""  # phrase view of the reply, from some point before the release point
        self._src: list[int] = []  # for each view character, the index of its original character
        self._pending = ""  # original text received but not released
        self._released = 0  # original characters released
        self._received = 0  # original characters received
        self._scan = 0  # view index of the release point: hits and holds start at or after it
        self._keep = matching.allow_window + 1  # context a lookbehind or an allow phrase needs
        self._min_len = matching.block.min_len

    def feed(self, text: str) -> str:
        if not text:
            return ""
        base = self._received
        view = text.translate(PHRASE_TABLE)
        if len(text) == 1 and len(view) == 1:
            self._src.append(base)
        elif text.isascii() or MULTI.isdisjoint(text):  # each character normalised to one
            self._src.extend(range(base, base + len(text)))
        else:
            for i, ch in enumerate(text):
                self._src.extend([base + i] * len(PHRASE_TABLE[ord(ch)]))
        scan = self._scan
        held = scan < len(self._view)
        self._view = v = self._view + view
        self._received += len(text)
        self._pending += text
        # A hit starts at or after the release point: in held text, or in this chunk if it is
        # at least as long as the shortest phrase.
        if (held or len(view) >= self._min_len) and self._hit_search(v, scan) is not None:
            return self._release(final=False)
        hold = self._hold_search(v, scan)
        return self._cut(hold.start() if hold is not None else len(v))

    def flush(self) -> str:
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        hit, undecided = self._matching.first_hit(self._view, self._scan, final=final)
        if hit is not None:
            raise OutputBlocked(
                f"output rule {hit.rule.where} ({hit.rule.category})", category=hit.rule.category
            )
        cut = len(self._view)
        if not final:
            hold = self._matching.hold_from(self._view, self._scan)
            for start in (hold, undecided):
                if start is not None and start < cut:
                    cut = start
        return self._cut(cut)

    def _cut(self, cut: int) -> str:
        """Release the original text before view index ``cut``."""
        upto = self._src[cut] if cut < len(self._view) else self._received
        n = upto - self._released
        released, self._pending = self._pending[:n], self._pending[n:]
        self._released = upto
        self._scan = cut
        if cut > self.TRIM_AFTER + self._keep:
            drop = cut - self._keep
            self._view = self._view[drop:]
            del self._src[:drop]
            self._scan -= drop
        return released


_SENTENCE_END = re.compile(r"[.!?。！？；;\n]")


class ModeratedFilter:
    """Wraps a filter: released text also waits for an external moderation check.

    Text is sent in segments (at a sentence end, once ``min_segment`` characters are waiting),
    each time with the approved reply before it for context. Any failure blocks: fail closed.
    """

    def __init__(self, inner: OutputFilter, moderation: Moderation, *, min_segment: int = 200) -> None:
        self._inner = inner
        self._moderation = moderation
        self._min_segment = min_segment
        self._approved = ""
        self._waiting = ""

    def feed(self, text: str) -> str:
        self._waiting += self._inner.feed(text)
        if len(self._waiting) < self._min_segment:
            return ""
        ends = [m.end() for m in _SENTENCE_END.finditer(self._waiting)]
        if not ends:
            return ""
        return self._approve(ends[-1])

    def flush(self) -> str:
        self._waiting += self._inner.flush()
        return self._approve(len(self._waiting)) if self._waiting else ""

    def _approve(self, upto: int) -> str:
        segment = self._waiting[:upto]
        try:
            flagged = self._moderation.flagged(self._approved + segment)
        except ModerationUnavailable as exc:
            raise OutputBlocked(f"moderation unavailable: {exc}", category="moderation") from None
        if flagged:
            raise OutputBlocked("flagged by external moderation", category="moderation")
        self._approved += segment
        self._waiting = self._waiting[upto:]
        return segment
