"""helpers.course.verdicts: every answer a notebook shows is judged the same way, API or local."""

import re
from types import SimpleNamespace

import pytest

from helpers.course import verdicts
from helpers.course.verdicts import Verdict, Verdicts, answer_text, judge, versus_chance


def response(text, finish="stop"):
    msg = SimpleNamespace(content=text)
    return SimpleNamespace(choices=[SimpleNamespace(message=msg, finish_reason=finish)])


def test_phrase_on_word_boundaries_case_insensitive():
    assert judge("The capital of France is paris.", "Paris").kind == "right"
    assert judge("Parisian food is good.", "Paris").kind == "wrong"


def test_a_number_does_not_match_inside_a_longer_number():
    assert judge("up to 15,000 euros.", "15,000").ok
    assert judge("15,000,000,000 euros", "15,000").kind == "wrong"
    assert judge("it costs 4.50 euros", "4").kind == "wrong" and judge("it costs 4 euros.", "4").ok


def test_wrong_says_how():
    v = judge("No, 17 is not a prime number.", "is a prime", reject=["not a prime"])
    assert v.kind == "wrong" and "not a prime" in v.why


def test_alternatives_regex_and_function():
    assert judge("It is Pending.", ["pending", "not yet paid"]).ok
    assert judge("within 120 days", re.compile(r"\b120\b")).ok
    v = judge("42", lambda t: (t.strip() == "41", "expected 41"))
    assert v.kind == "wrong" and "expected 41" in v.why


def test_cut_from_the_sdk_response():
    assert judge(response("The capital of", "length"), "Paris").kind == "cut"
    # a cut answer that already holds the fact is right, and says it was cut
    v = judge(response("Paris, and then some more", "length"), "Paris")
    assert v.kind == "right" and "cut" in v.why
    assert judge(response("", "length"), "Paris").kind == "cut"


def test_definitive_checks_are_wrong_even_when_cut():
    v = judge(response("This is a classic example of", "length"), lambda t: (t.strip() == "fraud", "one word"),
              definitive=True)
    assert v.kind == "wrong" and "also cut at max_tokens" in v.why


def test_unchecked_needs_no_expectation_and_says_what_to_look_for():
    v = judge("A poem about rain.", look_for="does it rhyme?")
    assert v.kind == "unchecked" and "rhyme" in v.why


def test_content_chunks_keep_text_only():
    chunks = [SimpleNamespace(text=None, type="thinking"), SimpleNamespace(text="Paris", type="text")]
    assert answer_text(SimpleNamespace(content=chunks)) == ("Paris", None)


def test_tally_counts_and_prints(capsys):
    tally = Verdicts()
    tally.check("Paris", "Paris", label="capital")
    tally.check(response("Lyon"), "Paris")
    tally.check("a poem", look_for="rhyme")
    tally.add(Verdict("cut", "forced call cut"))
    assert tally.counts == {"right": 1, "wrong": 1, "cut": 1, "unchecked": 1, "total": 4}
    assert "verdict (capital): ✓ right" in capsys.readouterr().out
    assert tally.check("x", "x") is None and tally.check("x", "x", show=False).ok  # printed once, not echoed
    assert list(tally.table()["verdict"]) == ["right", "wrong", "unchecked", "cut", "right", "right"]


def test_bad_kind_and_bad_expectation_are_refused():
    with pytest.raises(ValueError, match="verdict kind"):
        Verdict("maybe", "")
    with pytest.raises(TypeError, match="give a phrase"):
        judge("x", 3)


def test_versus_chance_is_computed_from_the_numbers():
    assert "at chance" in versus_chance(0.15, 6, n=48)
    assert "above chance" in versus_chance(0.5, 6, n=48)
    assert "no better than always answering the commonest label" in versus_chance(0.3, 6, majority_rate=0.35, n=48)
    assert "not measured" in versus_chance(None, 6)


def test_an_answer_that_filled_its_max_length_is_wrong_and_says_so_not_cut():
    from helpers.course.verdicts import judge

    text = "The Everyday account has no monthly fee as longs"  # 48 characters, the string's maxLength
    v = judge(text, "4 euros", finish_reason="stop", max_chars=48)
    assert v.kind == "wrong" and "all 48 characters the schema allowed" in v.why
    assert judge(text, "monthly fee", max_chars=48).kind == "right"
    assert "characters the schema allowed" not in judge("short", "4 euros", max_chars=48).why


HAIKU = "In the heart of the wind, a silent one, a silent one, a silent one, a silent one, a silent one, a"


def test_an_answer_stuck_in_a_loop_is_wrong_not_cut():
    assert verdicts.stuck_in_loop(HAIKU) == ("a silent one", 5)
    for v in (judge(HAIKU, finish_reason="length"), judge(HAIKU, "breeze", finish_reason="length"),
              judge(HAIKU, look_for="three short lines")):
        assert v.kind == "wrong" and "stuck in a loop: 'a silent one' 5 times in a row" in v.why, v
    right = judge("Paris. Paris. Paris. Paris. Paris.", "Paris", finish_reason="length")
    assert right.kind == "right" and "then stuck in a loop" in right.why  # the fact was said before the loop


@pytest.mark.parametrize("text", ["1, 2, 3, 4, 5, 6, 7, 8", "|---|---|---|---|---|---|---|---|",
                                  "The capital of France is Paris.", "Yes. Yes. Yes.",
                                  "one, two, three, four, five, six", "T1001, T1002, T1003, T1004, T1005"])
def test_lists_tables_and_a_few_repeats_are_not_loops(text):
    assert verdicts.stuck_in_loop(text) is None


def test_a_cut_answer_that_already_says_a_rejected_phrase_is_wrong():
    v = judge("No, the other holder is not responsible for the", ["yes", "both holders"], reject=["not responsible"],
              finish_reason="length")
    assert v.kind == "wrong" and "'not responsible'" in v.why
    assert judge("The other holder is", ["yes"], reject=["not responsible"], finish_reason="length").kind == "cut"


def test_a_list_of_wordings_names_the_one_found_or_the_first_missing_never_the_whole_list():
    wordings = ["4 euros", "four euros", "€4"]
    assert judge("It is €4 a month.", wordings).why == "says '€4'"
    assert judge("It is 2 euros.", wordings).why == "does not say '4 euros' (nor 2 other wordings)"
    assert judge("within 120 days", re.compile(r"\b120\b")).why == "says '120'"  # the match, not the regex
