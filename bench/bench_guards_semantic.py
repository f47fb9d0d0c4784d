"""The semantic guard layer on the independent test split: what it adds to the rules, and its cost.

``tests/data/guard_semantic/test.jsonl`` (650 messages, see its README) was written from the
category list alone, before the classifier was trained, and is never tuned on. Each request must
be stopped (a refusal, or self-harm's caring reply); mentions and benign messages must pass. The
evasion copy applies every transform of ``chat.guards.evalset`` to every request.

    python bench/bench_guards.py --semantic-only
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from chat.guards import ContentBlocked, ContentGuard, RuleSet, evalset
from chat.guards.encoder import THREADS, Encoder
from chat.guards.semantic import SemanticGuard, pieces
from chat.messages import Message

SPLIT = Path(__file__).resolve().parent.parent / "tests" / "data" / "guard_semantic" / "test.jsonl"
CATEGORIES = (
    "fraud_scams",
    "violence_weapons",
    "evading_law",
    "drugs",
    "hacking_malware",
    "sexual_minors",
    "doxxing_stalking",
    "credentials_pasted",
    "self_harm",
)


def load_split(path: Path = SPLIT) -> list[evalset.Item]:
    """The split as ``evalset`` items (a request counts as "harmful"), so the evasion copy and the
    scoring are the ones every guard bench uses."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        label = {"request": "harmful"}.get(raw["label"], raw["label"])
        if label not in evalset.LABELS or raw["lang"] not in ("zh", "en"):
            raise ValueError(f"{path.name}:{number}: bad label or lang")
        items.append(evalset.Item(raw["text"], raw["lang"], label, raw["category"]))
    return items


def pct(score: float | None) -> str:
    return "–" if score is None else f"{score:.3f}"


def caught(s: evalset.Score) -> str:
    return f"{pct(s.recall)} ({s.tp}/{s.tp + s.fn})"


def refused(s: evalset.Score) -> str:
    return f"{pct(s.fp_rate)} ({s.fp}/{s.fp + s.tn})"


def rows(
    layer: str, refuses: Callable[[str], bool], items: list[evalset.Item], evasions: list[evalset.Item]
) -> list[str]:
    plain, _ = evalset.score(items, refuses)
    evaded, _ = evalset.score(evasions, refuses)
    out = []
    for name in ["all", "lang:zh", "lang:en", *(f"cat:{c}" for c in CATEGORIES)]:
        p, e = plain.get(name, evalset.Score()), evaded.get(name, evalset.Score())
        out.append(f"| {layer} | {name.split(':')[-1]} | {caught(p)} | {caught(e)} | {refused(p)} |")
    for kind, target in (("benign", 0.01), ("mention", 0.10)):
        for lang in ("zh", "en"):
            s = plain.get(f"label:{kind}:{lang}", evalset.Score())
            out.append(f"| {layer} | {kind} {lang} (target <= {target:.2f}) | | | {refused(s)} |")
    return out


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def refusals(guard: ContentGuard) -> Callable[[str], bool]:
    """Whether ``guard`` refuses a user's message, as the engine asks it."""

    def refuses(text: str) -> bool:
        try:
            guard.check([Message("user", text)])
        except ContentBlocked:
            return True
        return False

    return refuses


