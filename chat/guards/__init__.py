"""Input and output guards the engine runs on every request, from every entry point.

``ContentGuard`` is both the engine's ``InputGuard`` (limits, word lists, regular expressions,
the semantic layer of ``chat.guards.semantic``, the optional guard model and external
moderation) and its ``OutputGuard`` (a fresh ``StreamFilter`` per reply).
Rules live in plain files (``prompts/filters/``); see ``chat.guards.rules`` for matching and
``chat.guards.normalise`` for what evasions are undone before it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cachetools import LRUCache

from chat.backends.local.model_files import resolve_model
from chat.engine.protocols import OutputFilter
from chat.errors import InputBlocked, InvalidRequest
from chat.guards.mask import SecretMask
from chat.guards.moderation import Moderation, ModerationClient, ModerationUnavailable
from chat.guards.output import ModeratedFilter, StreamFilter
from chat.guards.rules import DEFAULT_DIR, RuleSet
from chat.i18n import Lang, t
from chat.messages import Message
from chat.settings import Settings

if TYPE_CHECKING:
    from chat.guards.examples import CategoryReply
    from chat.guards.semantic import SemanticGuard

log = logging.getLogger(__name__)

# Defaults that fit the embedded model's 4096-token window with 512 reserved for the reply:
# 2,000 Chinese characters are ~3,400 SmolLM2 tokens (English runs ~0.2 tokens a character).
DEFAULT_MAX_MESSAGE_CHARS = 2000
DEFAULT_MAX_TURNS = 50
DEFAULT_MEMO_SIZE = 4096  # passed (role, content) verdicts kept: ~100 bytes each
CHECKED_ROLES = ("system", "user", "assistant")  # a client can send any assistant text


class MessageTooLong(InvalidRequest):
    key = "error.message_too_long"


class TooManyTurns(InvalidRequest):
    key = "error.too_many_turns"


class ContentBlocked(InputBlocked):
    """A rule refused a message; ``key`` is the rule file's refusal (see ``chat.i18n``).

    ``position`` counts the conversation's user and assistant messages from 1 (0: the system
    prompt; None: the newest message). When it is not the newest, the user is told which one,
    since an imported or client-built conversation can carry an old refused line.
    """

    def __init__(
        self,
        detail: str,
        *,
        key: str = InputBlocked.key,
        position: int | None = None,
        total: int = 0,
        category: str = "",
    ) -> None:
        super().__init__(detail, category=category)  # counted by category on the operator page
        self.key = key
        self.position = position
        self.total = total

    def refusal(self, lang: Lang = "en") -> str:
        """The refusal itself; a layer with its own replies (``chat.guards.semantic``) overrides it."""
        return super().user_message(lang)

    def user_message(self, lang: Lang = "en") -> str:
        reason = self.refusal(lang)
        if self.position is None:
            return reason
        if self.position == 0:
            return f"{t('error.refused_system', lang)} {reason}"
        return f"{t('error.refused_earlier', lang, n=self.position, total=self.total)} {reason}"


class CategoryRefusal(ContentBlocked):
    """A refusal in its category's own words (``examples/guard.toml``): the semantic layer's, or a
    rule file's named after a category (``self_harm``: a caring reply with help lines)."""

    def __init__(self, detail: str, reply: CategoryReply) -> None:
        super().__init__(detail, category=reply.category)
        self.reply = reply

    def refusal(self, lang: Lang = "en") -> str:
        return self.reply.text.get(lang, self.reply.text["en"])


