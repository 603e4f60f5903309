"""Text file bytes -> str, and the encoding that was used.

In order, stopping at the first that applies:

1. a byte-order mark (UTF-32 LE/BE, UTF-8, UTF-16 LE/BE): exact;
2. NUL bytes: binary, rejected (even when the bytes happen to be valid UTF-8);
3. a PEP 263 coding declaration in the first two lines of a Python file (``# -*- coding:
   shift_jis -*-``): exact;
4. valid UTF-8;
5. a guess by charset-normalizer among common legacy encodings, kept only when it is
   decided: every best-scored candidate decodes to the same text, or one of them is
   Windows-1252 (the superset of Latin-1 that WHATWG also uses for "latin1" labels, and
   by far the most common legacy encoding of Western text). Anything else is undecidable
   and rejected with the UTF-8 error, as before.

Why the guess is guarded (measured with charset-normalizer 3.5 on one-line texts):
unrestricted, it reads Latin-1 "Café" as cp1006 (Farsi), a French sentence as cp1257,
KOI8-R Russian as cp1255 (Hebrew) and GB18030 Chinese as cp949 (Korean). Restricted to
the encodings below and with the tie rule, it decodes Latin-1/cp1252 French and German,
cp1250 Polish, KOI8-R Russian, ISO-8859-7 Greek, long Shift-JIS Japanese and EUC-KR
Korean correctly, and refuses (does not guess) short CJK text, cp1251 Russian (tied with
Greek) and GB18030 Chinese (tied with Korean), where a guess would be mojibake.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from .._deps import require

#: Longest BOM first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: The legacy encodings charset-normalizer may choose from (Western, Central European,
#: Cyrillic, Greek, Japanese, Chinese, Korean); the first one wins ties (see the docstring).
LEGACY_ENCODINGS = (
    "cp1252",
    "cp1250",
    "cp1251",
    "koi8_r",
    "iso8859_7",
    "cp932",
    "euc_jp",
    "gb18030",
    "big5",
    "cp949",
)
_PYTHON_SUFFIXES = frozenset({".py", ".pyi", ".pyw"})
#: PEP 263: a comment matching this on line 1 or 2 declares the file's encoding.
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_BLANK_OR_COMMENT = re.compile(rb"^[ \t\f]*(?:[#\r]|$)")


class TextDecodeError(ValueError):
    """Bytes that are binary, or text whose encoding cannot be told reliably."""


@dataclass(frozen=True)
class DecodedText:
    """A decoded text and the codec name it was decoded with (``utf-8``, ``cp1252``, ...)."""

    text: str
    encoding: str


def decode_text(data: bytes, *, suffix: str = "") -> DecodedText:
    """Decode a text file's bytes (see the module docstring for the order of the rules).

    Args:
        data: the whole file.
        suffix: the file's lower-case extension; ``.py`` files honour coding declarations.

    Raises:
        TextDecodeError: binary data, a bad coding declaration, or an undecidable encoding.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data[len(bom) :], encoding, f"a {encoding} byte-order mark")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise TextDecodeError(f"binary data, not text (NUL byte at byte {nul})")
    if suffix in _PYTHON_SUFFIXES:
        declared = _coding_declaration(data)
        if declared is not None:
            return _strict(data, declared, f"its coding declaration ({declared})")
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as e:
        utf8_error = f"not UTF-8 text ({e.reason} at byte {e.start})"
    guessed = _guess(data)
    if guessed is None:
        raise TextDecodeError(
            f"{utf8_error}, and no byte-order mark, coding declaration or unambiguous "
            "legacy encoding was found; convert it to UTF-8 (e.g. iconv -f ENCODING -t UTF-8)"
        )
    return guessed


def _strict(data: bytes, encoding: str, why: str) -> DecodedText:
    try:
        return DecodedText(data.decode(encoding), encoding)
    except UnicodeDecodeError as e:
        raise TextDecodeError(
            f"not valid {encoding} text ({e.reason} at byte {e.start}), although {why} says so"
        ) from None


def _coding_declaration(data: bytes) -> str | None:
    """The PEP 263 encoding a Python file declares (None when it declares none)."""
    lines = data.split(b"\n", 2)[:2]
    for i, line in enumerate(lines):
        m = _COOKIE.match(line)
        if m:
            name = m.group(1).decode("ascii")
            try:
                encoding = codecs.lookup(name).name
            except LookupError:
                raise TextDecodeError(
                    f"unknown encoding {name!r} in its coding declaration (line {i + 1})"
                ) from None
            return encoding
        if i == 0 and not _BLANK_OR_COMMENT.match(line):
            return None  # the declaration may sit on line 2 only below a comment/blank line
    return None


def _guess(data: bytes) -> DecodedText | None:
    from_bytes = require("charset_normalizer", "to guess a legacy text encoding").from_bytes
    matches = list(from_bytes(data, cp_isolation=list(LEGACY_ENCODINGS)))
    if not matches:
        return None
    best = min(m.chaos for m in matches)
    tied = [m for m in matches if m.chaos <= best + 1e-9]
    # Equivalent decodings are merged by charset-normalizer: could_be_from_charset lists
    # every encoding giving the same text, so the Windows-1252 label is found there too.
    for name in LEGACY_ENCODINGS:
        for m in tied:
            if name in m.could_be_from_charset and (name == "cp1252" or len(tied) == 1):
                try:
                    return DecodedText(data.decode(name), name)
                except UnicodeDecodeError:  # a sampled guess the whole file contradicts
                    return None
    return None