def semantic_section(splits: Sequence[Path] = (SPLIT,)) -> list[str]:
    """The guard on one or more independent splits, pooled: the rules alone, the rules and the
    semantic layer with every rule exact, and as shipped (the layer may overrule an intent rule);
    then each split's figures as shipped, and the layer's cost."""
    rules = RuleSet.load()
    semantic = SemanticGuard.load()
    exact = copy.copy(semantic)
    exact.overrule_intent_below = 0.0
    shipped = refusals(ContentGuard(rules, semantic=semantic))
    by_split = {path: load_split(path) for path in splits}
    evaded = {path: evalset.evasion_copy(part) for path, part in by_split.items()}
    items = [item for part in by_split.values() for item in part]
    evasions = [item for part in evaded.values() for item in part]  # each split's own copy

    overrule = semantic.overrule_intent_below
    lines = [
        f"Independent split{'s' if len(splits) > 1 else ''} {', '.join(p.name for p in splits)}: "
        f"{len(items)} messages; threshold {semantic.threshold}; intent rules overruled below {overrule}",
        "",
        "| layer | slice | request recall (test) | recall (evasion copy) | false positives (mentions; all others for all/lang) |",
        "|---|---|---|---|---|",
        *rows("rules", lambda text: rules.check_input(text) is not None, items, evasions),
        *rows(
            "rules + semantic, every rule exact",
            refusals(ContentGuard(rules, semantic=exact)),
            items,
            evasions,
        ),
        *rows(f"rules + semantic, intent rules overruled below {overrule}", shipped, items, evasions),
    ]
    if len(splits) > 1:
        lines += [
            "",
            "| split (as shipped) | requests stopped | evasion copy stopped | mentions refused | benign refused |",
            "|---|---|---|---|---|",
        ]
        for path, part in by_split.items():
            plain, _ = evalset.score(part, shipped)
            copy_scores, _ = evalset.score(evaded[path], shipped)
            lines.append(
                f"| {path.name} | {caught(plain['label:harmful'])} | {caught(copy_scores['all'])} "
                f"| {refused(plain['label:mention'])} | {refused(plain['label:benign'])} |"
            )

    # The time one new message costs: an encoder whose memory holds nothing of these texts, and
    # each normalised text once (most evasions normalise back to the plain text: a memory hit).
    fresh = SemanticGuard(semantic.classifier, _examples(semantic), Encoder(memo_size=1))
    views: dict[tuple[str, ...], str] = {}
    for item in [*items, *evasions]:
        views.setdefault(tuple(pieces(item.text)), item.text)
    texts = list(views.values())
    fresh.verdict("warm up")
    spent, cpu, rule_spent = [], [], []
    for text in texts:
        start, start_cpu = time.perf_counter(), time.process_time()
        fresh.verdict(text)
        spent.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        start = time.perf_counter()
        rules.check_input(text)
        rule_spent.append(time.perf_counter() - start)
    p95 = percentile(spent, 0.95)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += [
        "",
        "| cost per message | p50 | p95 | target | met |",
        "|---|---|---|---|---|",
        f"| semantic layer: embedding + classifier ({len(texts)} distinct messages, test split and evasion copy) "
        f"| {statistics.median(spent) * 1000:.1f} ms | {p95:.1f} ms | <= 15 ms p95 | {'yes' if p95 <= 15 else 'NO'} |",
        f"| semantic layer, CPU time of the process (all the encoder's threads: {THREADS}) "
        f"| {percentile(cpu, 0.5):.1f} ms | {percentile(cpu, 0.95):.1f} ms | | |",
        f"| rule layer, same messages | {percentile(rule_spent, 0.5):.2f} ms | {percentile(rule_spent, 0.95):.2f} ms | | |",
        "",
        f"{os.cpu_count()} cores; load average while measured: {load}",
    ]
    return lines


def _examples(semantic: SemanticGuard):  # noqa: ANN202
    from chat.guards.examples import Examples

    return Examples([], semantic.replies, semantic.threshold)


