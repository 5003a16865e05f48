"""Speech-text normalizer: turn what an LLM or a script writes into words a TTS can say.

Rules of this file: pure functions, no I/O, no clocks, no randomness. Input is
any string; output is the same sentence with every number, amount, date, time,
phone number, percentage and symbol written out as words, so no digit and no
currency sign survives (ChatTTS silently *deletes* them; other engines read
them inconsistently; digit runs longer than :data:`MAX_DIGIT_RUN` are cut). Every
pattern runs in time linear in the text: the text comes from API callers and
LLMs (``tests/test_normalize.py`` feeds pathological shapes). Numbers are spelled by num2words in the sentence's
language where num2words supports it, else in English. Words around the
numbers are left alone.

Why hand-written: num2words spells numbers but does not find them in text, and
the text-normalization packages (nemo_text_processing, WeTextProcessing) pull
heavy grammars (pynini) for the few patterns a phone agent needs. Each pattern
below is one regex plus one small speller, applied in a fixed order (most
specific first: phone numbers and dates before plain numbers).

:func:`chattts_text` additionally reduces the result to the characters ChatTTS
keeps (letters, CJK, spaces, ``,`` and ``.``), so hyphens in "twenty-five" do
not glue words together and ``?!;:`` become pauses instead of vanishing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from num2words import CONVERTER_CLASSES, num2words

__all__ = ["chattts_text", "normalize_for_speech", "num2words_lang"]

_MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre"),
    "pt": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
           "novembro", "dezembro"),
}
#: Languages writing 1.250,50 (decimal comma, dot or space for thousands).
_DECIMAL_COMMA = {"es", "fr", "de", "it", "pt", "nl", "da", "sv", "no", "fi", "pl", "cs", "ru", "tr", "ro"}
#: Words for symbols and units, per language (falls back to English).
_WORDS: dict[str, dict[str, str]] = {
    "en": {"&": "and", "@": "at", "%": "percent", "+": "plus", "=": "equals", "#": "number", "minus": "minus",
           "to": "to", "dot": "dot", "over": "over", "°": "degrees", "*": "star", "half": "one half",
           "quarter": "quarters", "third": "thirds", "am": "a m", "pm": "p m", "oclock": "o'clock"},
    "es": {"&": "y", "@": "arroba", "%": "por ciento", "+": "más", "=": "igual a", "#": "número", "minus": "menos",
           "to": "a", "dot": "punto", "over": "entre", "°": "grados", "*": "asterisco"},
    "fr": {"&": "et", "@": "arobase", "%": "pour cent", "+": "plus", "=": "égale", "#": "numéro", "minus": "moins",
           "to": "à", "dot": "point", "over": "sur", "°": "degrés", "*": "étoile"},
    "de": {"&": "und", "@": "at", "%": "Prozent", "+": "plus", "=": "gleich", "#": "Nummer", "minus": "minus",
           "to": "bis", "dot": "Punkt", "over": "durch", "°": "Grad", "*": "Stern"},
    "it": {"&": "e", "@": "chiocciola", "%": "per cento", "+": "più", "=": "uguale", "#": "numero",
           "minus": "meno", "to": "a", "dot": "punto", "over": "su", "°": "gradi", "*": "asterisco"},
    "pt": {"&": "e", "@": "arroba", "%": "por cento", "+": "mais", "=": "igual a", "#": "número",
           "minus": "menos", "to": "a", "dot": "ponto", "over": "sobre", "°": "graus", "*": "asterisco"},
}
#: Currency sign → (ISO code, singular, plural, cent singular, cent plural) for English.
_CURRENCIES: dict[str, tuple[str, str, str, str, str]] = {
    "$": ("USD", "dollar", "dollars", "cent", "cents"),
    "€": ("EUR", "euro", "euros", "cent", "cents"),
    "£": ("GBP", "pound", "pounds", "penny", "pence"),
    "¥": ("JPY", "yen", "yen", "sen", "sen"),
    "₹": ("INR", "rupee", "rupees", "paisa", "paise"),
}
_CUR_SIGNS = "".join(_CURRENCIES)
_SCALES = {"k": 10**3, "thousand": 10**3, "m": 10**6, "mn": 10**6, "million": 10**6, "b": 10**9, "bn": 10**9,
           "billion": 10**9, "trillion": 10**12}
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


def num2words_lang(language: str) -> str:
    """Map an agent language (``en``, ``pt-BR``) to a num2words code; English when unsupported."""
    code = language.replace("-", "_")
    if code in CONVERTER_CLASSES:
        return code
    base = code.split("_")[0].lower()
    return base if base in CONVERTER_CLASSES else "en"


def _words(lang: str) -> dict[str, str]:
    return {**_WORDS["en"], **_WORDS.get(lang.split("_")[0], {})}


def _digits(s: str, lang: str) -> str:
    return " ".join(_n2w(Decimal(int(c)), lang) for c in s if c.isdigit())


@functools.lru_cache(maxsize=4096)
def _n2w(value: Decimal | int, lang: str, to: str = "cardinal") -> str:
    """num2words with a digit-by-digit fallback (huge values, unsupported modes); cached (text is full of
    the same small numbers, and num2words costs ~0.2 ms a call)."""
    try:
        return str(num2words(value, lang=lang, to=to))
    except (NotImplementedError, OverflowError, ValueError, TypeError, InvalidOperation, IndexError, KeyError):
        if to != "cardinal":
            return _n2w(value, lang)
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        neg = text.startswith("-")
        whole, _, frac = text.lstrip("-").partition(".")
        out = _digits(whole, lang) + (f" {_words(lang)['dot']} " + _digits(frac, lang) if frac else "")
        return (f"{_words(lang)['minus']} " if neg else "") + out


def _number(raw: str, lang: str) -> str:
    """Spell a number as written (``1,250``, ``3.14``, ``0042``)."""
    clean = raw.replace(",", "")
    whole = clean.split(".")[0]
    if len(whole) > 9 or (len(whole) > 1 and whole.startswith("0") and "." not in clean):
        # IDs, account and unseparated phone numbers, "007": digit by digit.
        return _n2w(Decimal(clean), lang) if len(whole) > 15 else _digits(clean, lang)
    return _n2w(Decimal(clean), lang)


def _phone(m: re.Match[str], lang: str) -> str:
    text = m.group(0)
    digits = [c for c in text if c.isdigit()]
    groups = re.findall(r"\d+", text)
    plus = text.lstrip().startswith("+")
    parens = "(" in text
    seps = len(groups) - 1
    shaped = seps >= 1 and len(groups[-1]) >= 4 and all(len(g) <= 4 for g in groups)
    if not 7 <= len(digits) <= 15 or not (plus or parens or shaped):
        return text
    spoken = ", ".join(_digits(g, lang) for g in groups)
    return (f"{_words(lang)['+']} " if plus else "") + spoken


def _date_words(year: int | None, month: int, day: int, lang: str) -> str:
    if lang.startswith("en"):
        out = f"{_MONTHS['en'][month - 1]} {_n2w(day, lang, 'ordinal')}"
        return out + (f", {_n2w(year, lang, 'year')}" if year is not None else "")
    months = _MONTHS.get(lang.split("_")[0])
    parts = [_n2w(day, lang), months[month - 1] if months else _n2w(month, lang)]
    return " ".join(parts + ([_n2w(year, lang, "year")] if year is not None else []))


def _iso_date(m: re.Match[str], lang: str) -> str:
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0).replace("-", " ")  # not a date: leave the numbers to later passes
    return _date_words(year, month, day, lang)


def _slash(m: re.Match[str], lang: str) -> str:
    a, b, y = int(m.group(1)), int(m.group(2)), m.group(3)
    w = _words(lang)
    if y is None and b in (2, 3, 4) and 0 < a < b and lang.startswith("en"):
        return {2: w["half"], 3: f"{_n2w(a, lang)} {w['third']}", 4: f"{_n2w(a, lang)} {w['quarter']}"}[b]
    month, day = (a, b) if lang.startswith("en") else (b, a)
    if 1 <= month <= 12 and 1 <= day <= 31:
        year = None if y is None else int(y) + (2000 if len(y) == 2 else 0)
        return _date_words(year, month, day, lang)
    return f"{_n2w(a, lang)} {w['over']} {_n2w(b, lang)}" + (f" {w['over']} {_n2w(int(y), lang)}" if y else "")


def _time(m: re.Match[str], lang: str) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    ampm = (m.group(3) or "").replace(".", "").replace(" ", "").lower()
    if hour > 24 or minute > 59:
        return f"{_n2w(hour, lang)} {_n2w(minute, lang)}"
    w = _words(lang)
    if not lang.startswith("en"):
        out = _n2w(hour, lang) + ("" if minute == 0 else f" {_n2w(minute, lang)}")
        return out + (f" {w[ampm]}" if ampm else "")
    if minute == 0:
        spoken = _n2w(hour, lang) + ("" if ampm else f" {w['oclock']}")
    elif minute < 10:
        spoken = f"{_n2w(hour, lang)} oh {_n2w(minute, lang)}"
    else:
        spoken = f"{_n2w(hour, lang)} {_n2w(minute, lang)}"
    return spoken + (f" {w[ampm]}" if ampm else "")


def _money(sign: str, amount: str, scale: str | None, lang: str) -> str:
    code, one, many, cent1, cents = _CURRENCIES[sign]
    value = Decimal(amount.replace(",", ""))
    if scale:
        unit = scale.lower()
        if unit in ("thousand", "million", "billion", "trillion"):
            spoken = f"{_n2w(value, lang)} {unit}"
        else:
            spoken = _n2w(value * _SCALES[unit], lang)
        return f"{spoken} {many if lang.startswith('en') else code}"
    if not lang.startswith("en"):
        try:
            return str(num2words(value, lang=lang, to="currency", currency=code))
        except (NotImplementedError, KeyError, ValueError, TypeError, OverflowError, InvalidOperation):
            return f"{_n2w(value, lang)} {code}"
    whole = int(value)
    frac = int(((value - whole) * 100).to_integral_value())
    parts = []
    if whole or not frac:
        parts.append(f"{_number(str(whole), lang)} {one if whole == 1 else many}")
    if frac:
        parts.append(f"{_n2w(frac, lang)} {cent1 if frac == 1 else cents}")
    return " and ".join(parts)


_SCALE_RE = r"(?:\s?(k|mn|m|bn|b|thousand|million|billion|trillion)\b)?"
_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]
_RULES: list[_Rule] = [
    # e-mail addresses: "a.b@example.com" → "a dot b at example dot com"
    # (starts only where a run of address characters starts, so a long run without "@" is scanned once)
    (re.compile(r"(?<![\w.+-])([.+-]*)(\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b)"),
     lambda m, lg: m.group(1) + m.group(2).replace(".", f" {_words(lg)['dot']} ")
     .replace("@", f" {_words(lg)['@']} ")),
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), _iso_date),
    # phone numbers: at most 8 groups (E.164 has 15 digits), so a long "(12) (12) …" is not retried from each group
    (re.compile(r"(?<![\w+])(?:\+\s?)?(?:\(\d{1,4}\)\s?|\d+[ .-]){1,7}\d+(?![\w.]\d)|(?<![\w+])\+\d{7,15}\b"),
     _phone),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{4}|\d{2}))?\b"), _slash),
    (re.compile(r"\b(\d{1,2}):(\d{2})(?::\d{2})?(?:\s?([AaPp]\.?\s?[Mm])(?![A-Za-z])(?:\.(?!\s*$|\s+[A-Z]))?)?"),
     _time),
    (re.compile(rf"([{re.escape(_CUR_SIGNS)}])\s?({_NUM}){_SCALE_RE}", re.IGNORECASE),
     lambda m, lg: _money(m.group(1), m.group(2), m.group(3), lg)),
    # `(?<!\d)`: a number that must be followed by something starts only where its digits start; without it a
    # run of n digits is tried from each of its n positions, n steps each (9 × 4,000: seconds).
    (re.compile(rf"(?<!\d)({_NUM}){_SCALE_RE}\s?([{re.escape(_CUR_SIGNS)}])", re.IGNORECASE),
     lambda m, lg: _money(m.group(3), m.group(1), m.group(2), lg)),
    (re.compile(rf"(?<!\d)({_NUM})\s?%"), lambda m, lg: f"{_number(m.group(1), lg)} {_words(lg)['%']}"),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE), lambda m, lg: _n2w(int(m.group(1)), lg, "ordinal")),
    (re.compile(r"\b(\d+)(?:er|ère|e|ème|º|ª|°)(?=\s|$)"),
     lambda m, lg: _n2w(int(m.group(1)), lg, "ordinal") if not lg.startswith("en") else m.group(0)),
    (re.compile(r"#\s?(\d+)"), lambda m, lg: f"{_words(lg)['#']} {_number(m.group(1), lg)}"),
    (re.compile(r"(\d)\s?°\s?([CF])\b"),
     lambda m, lg: f"{m.group(1)} {_words(lg)['°']} {'Celsius' if m.group(2) == 'C' else 'Fahrenheit'}"),
    # ranges "10-20" → "10 to 20"; a leading minus "-5" → "minus 5"
    (re.compile(r"(?<=\d)\s?[-–]\s?(?=\d)"), lambda m, lg: f" {_words(lg)['to']} "),
    (re.compile(r"(?<![\w])[-−](?=\d)"), lambda m, lg: f"{_words(lg)['minus']} "),
    (re.compile(r"\b(1[1-9]\d\d|20\d\d)\b(?![.,]\d)"), lambda m, lg: _n2w(int(m.group(1)), lg, "year")),
    (re.compile(_NUM), lambda m, lg: _number(m.group(0), lg)),
    (re.compile(r"\d"), lambda m, lg: _digits(m.group(0), lg)),
]
#: Longest digit run spoken; the rest of a longer run is dropped (64 digits already take ~30 s to say, and the
#: text comes from API callers and LLMs).
MAX_DIGIT_RUN = 64
_LONG_RUN = re.compile(rf"(\d{{{MAX_DIGIT_RUN}}})\d+")
_WHITESPACE_RUN = re.compile(r"(\s)\s+")
_LOCAL_NUM = re.compile(r"\b\d{1,3}(?:\.\d{3})+(?:,\d+)?\b|\b\d+,\d+\b")
_SYMBOLS = re.compile(r"\s*([&@%+=#°*])\s*")
_LEFTOVER_CUR = re.compile(rf"[{re.escape(_CUR_SIGNS)}]")


def normalize_for_speech(text: str, language: str = "en") -> str:
    """Write numbers, amounts, dates, times, phone numbers and symbols out as words."""
    lang = num2words_lang(language)
    out = _LONG_RUN.sub(r"\1", unicodedata.normalize("NFKC", text))
    out = _WHITESPACE_RUN.sub(r"\1", out)  # the `\s*` patterns below would rescan a long run from each space
    if lang.split("_")[0] in _DECIMAL_COMMA:
        # 1.250,50 → 1250.50 so the rules below read one convention.
        out = _LOCAL_NUM.sub(lambda m: m.group(0).replace(".", "").replace(",", "."), out)
    for pattern, speak in _RULES:
        out = pattern.sub(lambda m, s=speak: s(m, lang), out)  # type: ignore[misc]
    words = _words(lang)
    out = _SYMBOLS.sub(lambda m: f" {words[m.group(1)]} ", out)
    out = _LEFTOVER_CUR.sub(lambda m: f" {_CURRENCIES[m.group(0)][2]} ", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


_CHATTTS_PAUSE = re.compile(r"\s*[!?;:…！？；：]+\s*")
_CHATTTS_SPACE = re.compile(r"\s*[\-–—/()\[\]{}\"“”<>|\\]+\s*")
_CHATTTS_DROP = re.compile(r"[^A-Za-z ,.\u4e00-\u9fff，。、]")
#: ChatTTS control tags an operator may write in a scripted line; kept verbatim.
CHATTTS_TAG = re.compile(r"\[(?:uv_break|v_break|lbreak|laugh|break_[0-7]|laugh_[0-2]|oral_[0-9])\]")


def _chattts_piece(text: str, language: str) -> str:
    out = normalize_for_speech(text, language).replace("o'clock", "o clock")
    out = "".join(c for c in unicodedata.normalize("NFKD", out) if not unicodedata.combining(c))
    out = _CHATTTS_PAUSE.sub(". ", out)
    out = re.sub(r"(?<=\w)['’](?=\w)", "", out)
    out = _CHATTTS_SPACE.sub(" ", out)
    out = _WHITESPACE_RUN.sub(r"\1", _CHATTTS_DROP.sub(" ", out))  # runs first: `\s+,` rescans a long run
    out = re.sub(r"\s+([,.，、])", r"\1", out)
    out = re.sub(r"([,.，、])(?:\s*[,.，、])+", r"\1", out)
    return re.sub(r"\s{2,}", " ", out)


def chattts_text(text: str, language: str = "en") -> str:
    """:func:`normalize_for_speech`, then only what ChatTTS keeps: ASCII letters, CJK, spaces, ``,`` and ``.``.

    ChatTTS deletes every other character. Hyphens, slashes and brackets become spaces (``twenty-five`` must
    not become ``twentyfive``), accents are stripped (``café`` → ``cafe``, not ``caf``), apostrophes vanish
    inside words, ``?!;:`` become a full stop, which ChatTTS reads as a pause. ChatTTS control tags such as
    ``[laugh]`` or ``[uv_break]`` are kept as written.
    """
    pieces = CHATTTS_TAG.split(text)
    tags = CHATTTS_TAG.findall(text)
    out = _chattts_piece(pieces[0], language)
    for tag, piece in zip(tags, pieces[1:], strict=True):
        out += f" {tag} " + _chattts_piece(piece, language)
    return re.sub(r"\s{2,}", " ", out).strip(" ,，、")
