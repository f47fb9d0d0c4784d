"""Does the profile note make the embedded model take the user's name as its own? (issue 35)

A user who saved a profile (name Ada, or 小明 on the Chinese page) talks to the assistant: asks
about it ("What is your name?", "Tell me about yourself.", "你是谁？"), greets it ("Hello!",
"你好！") and asks about themselves ("What is my name?", "我叫什么名字？"). The real embedded
SmolLM2-135M answers, with the page's first persona as the system prompt, at the app's default
sampling (temperature 0.7 and top_p from ``GenerationParams``, one seed per reply) and greedily.

Rows are placements of the profile in the prompt. ``app`` is the app as it stands: the turn goes
through the reply pipeline (``chat.reply.pipeline.run``) with the profile kept in a real store,
so the prompt is assembled by the same code as on the page. ``before`` is the note as it was worded
and placed before issue 35; the other rows build candidate prompts and hand them to the same
engine call the pipeline makes (``ChatEngine.stream`` with its ``notes`` and ``reference``).

- claims the user's name: the reply gives the user's name as the assistant's own ("My name is
  Ada", "I'm Ada", "我是小明", "我叫小明"...), by kind of message, sampled; then greedy;
- profile in its self-description: a reply about itself mentions the profile (name, city, diet);
- answers the user's name: a reply to a question about the user holds their name without
  claiming it ("Your name is Ada").

    python bench/bench_profile_identity.py [--seeds 6] [--max-tokens 40] [--only before,app] [-v]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat import ChatEngine, GenerationParams, Message, Settings, TextDelta  # noqa: E402
from chat.factory import build_local_backend  # noqa: E402
from chat.i18n import Lang  # noqa: E402
from chat.reply.personas import load_persona_list  # noqa: E402
from chat.reply.pipeline import run  # noqa: E402
from chat.reply.profiles import NOTE, asks_about_assistant, profile_note  # noqa: E402
from chat.reply.turn import Reply, ReplyRequest, StoredConversation  # noqa: E402
from chat.store import Profile, Store  # noqa: E402

PROFILES: dict[Lang, Profile] = {
    "en": Profile(display_name="Ada", language="en", notes="Vegetarian\nLives in Lyon", opt_in=True),
    "zh": Profile(display_name="小明", language="zh", notes="素食\n住在上海", opt_in=True),
}
ABOUT_ASSISTANT: dict[Lang, tuple[str, ...]] = {
    "en": ("What is your name?", "Who are you?", "What's your name?", "Tell me about yourself."),
    "zh": ("你叫什么名字？", "你是谁？"),
}
GREETINGS: dict[Lang, tuple[str, ...]] = {
    "en": ("Hello!", "Hi, how are you today?"),
    "zh": ("你好！",),
}
ABOUT_USER: dict[Lang, tuple[str, ...]] = {
    "en": ("What is my name?", "Do you know my name?"),
    "zh": ("我叫什么名字？", "你知道我的名字吗？"),
}
_SELF = r"(?:\bI am|\bI'm|\bIm|\bmy name is|\bmy name's|\bcall me|\bthis is|我是|我叫|我的名字是|我的名字叫|本人是)"


def _name(name: str) -> str:
    """``name`` as a whole word: "Ada", not the start of "Adalina"."""
    return rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])"


def confused(reply: str, name: str) -> bool:
    """The reply claims ``name`` for the assistant: a self-introduction naming it within a few
    words, or the reply opening with it as a signature ("Ada here")."""
    near = re.compile(_SELF + r"[^.!?。！？\n]{0,24}?" + _name(name), re.IGNORECASE)
    return bool(near.search(reply)) or bool(re.match(rf"\W*{_name(name)}\s+here\b", reply, re.I))


FACTS: dict[Lang, tuple[str, ...]] = {"en": ("Ada", "Lyon", "vegetarian"), "zh": ("小明", "上海", "素食")}


def leaks(reply: str, lang: Lang) -> bool:
    """A reply about the assistant mentions something from the user's profile."""
    return any(fact.lower() in reply.lower() for fact in FACTS[lang])


def uses_name(reply: str, name: str) -> bool:
    return bool(re.search(_name(name), reply, re.IGNORECASE))


@dataclass(frozen=True)
class Case:
    lang: Lang
    question: str
    kind: str  # "assistant" (about itself), "greeting" or "user" (about the user)

    @property
    def profile(self) -> Profile:
        return PROFILES[self.lang]


Prompt = tuple[list[Message], list[Message], str]  # messages, notes, reference (ChatEngine.stream)
Placement = Callable[["Case", str], Prompt]  # the case and the persona's system prompt -> its prompt