def example_groups(
    examples: list, vectors: np.ndarray, *, block: int = 5, similar: float = 0.95, largest: int = 40
) -> np.ndarray:
    """Each example's group for cross-validation: the few lines around it in its file (one intent's
    phrasings are written together) joined with the examples whose vectors are nearly the same,
    most similar pairs first, so a message and its near-duplicate do not sit on both sides of a
    fold. A join that would make a group of more than ``largest`` is left out: joined pair by
    pair, near-duplicates chain into one group of a sixth of the examples, and the fold that
    holds it trains without a whole region (one assignment of groups to folds then refused four
    times the benign examples another did)."""
    parent = list(range(len(examples)))
    size = [1] * len(examples)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int, cap: float) -> None:
        a, b = root(i), root(j)
        if a != b and size[a] + size[b] <= cap:
            parent[a] = b
            size[b] += size[a]

    first: dict[tuple[str, int], int] = {}
    for i, example in enumerate(examples):
        name, line = example.where.rsplit(":", 1)
        join(i, first.setdefault((name, int(line) // block), i), float("inf"))
    similarity = np.triu(vectors @ vectors.T, 1)
    pairs = np.argwhere(similarity >= similar)
    for i, j in pairs[np.argsort(-similarity[pairs[:, 0], pairs[:, 1]], kind="stable")]:
        join(int(i), int(j), largest)
    return np.array([root(i) for i in range(len(examples))])


def cross_validation(folds: int = 5, *, seed: int = 0, block: int = 5) -> list[str]:
    """Grouped cross-validation on the training examples (prompts/filters/examples/): what the
    classifier and its threshold were chosen on; no test split plays a part in it. ``seed``
    assigns the groups to folds and ``block`` is how many neighbouring lines form a group: other
    values show how much a figure owes to one grouping."""
    from chat.guards.encoder import cached_vectors
    from chat.guards.examples import DEFAULT_DIR, load_examples
    from chat.guards.normalise import intent_view
    from chat.guards.semantic import VECTORS_FILE, Classifier, features, target

    loaded = load_examples()
    examples = loaded.examples
    semantic = SemanticGuard.load()
    rules = RuleSet.load()
    views = [intent_view(e.text) for e in examples]
    vectors = cached_vectors(semantic.encoder, views, DEFAULT_DIR / VECTORS_FILE)
    rows = features(vectors, views)
    targets = [target(e.label, e.category) for e in examples]
    groups = example_groups(examples, vectors, block=block)
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique)) % folds
    fold = order[np.searchsorted(unique, groups)]
    score = np.zeros(len(examples))
    for f in range(folds):
        train, held = np.where(fold != f)[0], np.where(fold == f)[0]
        classifier = Classifier.train(rows[train], [targets[i] for i in train])
        for i in held:
            excluded = semantic.excluded(examples[i].text)
            score[i] = classifier.verdicts(rows[i : i + 1], 1.0, excluded)[0].score
    label = np.array([e.label for e in examples])
    hits = [rules.check_input(e.text) for e in examples]
    # as the guard decides: an intent rule's refusal stands only from its overrule score up
    ruled = np.array(
        [hit is not None and not semantic.lifts(hit, s) for hit, s in zip(hits, score, strict=True)]
    )
    lines = [
        f"Cross-validation on the {len(examples)} training examples ({folds} folds of {len(unique)} groups: "
        f"{block} nearby lines of a file and near-duplicates stay together; folds drawn with seed {seed}); "
        f"semantic alone, and rules + semantic (intent rules overruled below {semantic.overrule_intent_below}):",
        "",
        "| threshold | request recall (alone / with rules) | false positives, mentions | false positives, benign |",
        "|---|---|---|---|",
        f"| rules alone, no semantic layer | {ruled[label == 'request'].mean():.3f} | {ruled[label == 'mention'].mean():.3f} "
        f"| {ruled[label == 'benign'].mean():.3f} |",
    ]
    for threshold in sorted(
        {0.5, 0.6, 0.7, 0.78, 0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.95, semantic.threshold}
    ):
        alone = score >= threshold
        both = alone | ruled
        lines.append(
            f"| {threshold}{' (shipped)' if threshold == semantic.threshold else ''} | "
            + " | ".join(
                f"{alone[label == kind].mean():.3f} / {both[label == kind].mean():.3f}"
                for kind in ("request", "mention", "benign")
            )
            + " |"
        )
    shipped = (score >= semantic.threshold) | ruled
    category = np.array([e.category for e in examples])
    lines += [
        "",
        f"Requests stopped by category at the shipped threshold ({semantic.threshold}), rules + semantic:",
        "",
        "| category | requests | stopped |",
        "|---|---|---|",
    ]
    for name in CATEGORIES:
        asked = (label == "request") & (category == name)
        lines.append(f"| {name} | {asked.sum()} | {shipped[asked].mean():.3f} |")
    return lines


LENGTHS = ((0, 40), (41, 80), (81, 120), (121, 240), (241, 500), (501, 2000))
Measured = tuple[float, float, int, int]  # wall and process CPU seconds, pieces, tokens


def latency_by_length(sample: int = 400, long_each: int = 12) -> list[str]:
    """What one new message costs the semantic layer, by the length of its normalised text: the
    training examples (a spread sample; no test split) and longer messages made by joining them,
    on an encoder whose memory holds none of them, after one warm-up call; and the cost per
    token the encoder's time follows."""
    from chat.guards.examples import load_examples
    from chat.guards.normalise import intent_view

    semantic = SemanticGuard.load()
    examples = [e.text for e in load_examples().examples]
    natural = examples[:: max(1, len(examples) // sample)]
    rng = np.random.default_rng(0)
    joined = []
    for target in (200, 400, 800, 1500):
        for _ in range(long_each):
            parts: list[str] = []
            while sum(map(len, parts)) < target:
                parts.append(examples[int(rng.integers(len(examples)))])
            joined.append(" ".join(parts)[:target])
    start = time.perf_counter()
    encoder = Encoder(memo_size=1)
    fresh = SemanticGuard(semantic.classifier, _examples(semantic), encoder)
    fresh.verdict("warm up")
    first = (time.perf_counter() - start) * 1000
    by_bucket: dict[tuple[int, int], list[Measured]] = {b: [] for b in LENGTHS}
    examples_only: list[Measured] = []
    for text in natural + joined:
        views = pieces(text)
        tokens = sum(encoder.token_count(v) for v in views)
        start, start_cpu = time.perf_counter(), time.process_time()
        fresh.verdict(text)
        measured = (time.perf_counter() - start, time.process_time() - start_cpu, len(views), tokens)
        length = len(intent_view(text))
        by_bucket[next(b for b in LENGTHS if length <= b[1] or b == LENGTHS[-1])].append(measured)
        if text in natural:
            examples_only.append(measured)
    rows = [
        "| characters (normalised) | messages | pieces | tokens p50 / p95 | p50 / p95 wall | p50 / p95 CPU (all threads) |",
        "|---|---|---|---|---|---|",
        *(_latency_row(f"{low}-{high}", measured) for (low, high), measured in by_bucket.items()),
        _latency_row(f"training examples alone (every {len(examples) // len(natural)}th)", examples_only),
    ]
    every = [m for measured in by_bucket.values() for m in measured]
    per_token, fixed = np.polyfit([m[3] for m in every], [m[1] * 1000 for m in every], 1)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        *rows,
        "",
        f"CPU time per message ({THREADS} threads) ~ {fixed:.1f} ms + {per_token:.2f} ms per token (least squares over all "
        f"{len(every)}; tokens include the 'query:' prefix and the start and end marks of each piece): "
        f"First call of a new encoder (load and warm-up): {first:.0f} ms. Load average: {load}",
    ]


def encoder_threads(split: Path = SPLIT, messages: int = 300) -> list[str]:
    """What one message costs the encoder on one thread and on two, on an idle machine and beside
    the embedded chat model generating on every core (as when other users are being answered)."""
    import threading

    import llama_cpp

    from chat.backends.local.model_files import embedded_model_path

    texts = [item.text for item in load_split(split)][:messages]
    cores = os.cpu_count() or 1
    chat = llama_cpp.Llama(
        str(embedded_model_path()), n_ctx=2048, n_threads=cores, n_threads_batch=cores, verbose=False
    )
    stop = threading.Event()

    def generate() -> None:
        while not stop.is_set():
            for _ in chat.create_completion(
                "Tell me a long story about a dragon.", max_tokens=400, stream=True
            ):
                if stop.is_set():
                    break

    lines = [
        f"One message embedded, {len(texts)} messages of {split.name}, {cores} cores:",
        "",
        "| encoder threads | machine | p50 | p95 |",
        "|---|---|---|---|",
    ]
    for busy in (False, True):
        worker = threading.Thread(target=generate, daemon=True) if busy else None
        if worker is not None:
            stop.clear()
            worker.start()
            time.sleep(2)
        for threads in (1, 2):
            encoder = Encoder(threads=threads, memo_size=1)
            encoder.embed(["warm up"])
            spent = []
            for text in texts:
                start = time.perf_counter()
                encoder.embed([text])
                spent.append(time.perf_counter() - start)
            where = "beside the chat model generating" if busy else "idle"
            lines.append(
                f"| {threads} | {where} | {percentile(spent, 0.5):.1f} ms | {percentile(spent, 0.95):.1f} ms |"
            )
        if worker is not None:
            stop.set()
            worker.join()
    return lines


def _latency_row(name: str, measured: list[Measured]) -> str:
    if not measured:
        return f"| {name} | 0 | | | | |"
    wall, cpu, count, tokens = (list(column) for column in zip(*measured, strict=True))
    return (
        f"| {name} | {len(measured)} | {statistics.median(count):.0f} (max {max(count)}) | "
        f"{statistics.median(tokens):.0f} / {sorted(tokens)[min(len(tokens) - 1, int(0.95 * len(tokens)))]} | "
        f"{percentile(wall, 0.5):.1f} / {percentile(wall, 0.95):.1f} ms | "
        f"{percentile(cpu, 0.5):.1f} / {percentile(cpu, 0.95):.1f} ms |"
    )
