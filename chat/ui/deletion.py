"""Deleting a conversation from the page: a confirmation first, then a short time to undo.

The conversation leaves the list at once, but the store deletes it only ``UNDO_SECONDS`` later,
unless Undo came first: an undone deletion gives back everything (messages, sources, ratings),
which a copy made again would not. A server stopped within those seconds keeps the conversation.
"""

from __future__ import annotations

import logging
import threading

from chat.errors import ChatError
from chat.store import Store

log = logging.getLogger(__name__)

UNDO_SECONDS = 10.0


class PendingDeletes:
    """Deletions waiting for their undo time to pass, per owner."""

    def __init__(self, store: Store | None, *, seconds: float = UNDO_SECONDS) -> None:
        self.store = store
        self.seconds = seconds
        self._timers: dict[tuple[str, str], threading.Timer] = {}
        self._lock = threading.Lock()

    def hidden(self, owner: str) -> set[str]:
        """The owner's conversations deleted on the page but not yet in the store."""
        with self._lock:
            return {cid for who, cid in self._timers if who == owner}

    def schedule(self, owner: str, conversation_id: str) -> None:
        timer = threading.Timer(self.seconds, self._delete, (owner, conversation_id))
        timer.daemon = True
        with self._lock:
            previous = self._timers.pop((owner, conversation_id), None)
            self._timers[(owner, conversation_id)] = timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def undo(self, owner: str, conversation_id: str) -> bool:
        """Keep the conversation after all; False when its time had passed."""
        with self._lock:
            timer = self._timers.pop((owner, conversation_id), None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def flush(self) -> None:
        """Delete every waiting conversation now."""
        with self._lock:
            waiting, self._timers = list(self._timers.items()), {}
        for (owner, conversation_id), timer in waiting:
            timer.cancel()
            self._delete(owner, conversation_id, pending=False)

    def _delete(self, owner: str, conversation_id: str, *, pending: bool = True) -> None:
        if pending:
            with self._lock:
                if self._timers.pop((owner, conversation_id), None) is None:
                    return  # undone meanwhile
        try:
            if self.store is not None:
                self.store.delete(owner, conversation_id)
        except ChatError:
            log.warning("a deleted conversation could not be removed from the store")