class ContentGuard:
    """The engine's input and output guard. Thread-safe: share one per app.

    Passed input verdicts are memoised by a hash of (role, content), so a long conversation's
    unchanged history is not normalised again on every turn; refusals are never memoised.
    """

    def __init__(
        self,
        rules: RuleSet | None = None,
        *,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        max_turns: int = DEFAULT_MAX_TURNS,
        moderation: Moderation | None = None,
        guard_model: Moderation | None = None,
        semantic: SemanticGuard | None = None,
        replies: dict[str, CategoryReply] | None = None,
        memo_size: int = DEFAULT_MEMO_SIZE,
    ) -> None:
        self.rules = rules if rules is not None else RuleSet.load()
        self.semantic = semantic
        # a rule of a category with a reply here answers with it (the layer's own, when it is on)
        self.replies = replies if replies is not None else (semantic.replies if semantic else {})
        self._own_categories = frozenset(self.replies)
        self._care = frozenset(c for c, reply in self.replies.items() if reply.care)
        self.max_message_chars = max_message_chars
        self.max_turns = max_turns
        self.moderation = moderation
        self.guard_model = guard_model
        self._passed: LRUCache[bytes, bool] = LRUCache(maxsize=max(1, memo_size))
        self._memo_lock = threading.Lock()

    # -- InputGuard ---------------------------------------------------------------------------

    def check(self, messages: Sequence[Message], *, moderate: bool = True) -> None:
        """Raise ``InvalidRequest`` for a broken limit, ``InputBlocked`` for refused content.

        Every message is checked by the rules (and the guard model, when there is one), not only
        the newest: a message refused once must not reach the model later as history, nor
        through a system prompt or an assistant turn a client wrote. External moderation, a
        paid service, sees the newest message only. ``moderate=False`` checks the rules only.
        """
        newest = messages[-1].content if messages else ""
        if len(newest) > self.max_message_chars:
            raise MessageTooLong(
                f"message has {len(newest)} characters", length=len(newest), limit=self.max_message_chars
            )
        turns = sum(1 for m in messages if m.role == "user")
        if turns > self.max_turns:
            raise TooManyTurns(f"conversation has {turns} turns", limit=self.max_turns)
        model = self.guard_model if moderate else None
        shown = [m for m in messages if m.role != "system"]
        for message in messages:
            if message.role not in CHECKED_ROLES:
                continue
            try:
                self._check_message(message, model)
            except ContentBlocked as exc:
                if message is not messages[-1]:
                    exc.position = shown.index(message) + 1 if message.role != "system" else 0
                    exc.total = len(shown)
                raise
        if moderate and self.moderation is not None:
            _ask(self.moderation, newest, "external moderation")

    def _check_message(self, message: Message, model: Moderation | None) -> None:
        """Rules, then the semantic layer (user messages: what a person asks; it may overrule an
        intent rule that misread one), then the guard model; skipped when the same check passed
        this message before."""
        seen = f"{message.role}\0{int(model is not None)}\0{message.content}"
        digest = hashlib.blake2b(seen.encode(), digest_size=16).digest()
        with self._memo_lock:
            if self._passed.get(digest):
                return
        user = message.role == "user"
        # The rules of the layer's categories (self-harm, sexual content about minors) read what
        # users ask or say of themselves: never a system prompt or an assistant's turn ("never
        # write sexual content involving minors", "you matter, even when you want to die"). Care
        # (self-harm) is tried before any refusal of a user's message.
        first, skip = (self._care, frozenset()) if user else (frozenset(), self._own_categories)
        hits = self.rules.input_hits(message.content, first=first, skip=skip)
        rule = next(hits, None)
        semantic = self.semantic if user else None
        if rule is not None and semantic is not None and semantic.overrules(rule, message.content):
            # the layer reads the message as no request: every intent rule is lifted, exact ones stand
            rule = next((r for r in hits if not r.intent), None)
        if rule is not None:
            log.info("input blocked by %s (%s)", rule.where, rule.category)
            detail = f"input rule {rule.where} ({rule.category})"
            if (reply := self.replies.get(rule.category)) is not None:
                raise CategoryRefusal(detail, reply)
            raise ContentBlocked(detail, key=rule.refusal, category=rule.category)
        if semantic is not None:
            semantic.check(message.content)
        if model is not None:
            _ask(model, message.content, "the guard model")
        with self._memo_lock:
            self._passed[digest] = True

    # -- OutputGuard --------------------------------------------------------------------------

    def new_filter(self) -> OutputFilter:
        """Output phrases block the reply, credentials in it are masked, moderation approves it."""
        stream: OutputFilter = SecretMask(StreamFilter(self.rules.output))
        for classifier in (self.guard_model, self.moderation):
            if classifier is not None:
                stream = ModeratedFilter(stream, classifier)
        return stream


_CATEGORIES = {"external moderation": "moderation", "the guard model": "guard_model"}  # by ``who``


def _ask(classifier: Moderation, text: str, who: str) -> None:
    """Refuse ``text`` if ``classifier`` flags it or gives no verdict (fail closed)."""
    try:
        flagged = classifier.flagged(text)
    except ModerationUnavailable as exc:
        log.warning("input refused: %s unavailable (%s)", who, exc)
        raise ContentBlocked(
            f"{who} unavailable: {exc}", key="error.moderation_unavailable", category=_CATEGORIES[who]
        ) from None
    if flagged:
        log.info("input blocked by %s", who)
        raise ContentBlocked(f"flagged by {who}", category=_CATEGORIES[who])


def build_guard(settings: Settings) -> ContentGuard:
    """The guard ``settings`` describe (rules directory, limits, moderation, semantic layer, guard
    model)."""
    directory = Path(settings.filters_dir) if settings.filters_dir else DEFAULT_DIR
    moderation = None
    if settings.moderation_url:
        moderation = ModerationClient(
            settings.moderation_url,
            api_key=settings.moderation_api_key or settings.api_key,
            model=settings.moderation_model,
            timeout=settings.connect_timeout + settings.read_timeout,
        )
    from chat.guards.examples import load_replies

    semantic = build_semantic(settings, directory)
    return ContentGuard(
        RuleSet.load(directory),
        max_message_chars=settings.max_message_chars,
        max_turns=settings.max_turns,
        moderation=moderation,
        guard_model=build_guard_model(settings),
        semantic=semantic,
        replies=semantic.replies if semantic else load_replies(directory / "examples"),
    )


def build_semantic(settings: Settings, directory: Path) -> SemanticGuard | None:
    """The semantic layer from ``<filters dir>/examples/`` unless ``--guard-semantic false``."""
    if not settings.guard_semantic:
        return None
    from chat.guards.semantic import shared_guard

    return shared_guard(directory / "examples")


def build_guard_model(settings: Settings) -> Moderation | None:
    """``--guard-url`` (a chat endpoint) or ``--guard-model`` (a GGUF run here), or None."""
    from chat.guards.model import ChatGuardClient, LocalGuardModel

    if settings.guard_url:
        return ChatGuardClient(
            settings.guard_url,
            model=settings.guard_model,
            api_key=settings.guard_api_key,
            timeout=settings.guard_timeout,
        )
    if settings.guard_model:
        path = resolve_model(settings.guard_model)
        return LocalGuardModel(path, timeout=settings.guard_timeout)
    return None


__all__ = [
    "CategoryRefusal",
    "ContentBlocked",
    "ContentGuard",
    "MessageTooLong",
    "RuleSet",
    "StreamFilter",
    "TooManyTurns",
    "build_guard",
    "build_guard_model",
    "build_semantic",
]
