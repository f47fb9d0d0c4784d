"""The semantic guard layer: what a message means, not which words it uses.

The rules (``chat.guards.rules``) are the fast, exact first layer; this layer catches the
requests they miss: a rephrasing, a role-play or hypothetical frame, slang, the other language.
Each user message is embedded once (``chat.guards.encoder``) from its intent view, where the
usual evasions (look-alike letters, zero-width characters, full-width or traditional forms,
spelled-out words) are already undone, and a softmax regression on the vector, beside the
view's hashed words and word pairs, says which of these it is: a request of one category (refused with that category's reply), a mention of the
topic (news, prevention, teaching, fiction; allowed) or something benign (allowed).

The regression is trained from ``prompts/filters/examples/`` (``chat.guards.examples``) when they
change (about 40 s on 2 cores) and read from the classifier file beside them otherwise; the
examples' vectors come from the vectors file there too. Why a
regression and not a nearest-neighbour vote: the encoder's similarity follows the topic ("how do I
report elder fraud" sits nearer "how do I defraud the elderly" than a paraphrase does), and on the
examples' cross-validation the regression, which learns the directions that separate asking from
talking about, refused as many requests with half the false positives of a k-NN vote. Grouped
cross-validation (nearby lines and near-duplicates in one fold) found nothing better at 1% of
benign messages refused: a k-NN vote as a second opinion, a nearest-neighbour margin, a hidden
layer, hashed word features, or one request class instead of one per category all did as well
or worse. What did help was giving the regression the message's words beside its vector: the
encoder blurs "report a scam" into "run a scam", the words keep them apart (at 1% of benign
messages refused, 0.71-0.73 of requests stopped against 0.58-0.59 with the vector alone, on
three different groupings; ``bench/bench_guards.py --cross-validation-only``, ``docs/guard.md``),
and so did weighing the benign class three times a class of its size (0.794-0.830 against
0.786-0.818 on three groupings). Per-category thresholds overfit: chosen on half of the groups, they
refused twice the planned share of the other half's benign messages.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cachetools import LRUCache

from chat.guards import CategoryRefusal
from chat.guards.encoder import Encoder, cached_vectors, shared_encoder, write_arrays
from chat.guards.examples import DEFAULT_DIR, CategoryReply, Examples, load_examples
from chat.guards.normalise import intent_view, text_view
from chat.guards.rule import Rule

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.npz"  # generated: the examples' vectors
CLASSIFIER_FILE = "classifier.npz"  # generated: the weights trained from exactly those vectors
L2 = 1e-2  # weight decay: chosen by grouped cross-validation on the examples
STEPS = 300  # full-batch Adam steps: the loss has flattened by then on ~1,500 examples
# Adam's step, falling linearly to nothing by the last step: at a constant 0.05 the last step
# could land mid-oscillation (one cross-validation fold of 7,300 examples ended refusing 41% of
# its own benign training examples), where a decaying step settles.
LEARNING_RATE = 0.05
# characters embedded at once (the examples are shorter): a longer message is judged piece by piece
WINDOW = 120
MAX_PIECES = 8  # pieces of one message embedded at most (its start and its end)
HASHED_WORDS = 4096  # buckets for a message's words and word pairs, beside its 384-number vector
WORD_WEIGHT = 0.5  # the words' length against the unit vector's: chosen by cross-validation
# The benign class weighs this many times a class of its size: a refused customer costs more than
# a mention refused, and grouped cross-validation stopped more requests at 1% of benign refused.
BENIGN_WEIGHT = 3.0
_WORDS = re.compile(r"[a-z0-9']+|[\u3400-\u9fff]")  # a Chinese character counts as a word
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？\n]*")
_NOT_REQUESTS = ("mention", "benign")


@dataclass(frozen=True)
class Verdict:
    """``label`` request|mention|benign; ``category`` the likeliest request category (the one
    refused when ``label`` is request); ``score`` P(request), summed over the categories."""

    label: str
    category: str
    score: float


class Classifier:
    """Multinomial logistic regression on centred, scaled vectors; one class per request
    category, plus "mention" and "benign"."""

    def __init__(
        self, classes: list[str], mean: np.ndarray, scale: float, weights: np.ndarray, bias: np.ndarray
    ):
        self.classes = classes
        self.mean, self.scale = mean, scale
        self.weights, self.bias = weights, bias
        self.requests = np.array([c not in _NOT_REQUESTS for c in classes])

    @classmethod
    def train(
        cls, vectors: np.ndarray, targets: list[str], *, l2: float = L2, steps: int = STEPS
    ) -> Classifier:
        """Fit on ``vectors`` (n, d) and their class names; classes are weighted to count equally,
        but for the benign class (``BENIGN_WEIGHT``)."""
        classes = sorted(set(targets))
        y = np.array([classes.index(t) for t in targets])
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        scale = float(centred.std()) or 1.0
        x = (centred / scale).astype(np.float64)
        n, dim = x.shape
        counts = np.bincount(y, minlength=len(classes))
        class_weight = n / (len(classes) * counts)
        if "benign" in classes:
            class_weight[classes.index("benign")] *= BENIGN_WEIGHT
        class_weight /= class_weight[y].mean()  # the same pull against the weight decay whatever the mix
        sample_weight = class_weight[y][:, None] / n
        onehot = np.eye(len(classes))[y]
        params = [np.zeros((dim, len(classes))), np.zeros(len(classes))]
        moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
        for step in range(1, steps + 1):
            grad_logits = (_softmax(x @ params[0] + params[1]) - onehot) * sample_weight
            grads = [x.T @ grad_logits + l2 * params[0], grad_logits.sum(axis=0)]
            for p, g, (m, v) in zip(params, grads, moments, strict=True):
                m *= 0.9
                m += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                rate = LEARNING_RATE * (1 - (step - 1) / steps)
                p -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        weights = (params[0] / scale).astype(np.float32)  # folds the scale into the weights
        return cls(classes, mean.astype(np.float32), 1.0, weights, params[1].astype(np.float32))

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities for (n, d) vectors."""
        return _softmax((vectors - self.mean) @ self.weights + self.bias)

    def verdicts(
        self, vectors: np.ndarray, threshold: float, excluded: frozenset[str] = frozenset()
    ) -> list[Verdict]:
        """A request at ``threshold`` or above (of its likeliest category), else the likelier of
        mention and benign. ``excluded`` categories do not count as requests."""
        requests = self.requests & ~np.isin(self.classes, list(excluded)) if excluded else self.requests
        out = []
        for row in self.probabilities(vectors):
            score = float(row[requests].sum())
            category = self.classes[int(np.argmax(np.where(requests, row, -1.0)))]
            if score >= threshold:
                out.append(Verdict("request", category, score))
            else:
                other = max(
                    _NOT_REQUESTS, key=lambda c: row[self.classes.index(c)] if c in self.classes else -1
                )
                out.append(Verdict(other, category, score))
        return out


