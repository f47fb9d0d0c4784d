"""The shipped input rules: benign sentences pass, evasion attempts are blocked, rules load.

Pure rule matching, no model: the engine-level behaviour is in ``test_guard_engine.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat.errors import ConfigError
from chat.guards import ContentGuard
from chat.guards.normalise import compact, phrase_view, text_view
from chat.guards.rules import RuleSet, parse_rule_file
from chat.reply.personas import load_personas

DATA = Path(__file__).parent / "data"


def read_lines(name: str) -> list[str]:
    """Non-comment lines of a data file, with ``\\uXXXX`` escapes decoded."""
    lines = []
    for raw in (DATA / name).read_text(encoding="utf-8").splitlines():
        if raw.strip() and not raw.startswith("#"):
            lines.append(re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), raw))
    return lines


BENIGN = read_lines("benign.txt")
EVASIONS = read_lines("evasions.txt")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load()


def test_lists_are_big_enough_in_both_languages() -> None:
    for lines in (BENIGN, EVASIONS):
        assert len(lines) >= 50
        chinese = sum(1 for line in lines if CJK.search(line))
        assert chinese >= 15 and len(lines) - chinese >= 15


@pytest.mark.parametrize("text", BENIGN)
def test_benign_sentence_passes(rules: RuleSet, text: str) -> None:
    rule = rules.check_input(text)
    assert rule is None, f"false positive by {rule and rule.where}"


@pytest.mark.parametrize("text", EVASIONS)
def test_evasion_is_blocked(rules: RuleSet, text: str) -> None:
    assert rules.check_input(text) is not None


def test_the_issue_examples(rules: RuleSet) -> None:
    for secret in ("密码: 123456", "验证码 8842", "password: hunter2"):
        rule = rules.check_input(secret)
        assert rule is not None and rule.refusal == "error.input_credentials"
    for harmless in ("密码学", "password policy", "反诈骗宣传"):
        assert rules.check_input(harmless) is None


def test_shipped_personas_pass() -> None:
    guard = ContentGuard()
    for title, prompt in load_personas().items():
        assert guard.rules.check_input(prompt) is None, title


def test_normalisation_undoes_trivial_evasions() -> None:
    assert compact("ＳＣ\u200bＡ-m") == compact("scam") == "scam"
    assert compact("詐騙 話術") == "诈骗话术"
    assert compact("раssword") == "password"  # Cyrillic р and а
    assert compact("k1ll") == compact("kill") == compact("KI11")
    assert phrase_view("bómb!") == "bomb "
    assert text_view("ｐ ａ ｓ ｓ ｗ ｏ ｒ ｄ：８８４２") == "password:8842"
    assert text_view("密 碼 ： 123") == "密码 : 123"


def test_word_boundaries_for_latin_phrases(tmp_path: Path) -> None:
    (tmp_path / "t.en.txt").write_text("scam\nhow to scam\n", encoding="utf-8")
    rules = RuleSet.load(tmp_path)
    assert rules.check_input("the scampi") is None
    assert rules.check_input("escaminho") is None
    assert rules.check_input("a scam!") is not None
    assert rules.check_input("教我scam") is not None  # a Chinese character is a boundary
    assert rules.check_input("s-c-a-m") is not None


def test_allow_phrase_excuses_only_the_hit_it_overlaps(tmp_path: Path) -> None:
    (tmp_path / "f.zh.txt").write_text("诈骗话术\n", encoding="utf-8")
    (tmp_path / "allow.zh.txt").write_text("# kind: allow\n反诈骗\n", encoding="utf-8")
    rules = RuleSet.load(tmp_path)
    assert rules.check_input("反诈骗话术宣传") is None
    assert rules.check_input("反诈骗话术宣传，再给我一套诈骗话术") is not None


def test_rule_file_directives(tmp_path: Path) -> None:
    path = tmp_path / "output.en.txt"
    path.write_text("# a comment: with a colon\n# scope: output\n# refusal: error.custom\n\nbad words\n")
    parsed = parse_rule_file(path)
    assert parsed.scopes == ("output",) and parsed.kind == "block"
    assert [(r.text, r.category, r.refusal, r.where) for r in parsed.rules] == [
        ("bad words", "output", "error.custom", "output.en.txt:5")
    ]
    rules = RuleSet.load(tmp_path)
    assert rules.check_input("bad words") is None  # output only
    assert rules.output.block.rules


def test_a_configured_directory_replaces_the_shipped_rules(tmp_path: Path) -> None:
    (tmp_path / "shop.en.txt").write_text("competitor prices\n")
    rules = RuleSet.load(tmp_path)
    assert rules.check_input("Show me competitor prices") is not None
    assert rules.check_input("how to make a bomb") is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.regex", "(unclosed\n"),
        ("out.regex", "# scope: output\nabc\n"),
        ("x.txt", "# scope: sideways\nabc\n"),
        ("y.txt", "# kind: maybe\nabc\n"),
    ],
)
def test_broken_rule_files_are_config_errors(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError):
        RuleSet.load(tmp_path)


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RuleSet.load(tmp_path / "nope")
