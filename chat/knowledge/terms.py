"""Words for full-text search, the same for documents and questions, English and Chinese.

SQLite's FTS5 tokenizers and PostgreSQL's parser split on spaces and punctuation, which leaves a
run of Chinese as one huge "word" (unicode61) or needs 3+ characters (trigram). So the text is
segmented here with jieba into words and stored space-separated: the database's own tokenizer
then sees Chinese words exactly like English ones, and both databases rank the same words.
Documents are cut in jieba's search mode (a long word also yields its parts: 中华人民共和国 ->
中华, 人民, 共和国, ...), so a question that uses a part still finds it.
"""

from __future__ import annotations

import logging
import re
import threading

import jieba

_WORD = re.compile(r"[^\W_]+")  # letters and digits only: safe inside any query syntax
_ready = threading.Lock()
_initialised = False

# Words that only make the OR-query longer and every chunk a match: dropped from questions only.
_STOPWORDS = (
    "a an the is are was were be been do does did of to in on at for by with from and or not no "
    "it its this that these those what which who whom whose how when where why can could would "
    "should will shall may might must i me my we our you your he she they them their there here "
    "about into than then so if as any some please tell"
    " 的 了 吗 呢 吧 啊 是 在 和 与 或 及 有 我 你 您 他 她 它 我们 你们 什么 怎么 怎样 如何 哪 哪些 "
    "哪个 为什么 多少 几 吗 请问 请 一下 这 那 这个 那个 就 都 也 还 要 会 能 可以 对 把 被 给"
)
STOPWORDS = frozenset(_STOPWORDS.split())


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) instead of at the first search."""
    _jieba()


def _jieba() -> None:
    """Load jieba's dictionary once, quietly; thread-safe."""
    global _initialised
    if _initialised:
        return
    with _ready:
        if not _initialised:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _initialised = True


def words(text: str, *, search_mode: bool = True) -> list[str]:
    """Lower-case words of ``text``: Chinese segmented by jieba, letters and digits only."""
    _jieba()
    pieces = jieba.cut_for_search(text) if search_mode else jieba.cut(text)
    found: list[str] = []
    for piece in pieces:
        found.extend(match.lower() for match in _WORD.findall(piece))
    return found


def index_terms(*parts: str) -> str:
    """The text a chunk is indexed by: its words, space-separated."""
    return " ".join(word for part in parts if part for word in words(part))


def query_terms(question: str, *, limit: int = 32) -> list[str]:
    """The distinct words of a question, stopwords dropped (unless nothing else is left)."""
    seen = dict.fromkeys(words(question))
    kept = [w for w in seen if w not in STOPWORDS] or list(seen)
    return kept[:limit]