def trained(vectors: np.ndarray, views: list[str], targets: list[str], path: Path) -> Classifier:
    """The classifier for these examples (their vectors, intent views and classes): read from
    ``path`` when it was trained on exactly them, else trained (about 40 s for 20,000 examples on
    2 idle cores, far more on a busy machine) and kept. The stamp is taken over the vectors and
    views, not over the features made from them: hashing those 200 MB took most of a start-up's
    second."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    digest.update("\0".join(views).encode())
    digest.update("\0".join(targets).encode())
    digest.update(
        f"{L2} {STEPS} {LEARNING_RATE} linear decay {BENIGN_WEIGHT} {HASHED_WORDS} {WORD_WEIGHT}".encode()
    )
    stamp = digest.hexdigest()
    if path.is_file():
        try:
            with np.load(path) as data:
                if str(data["stamp"]) == stamp:
                    return Classifier(
                        data["classes"].tolist(), data["mean"], 1.0, data["weights"], data["bias"]
                    )
        except (OSError, ValueError, KeyError) as exc:
            log.warning("guard classifier file %s unreadable (%s): training again", path.name, exc)
    classifier = Classifier.train(features(vectors, views), targets)
    write_arrays(
        path,
        stamp=np.array(stamp),
        classes=np.array(classifier.classes),
        mean=classifier.mean,
        weights=classifier.weights,
        bias=classifier.bias,
    )
    return classifier


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def features(vectors: np.ndarray, views: list[str]) -> np.ndarray:
    """What the classifier reads for each intent view: its vector, then its words and word pairs
    hashed into ``HASHED_WORDS`` buckets (set or not), scaled to length ``WORD_WEIGHT``."""
    words = np.zeros((len(views), HASHED_WORDS), dtype=np.float32)
    for row, view in enumerate(views):
        found = _WORDS.findall(view.lower())
        for token in [*found, *(f"{a} {b}" for a, b in zip(found, found[1:], strict=False))]:
            words[row, zlib.crc32(token.encode()) % HASHED_WORDS] = 1.0
    norms = np.linalg.norm(words, axis=1, keepdims=True)
    return np.hstack([vectors, words * (WORD_WEIGHT / np.maximum(norms, 1.0))]).astype(np.float32)


def target(label: str, category: str) -> str:
    """An example's class: its category for a request, else its label."""
    return category if label == "request" else label


def runs(text: str) -> list[str]:
    """``text``'s intent view whole, or for a long message runs of whole sentences of at most
    ``WINDOW`` characters each: a request at the end of a long paste would be drowned in one
    vector of all of it."""
    view = intent_view(text)
    if len(view) <= WINDOW:
        return [view]
    found: list[str] = []
    for sentence in _SENTENCE.findall(view):
        for start in range(0, len(sentence), WINDOW):
            part = sentence[start : start + WINDOW].strip()
            if found and len(found[-1]) + len(part) + 1 <= WINDOW:
                found[-1] = f"{found[-1]} {part}"
            elif part:
                found.append(part)
    return found


