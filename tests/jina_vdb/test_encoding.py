"""Text decoding: BOMs, coding declarations, UTF-8, guarded legacy guesses, binary refused."""

from __future__ import annotations

import pytest

from jina_vdb.sources.encoding import TextDecodeError, decode_text

FRENCH = "Café crème brûlée à la française, déjà vu. Ça coûte cher.\n"
JAPANESE = (
    "# 日本語のコメントです。東京から新幹線で行けます。\nx = '富士山は日本で一番高い山です'\n"
)


@pytest.mark.parametrize(
    ("text", "codec", "recorded"),
    [
        ("\ufeffUTF-16 LE with a BOM: héllo 日本", "utf-16-le", "utf-16-le"),
        ("\ufeffUTF-16 BE with a BOM: héllo 日本", "utf-16-be", "utf-16-be"),
        ("\ufeffUTF-32 LE with a BOM: héllo", "utf-32-le", "utf-32-le"),
        ("\ufeffUTF-32 BE with a BOM: héllo", "utf-32-be", "utf-32-be"),
        ("\ufeffUTF-8 with a BOM: héllo", "utf-8", "utf-8-sig"),
        ("plain UTF-8: héllo 日本", "utf-8", "utf-8"),
    ],
)
def test_unicode_files_decode_exactly(text: str, codec: str, recorded: str) -> None:
    decoded = decode_text(text.encode(codec))
    assert decoded.text == text.lstrip("\ufeff") and decoded.encoding == recorded


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("Caf\xe9\n", "latin-1"),  # the printf 'Caf\xe9\n'
        (FRENCH, "latin-1"),
        ("Grüße aus München, schöne Straße\n", "latin-1"),
        ("“Smart quotes” — and an en dash – cost 5 € in the café.\n", "cp1252"),
    ],
)
def test_western_legacy_text_is_read_as_windows_1252(text: str, codec: str) -> None:
    decoded = decode_text(text.encode(codec), suffix=".txt")
    assert (decoded.text, decoded.encoding) == (text, "cp1252")


def test_shift_jis_python_with_and_without_a_coding_declaration() -> None:
    declared = "# -*- coding: shift_jis -*-\nx = '富士山'\n"
    decoded = decode_text(declared.encode("shift_jis"), suffix=".py")
    assert (decoded.text, decoded.encoding) == (declared, "shift_jis")
    # without a declaration: a Japanese comment and string are long enough to be decided
    guessed = decode_text(JAPANESE.encode("shift_jis"), suffix=".py")
    assert (guessed.text, guessed.encoding) == (JAPANESE, "cp932")
    # a declaration on line 2 below a shebang counts; on line 2 below code it does not
    shebang = b"#!/usr/bin/env python\n# vim: set fileencoding=latin-1 :\nx = 'caf\xe9'\n"
    assert decode_text(shebang, suffix=".py").encoding == "iso8859-1"
    # the declaration is only read in Python files (elsewhere this short text is undecidable)
    with pytest.raises(TextDecodeError, match="not UTF-8 text"):
        decode_text(declared.encode("shift_jis"), suffix=".txt")


def test_bad_declarations_and_binary_and_undecidable_text_are_refused() -> None:
    with pytest.raises(TextDecodeError, match=r"unknown encoding 'nonesuch'.*line 1"):
        decode_text(b"# coding: nonesuch\nx = 1\n", suffix=".py")
    with pytest.raises(TextDecodeError, match=r"not valid utf-8 .* coding declaration"):
        decode_text(b"# coding: utf-8\nx = 'caf\xe9'\n", suffix=".py")
    with pytest.raises(TextDecodeError, match=r"^binary data, not text \(NUL byte at byte 8\)"):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", suffix=".txt")
    with pytest.raises(TextDecodeError, match="binary data"):
        decode_text(b"\x00\x01\x02 valid UTF-8 but NULs", suffix=".txt")
    # three Shift-JIS characters read equally well as Chinese or Korean: no guess
    with pytest.raises(TextDecodeError, match=r"^not UTF-8 text \(invalid start byte at byte 0\)"):
        decode_text("富士山\n".encode("shift_jis"))
    with pytest.raises(TextDecodeError, match="convert it to UTF-8"):
        decode_text(bytes(range(128, 256)) * 8)