def _plain(case: Case, system: str, notes: list[Message] | None = None, reference: str = "") -> Prompt:
    return [Message("system", system), Message("user", case.question)], notes or [], reference


def _details(profile: Profile, lang: Lang) -> list[str]:
    """The profile's language and notes lines, worded as the app words them."""
    words = NOTE[lang]
    lines = []
    if profile.language:
        lines.append(words["language"].format(value=words[f"lang_{profile.language}"]))
    if profile.notes:
        lines.append(words["notes"].format(value=profile.notes))
    return lines


# The note as the app wrote it before issue 35: a system note after the system prompt.
BEFORE = {
    "en": ("About the user, from their profile (use it when it helps):", "Name: {name}."),
    "zh": ("关于用户（来自其个人资料，需要时参考）：", "称呼：{name}。"),
}
ABOUT_ME = {"en": "About me: my name is {name}.", "zh": "关于我：我叫{name}。"}
NOTED = {"en": "Noted.", "zh": "好的，记住了。"}
USER_SAYS = {"en": "(About me, the user: {facts})", "zh": "（关于我这个用户：{facts}）"}


def before(case: Case, system: str) -> Prompt:
    """The note worded as before, after the system prompt."""
    head, name = BEFORE[case.lang]
    lines = [head, name.format(name=case.profile.display_name), *_details(case.profile, case.lang)]
    return _plain(case, system, [Message("system", "\n".join(lines))])


def roles_note(case: Case, system: str) -> Prompt:
    """The app's note on every turn, without the app's gate."""
    note = profile_note(case.profile, case.lang)
    return _plain(case, system, [note] if note else [])


def merged_roles(case: Case, system: str) -> Prompt:
    """The app's note appended to the system prompt: one system message."""
    note = profile_note(case.profile, case.lang)
    return _plain(case, f"{system}\n\n{note.content}" if note else system)


def _about_me(profile: Profile, lang: Lang) -> str:
    """The profile in the user's own words (first person)."""
    return " ".join([ABOUT_ME[lang].format(name=profile.display_name), *_details(profile, lang)])


def exchange(case: Case, system: str) -> Prompt:
    """A short user-side exchange at the start: the user says who they are, the assistant notes it."""
    said = [Message("user", _about_me(case.profile, case.lang)), Message("assistant", NOTED[case.lang])]
    return [Message("system", system), *said, Message("user", case.question)], [], ""


def with_message(case: Case, system: str) -> Prompt:
    """The profile in the user's words before the newest message (where a reference goes)."""
    return _plain(case, system, reference=_about_me(case.profile, case.lang))


def with_message_user(case: Case, system: str) -> Prompt:
    """The profile's facts before the newest message, marked as the user's own."""
    head, name = BEFORE[case.lang]
    facts = " ".join([name.format(name=case.profile.display_name), *_details(case.profile, case.lang)])
    return _plain(case, system, reference=USER_SAYS[case.lang].format(facts=facts))


_FIRST_PERSON = re.compile(r"\b(?:I|me|my|mine|myself|I'm|I've|I'd)\b|我", re.IGNORECASE)


def on_mention(placement: Placement) -> Placement:
    """``placement`` only when the message has a first-person word; else no profile."""

    def gated(case: Case, system: str) -> Prompt:
        if _FIRST_PERSON.search(case.question.replace("我们", "")):
            return placement(case, system)
        return _plain(case, system)

    return gated


def skip_self(placement: Placement) -> Placement:
    """``placement`` unless the message asks about the assistant itself (the app's test)."""

    def gated(case: Case, system: str) -> Prompt:
        return _plain(case, system) if asks_about_assistant(case.question) else placement(case, system)

    return gated


CANDIDATES: dict[str, Placement] = {
    "before": before,
    "none": lambda case, system: _plain(case, system),
    "app-note-always": roles_note,
    "merged-roles": merged_roles,
    "exchange": exchange,
    "with-message": with_message,
    "with-message-user": with_message_user,
    "on-mention:before": on_mention(before),
    "skip-self:before": skip_self(before),
}
ROWS = ("before", "app", *list(CANDIDATES)[1:])