def pieces(text: str) -> list[str]:
    """What is embedded for ``text``: its runs, or past ``MAX_PIECES`` of them the first and last ones."""
    found = runs(text)
    half = MAX_PIECES // 2
    return found if len(found) <= MAX_PIECES else found[:half] + found[-half:]


class SemanticRefusal(CategoryRefusal):
    """The semantic layer stopped a message: the user reads its category's reply."""

    def __init__(self, reply: CategoryReply, score: float) -> None:
        super().__init__(f"semantic guard ({reply.category}, {score:.2f})", reply)


class SemanticGuard:
    """Examples in, verdicts out. Thread-safe: the encoder serialises its calls, the rest is read-only."""

    def __init__(self, classifier: Classifier, examples: Examples, encoder: Encoder) -> None:
        self.classifier = classifier
        self.replies = examples.replies
        self.threshold = examples.threshold
        self.overrule_intent_below = examples.overrule_intent_below
        self.encoder = encoder

    @classmethod
    def load(cls, directory: Path | None = None, *, encoder: Encoder | None = None) -> SemanticGuard:
        """Read and check the examples (``ConfigError`` names a bad file and line), embed the new
        ones, train."""
        examples = load_examples(directory)
        encoder = encoder or shared_encoder()
        where = DEFAULT_DIR if directory is None else Path(directory)
        texts = [intent_view(e.text) for e in examples.examples]
        vectors = cached_vectors(encoder, texts, where / VECTORS_FILE)
        targets = [target(e.label, e.category) for e in examples.examples]
        classifier = trained(vectors, texts, targets, where / CLASSIFIER_FILE)
        return cls(classifier, examples, encoder)

    def verdict(self, text: str) -> Verdict:
        """The most harmful verdict over the message's pieces. A category with a ``needs``
        pattern (credentials: a secret's name) counts only when the message matches it."""
        excluded = self.excluded(text)
        views = pieces(text)
        rows = features(self.encoder.embed(views), views)
        verdicts = self.classifier.verdicts(rows, self.threshold, excluded)
        return max(verdicts, key=lambda v: v.score)

    def excluded(self, text: str) -> frozenset[str]:
        """The categories that cannot apply to ``text``: those whose ``needs`` it does not match."""
        view = text_view(text)
        return frozenset(
            c for c, r in self.replies.items() if r.needs is not None and not r.needs.search(view)
        )

    def lifts(self, rule: Rule, score: float) -> bool:
        """Whether a request probability of ``score`` lifts ``rule``'s refusal: only an intent
        rule's (an ask near an act, a guess), and only under ``overrule_intent_below``. Phrase
        lists and regular expressions (a pasted secret) are exact."""
        return rule.intent and score < self.overrule_intent_below

    def overrules(self, rule: Rule, text: str) -> bool:
        """Whether this layer lifts ``rule``'s refusal of ``text`` ("how do I dodge the boss's fire
        attack" is no request to attack anyone). Not when the verdict would read only the start
        and end of a long message (the rule's match may lie between), nor when the encoder fails:
        the refusal then stands."""
        if not self.lifts(rule, 0.0) or len(runs(text)) > MAX_PIECES:
            return False
        try:
            score = self.verdict(text).score
        except Exception as exc:  # noqa: BLE001 - any failure leaves the rule's refusal in place
            log.warning("the semantic guard could not judge a message %s refused: %r", rule.where, exc)
            return False
        if not self.lifts(rule, score):
            return False
        log.info("intent rule %s overruled by the semantic guard (%.2f)", rule.where, score)
        return True

    def check(self, text: str) -> None:
        """Raise ``SemanticRefusal`` when ``text`` reads as a request at the threshold or above."""
        verdict = self.verdict(text)
        if verdict.label == "request":
            log.info("input stopped by the semantic guard (%s, %.2f)", verdict.category, verdict.score)
            raise SemanticRefusal(self.replies[verdict.category], verdict.score)


_LOADED: LRUCache[tuple, SemanticGuard] = LRUCache(maxsize=4)
_LOADED_LOCK = threading.Lock()


def shared_guard(directory: Path) -> SemanticGuard:
    """The guard for an examples folder, loaded once per process while its files stay as they are:
    a load reads and checks some 20,000 examples (a third of a second), and a process builds
    several apps (replicas of the settings, the tests). A changed example or setting file is read again;
    the vectors and classifier files the load itself writes are not part of the key."""
    try:
        state = tuple(
            sorted(
                (p.name, stat.st_mtime_ns, stat.st_size)
                for p in directory.iterdir()
                if p.suffix in (".txt", ".toml")
                for stat in [p.stat()]
            )
        )
    except OSError:
        return SemanticGuard.load(directory)  # its own clear error for a missing folder
    key = (str(directory.resolve()), state)
    with _LOADED_LOCK:
        guard = _LOADED.get(key)
        if guard is None:
            guard = _LOADED[key] = SemanticGuard.load(directory)
    return guard


__all__ = [
    "Classifier",
    "SemanticGuard",
    "SemanticRefusal",
    "Verdict",
    "features",
    "pieces",
    "shared_guard",
    "target",
]
