"""tts.normalize: numbers, amounts, dates, times, phones and symbols become words."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.normalize import CHATTTS_TAG, MAX_DIGIT_RUN, chattts_text, normalize_for_speech, num2words_lang

CASES = [
    ("I have $5.20.", "I have five dollars and twenty cents."),
    ("$1 and $0.05", "one dollar and five cents"),
    ("It costs $1,250.", "It costs one thousand, two hundred and fifty dollars."),
    ("$1.5 million", "one point five million dollars"),
    ("€5 or 5€ or £3.50", "five euros or five euros or three pounds and fifty pence"),
    ("Up 12.5% today", "Up twelve point five percent today"),
    ("Meet at 3:30 pm.", "Meet at three thirty p m."),
    ("at 3:05 PM", "at three oh five p m"),
    ("at 10:00", "at ten o'clock"),
    ("at 12:00 a.m.", "at twelve a m."),
    ("at 9:15 a.m. tomorrow", "at nine fifteen a m tomorrow"),
    ("On 2026-11-25.", "On November twenty-fifth, twenty twenty-six."),
    ("due 11/25", "due November twenty-fifth"),
    ("due 11/25/2026", "due November twenty-fifth, twenty twenty-six"),
    ("add 1/2 cup", "add one half cup"),
    ("Call +1 415 555 0100.", "Call plus one, four one five, five five five, zero one zero zero."),
    ("Call (415) 555-0100", "Call four one five, five five five, zero one zero zero"),
    ("dial 555-0100", "dial five five five, zero one zero zero"),
    ("the 1st, 22nd and 103rd", "the first, twenty-second and one hundred and third"),
    ("A & B", "A and B"),
    ("mail x@y.com", "mail x at y dot com"),
    ("2+2=4", "two plus two equals four"),
    ("press #5", "press number five"),
    ("In 1999", "In nineteen ninety-nine"),
    ("pages 10-20", "pages ten to twenty"),
    ("it is -5 outside", "it is minus five outside"),
    ("order 123456789012", "order one two three four five six seven eight nine zero one two"),
    ("agent 007", "agent zero zero seven"),
    ("pi is 3.14", "pi is three point one four"),
    ("21°C", "twenty-one degrees Celsius"),
    ("No numbers here.", "No numbers here."),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_english(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


def test_other_languages_use_their_words_and_decimal_comma() -> None:
    es = normalize_for_speech("Pagué 5,20 € el 2026-11-25, un 50% de 1.250", "es")
    assert es == (
        "Pagué cinco euros con veinte céntimos el veinticinco noviembre dos mil veintiséis, "
        "un cincuenta por ciento de mil doscientos cincuenta"
    )
    fr = normalize_for_speech("à 15:30, 21,5 %", "fr-FR")
    assert fr == "à quinze trente, vingt et un virgule cinq pour cent"
    assert normalize_for_speech("3 Äpfel", "de") == "drei Äpfel"


def test_unsupported_language_falls_back_to_english_numbers() -> None:
    assert num2words_lang("zh") == "en"
    assert num2words_lang("pt-BR") == "pt_BR"
    assert normalize_for_speech("我有3个", "zh") == "我有three个"


def test_chattts_text_keeps_only_what_chattts_reads() -> None:
    out = chattts_text("It's 3:00, twenty-five? Café! (ok) [laugh] see you at 10 [break_3]")
    assert out == "Its three o clock, twenty five. Cafe. ok [laugh] see you at ten [break_3]"


def test_chattts_text_keeps_cjk() -> None:
    assert chattts_text("你好，世界。") == "你好,世界。"  # NFKC: fullwidth comma → ","


_ALPHABET = st.sampled_from(
    list("0123456789") + list(" ,.:/-+%$€£¥₹&@#=*°()'?!") + list("aZpmAMkKstndrh") + ["١", "５", "²", "½"]
)
_CUR = re.compile(r"[$€£¥₹]")


@settings(max_examples=300, deadline=None)
@given(st.text(_ALPHABET, max_size=40))
def test_property_no_digits_or_currency_survive(text: str) -> None:
    out = normalize_for_speech(text)
    assert not any(c.isdigit() for c in out), (text, out)
    assert not _CUR.search(out), (text, out)


@settings(max_examples=300, deadline=None)
@given(st.text(_ALPHABET, max_size=40), st.sampled_from(["en", "es", "fr", "de", "zh", "ja"]))
def test_property_chattts_text_only_keeps_chattts_alphabet(text: str, language: str) -> None:
    out = chattts_text(text, language)
    rest = CHATTTS_TAG.sub("", out)
    # exactly the characters ChatTTS's own normalizer keeps (ChatTTS/norm.py reject_pattern)
    assert re.fullmatch(r"[\u4e00-\u9fffA-Za-z，。、,. ]*", rest), (text, out)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_property_any_integer_is_spoken(n: int) -> None:
    out = normalize_for_speech(f"total {n} items")
    assert out.startswith("total ") and out.endswith(" items")
    assert not any(c.isdigit() for c in out)


# Shapes that made a pattern retry a long run from each of its positions (quadratic: "9" × 4,000 took 4.6 s).
_PATHOLOGICAL = ["9", "9 ", "9-", "1,000", "9.", "(12) ", "+9", "9:", "9/", "#9", "$9", "9%", "9 $", "9,", "a.",
                 "a@", "a@b.", " ", "\t", " -", " ,", " !", " &", "12:34 ", "2024-", "-9", "9th "]


@pytest.mark.parametrize("shape", _PATHOLOGICAL)
def test_every_pattern_is_linear_on_long_runs(shape: str) -> None:
    """8,000 characters of each shape: linear patterns take milliseconds, a quadratic one tens of seconds.

    The bound is 50× what a linear pass takes on a loaded 2-core machine, so only backtracking can fail it.
    """
    text = (shape * (8000 // len(shape) + 1))[:8000]
    started = time.process_time()
    out = chattts_text(text)
    assert time.process_time() - started < 5.0
    assert not any(c.isdigit() for c in out)


def test_digit_runs_are_capped() -> None:
    capped = normalize_for_speech("Your code is " + "7" * MAX_DIGIT_RUN + ".")
    assert normalize_for_speech("Your code is " + "7" * 5000 + ".") == capped
    assert len(capped) < 2000
