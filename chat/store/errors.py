"""The store's failures, in the project's one error tree (``chat.errors``)."""

from __future__ import annotations

from chat.errors import ChatError


class StoreError(ChatError):
    """The database failed. ``str()`` names the failure, never SQL parameters or passwords."""

    key = "error.store"


class ConversationNotFound(ChatError):
    """No such conversation for this owner: another owner's id looks exactly like a missing one."""

    key = "error.not_found"