class Bench:
    def __init__(self, max_tokens: int) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        settings = Settings(threads=1, data_dir=self.tmp.name)
        self.backend = build_local_backend(settings)
        self.engine = ChatEngine({"local": self.backend})
        self.engine.cache = None  # every sample is generated
        self.store = Store.open(f"sqlite:///{self.tmp.name}/chat.db")
        self.max_tokens = max_tokens
        personas = {(p.key, p.lang): p.prompt for p in load_persona_list()}
        self.system = {lang: personas[("general", lang)] for lang in PROFILES}

    def params(self, temperature: float, seed: int) -> GenerationParams:
        base = GenerationParams.within(self.backend.context_window() or 2048)
        return replace(base, temperature=temperature, seed=seed, max_new_tokens=self.max_tokens)

    def candidate(self, placement: Placement, case: Case, params: GenerationParams) -> str:
        messages, notes, reference = placement(case, self.system[case.lang])
        events = self.engine.stream(
            messages, params, notes=notes, reference=reference, lang=case.lang, use_cache=False
        )
        return "".join(e.text for e in events if isinstance(e, TextDelta))

    def app(self, case: Case, params: GenerationParams) -> str:
        """The turn as the page sends it, through the reply pipeline and a stored conversation."""
        owner = f"user:{case.lang}"
        self.store.save_profile(owner, case.profile)
        conversation = self.store.create_conversation(owner)
        request = ReplyRequest(
            messages=[Message("system", self.system[case.lang]), Message("user", case.question)],
            params=params,
            use_cache=False,
            conversation=StoredConversation(self.store, owner, conversation.id, new=True),
        )
        outcome = list(run(self.engine, request))[-1]
        assert isinstance(outcome, Reply), outcome
        return outcome.text

    def close(self) -> None:
        self.store.close()
        self.backend.close()
        self.tmp.cleanup()


@dataclass
class Tally:
    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.hits += hit
        self.total += 1

    def __str__(self) -> str:
        return f"{100 * self.hits / self.total:.0f}% ({self.hits}/{self.total})" if self.total else "-"


def cases() -> list[Case]:
    groups = {"assistant": ABOUT_ASSISTANT, "greeting": GREETINGS, "user": ABOUT_USER}
    return [Case(lang, q, kind) for kind, group in groups.items() for lang, qs in group.items() for q in qs]


COLUMNS = (
    ("claims", "claims the user's name: all replies"),
    ("claims_assistant", "asked about itself"),
    ("claims_greeting", "greetings"),
    ("claims_user", "asked about the user"),
    ("g_claims", "greedy"),
    ("leak", "profile in its self-description"),
    ("answers", "answers the user's name"),
    ("answers_en", "en"),
    ("answers_zh", "zh"),
    ("g_answers", "greedy"),
)


def measure(bench: Bench, name: str, seeds: int, verbose: bool) -> list[str]:
    """One table row: how often a reply claims the user's name for the assistant (by kind of
    question), mentions the profile when describing itself, and answers "what is my name" with
    the user's name (without claiming it); sampled, and greedy."""
    tallies = {key: Tally() for key, _ in COLUMNS}
    runs = [(0.7, seed) for seed in range(seeds)] + [(0.0, 0)]
    for case in cases():
        for temperature, seed in runs:
            params = bench.params(temperature, seed)
            if name == "app":
                reply = bench.app(case, params)
            else:
                reply = bench.candidate(CANDIDATES[name], case, params)
            user = case.profile.display_name
            claims = confused(reply, user)
            answers = uses_name(reply, user) and not claims
            prefix = "g_" if temperature == 0 else ""
            tallies[f"{prefix}claims"].add(claims)
            if case.kind == "user":
                tallies[f"{prefix}answers"].add(answers)
            if verbose:
                print(
                    f"  [{name}] T={temperature} s={seed} {case.question} -> {reply[:90]!r}", file=sys.stderr
                )
            if temperature == 0:
                continue
            tallies[f"claims_{case.kind}"].add(claims)
            if case.kind == "user":
                tallies[f"answers_{case.lang}"].add(answers)
            if case.kind == "assistant":
                tallies["leak"].add(leaks(reply, case.lang))
    return [name, *(str(tallies[key]) for key, _ in COLUMNS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="sampled replies per question")
    parser.add_argument("--max-tokens", type=int, default=40, help="reply length (names come early)")
    parser.add_argument("--only", default="", help="comma-separated rows (app and the candidates)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every sampled reply to stderr")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ROWS)
    bench = Bench(args.max_tokens)
    try:
        kinds = {kind: sum(c.kind == kind for c in cases()) for kind in ("assistant", "greeting", "user")}
        print(
            f"{len(cases())} messages ({kinds['assistant']} about the assistant, {kinds['greeting']} "
            f"greetings, {kinds['user']} about the user; en and zh), {args.seeds} seeds each at "
            f"temperature 0.7 and one greedy reply, {args.max_tokens} tokens\n"
        )
        head = ["placement", *(title for _, title in COLUMNS)]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for name in names:
            print("| " + " | ".join(measure(bench, name, args.seeds, args.verbose)) + " |", flush=True)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
