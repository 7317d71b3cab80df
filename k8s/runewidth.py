"""Display width of text as Helm's tables measure it: go-runewidth v0.0.9.

Helm 3.22 lays out ``helm ls`` with ``github.com/gosuri/uitable`` v0.0.4, which
measures cells with ``github.com/mattn/go-runewidth`` v0.0.9 (the versions in
Helm's go.sum). Its width of a rune is 0 for the ``nonprint``, ``combining`` and
``notassigned`` tables (control characters C0/C1/DEL included), 2 for the
``doublewidth`` table (and for ``private``/``ambiguous`` under an East Asian
locale), 1 otherwise; a string's width is the sum (no grapheme clusters in
this version). Python's ``unicodedata`` follows a newer Unicode than those
tables, and libraries such as ``wcwidth`` disagree with them on emoji,
combining marks and control characters, so the tables are copied here
verbatim (merged into disjoint ranges) from ``runewidth_table.go`` and
``runewidth.go`` of that version: matching Helm byte for byte is the point.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Mapping

Ranges = tuple[tuple[int, int], ...]


def _ranges(data: str) -> Ranges:
    """Parse ``"0300-036F 0483-0489 070F"``: hex code points, a range or a single one."""
    out = []
    for item in data.split():
        first, _, last = item.partition("-")
        out.append((int(first, 16), int(last or first, 16)))
    return tuple(out)


# nonprint + combining + notassigned: width 0 (checked first, as in RuneWidth).
ZERO_WIDTH: Ranges = _ranges("""
0000-001F 007F-009F 00AD 0300-036F 0483-0489 070F 07EB-07F3 0C00 0C04 0D00-0D01 135D-135F
180B-180E 1A7F 1AB0-1AC0 1B6B-1B73 1DC0-1DF9 1DFB-1DFF 200B-200F 2028-202E 206A-206F
20D0-20F0 27E6-27ED 2985-2986 2CEF-2CF1 2DE0-2DFF 3099-309A A66F-A672 A674-A67D A69E-A69F
A6F0-A6F1 A8E0-A8F1 D800-DFFF FE20-FE2F FEFF FFF9-FFFB FFFE-FFFF 101FD 10376-1037A
10EAB-10EAC 10F46-10F50 11300-11301 1133B-1133C 11366-1136C 11370-11374 16AF0-16AF4
1D165-1D169 1D16D-1D172 1D17B-1D182 1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1E000-1E006
1E008-1E018 1E01B-1E021 1E023-1E024 1E026-1E02A 1E8D0-1E8D6
""")

# doublewidth: width 2.
DOUBLE_WIDTH: Ranges = _ranges("""
1100-115F 231A-231B 2329-232A 23E9-23EC 23F0 23F3 25FD-25FE 2614-2615 2648-2653 267F 2693
26A1 26AA-26AB 26BD-26BE 26C4-26C5 26CE 26D4 26EA 26F2-26F3 26F5 26FA 26FD 2705 270A-270B
2728 274C 274E 2753-2755 2757 2795-2797 27B0 27BF 2B1B-2B1C 2B50 2B55 2E80-2E99 2E9B-2EF3
2F00-2FD5 2FF0-2FFB 3000-303E 3041-3096 3099-30FF 3105-312F 3131-318E 3190-31E3 31F0-321E
3220-3247 3250-4DBF 4E00-A48C A490-A4C6 A960-A97C AC00-D7A3 F900-FAFF FE10-FE19 FE30-FE52
FE54-FE66 FE68-FE6B FF01-FF60 FFE0-FFE6 16FE0-16FE4 16FF0-16FF1 17000-187F7 18800-18CD5
18D00-18D08 1B000-1B11E 1B150-1B152 1B164-1B167 1B170-1B2FB 1F004 1F0CF 1F18E 1F191-1F19A
1F200-1F202 1F210-1F23B 1F240-1F248 1F250-1F251 1F260-1F265 1F300-1F320 1F32D-1F335
1F337-1F37C 1F37E-1F393 1F3A0-1F3CA 1F3CF-1F3D3 1F3E0-1F3F0 1F3F4 1F3F8-1F43E 1F440
1F442-1F4FC 1F4FF-1F53D 1F54B-1F54E 1F550-1F567 1F57A 1F595-1F596 1F5A4 1F5FB-1F64F
1F680-1F6C5 1F6CC 1F6D0-1F6D2 1F6D5-1F6D7 1F6EB-1F6EC 1F6F4-1F6FC 1F7E0-1F7EB 1F90C-1F93A
1F93C-1F945 1F947-1F978 1F97A-1F9CB 1F9CD-1F9FF 1FA70-1FA74 1FA78-1FA7A 1FA80-1FA86
1FA90-1FAA8 1FAB0-1FAB6 1FAC0-1FAC2 1FAD0-1FAD6 20000-2FFFD 30000-3FFFD
""")

# private + ambiguous: width 2 only under an East Asian locale.
AMBIGUOUS: Ranges = _ranges("""
00A1 00A4 00A7-00A8 00AA 00AD-00AE 00B0-00B4 00B6-00BA 00BC-00BF 00C6 00D0 00D7-00D8
00DE-00E1 00E6 00E8-00EA 00EC-00ED 00F0 00F2-00F3 00F7-00FA 00FC 00FE 0101 0111 0113 011B
0126-0127 012B 0131-0133 0138 013F-0142 0144 0148-014B 014D 0152-0153 0166-0167 016B 01CE
01D0 01D2 01D4 01D6 01D8 01DA 01DC 0251 0261 02C4 02C7 02C9-02CB 02CD 02D0 02D8-02DB 02DD
02DF 0300-036F 0391-03A1 03A3-03A9 03B1-03C1 03C3-03C9 0401 0410-044F 0451 2010 2013-2016
2018-2019 201C-201D 2020-2022 2024-2027 2030 2032-2033 2035 203B 203E 2074 207F 2081-2084
20AC 2103 2105 2109 2113 2116 2121-2122 2126 212B 2153-2154 215B-215E 2160-216B 2170-2179
2189 2190-2199 21B8-21B9 21D2 21D4 21E7 2200 2202-2203 2207-2208 220B 220F 2211 2215 221A
221D-2220 2223 2225 2227-222C 222E 2234-2237 223C-223D 2248 224C 2252 2260-2261 2264-2267
226A-226B 226E-226F 2282-2283 2286-2287 2295 2299 22A5 22BF 2312 2460-24E9 24EB-254B
2550-2573 2580-258F 2592-2595 25A0-25A1 25A3-25A9 25B2-25B3 25B6-25B7 25BC-25BD 25C0-25C1
25C6-25C8 25CB 25CE-25D1 25E2-25E5 25EF 2605-2606 2609 260E-260F 261C 261E 2640 2642
2660-2661 2663-2665 2667-266A 266C-266D 266F 269E-269F 26BF 26C6-26CD 26CF-26D3 26D5-26E1
26E3 26E8-26E9 26EB-26F1 26F4 26F6-26F9 26FB-26FC 26FE-26FF 273D 2776-277F 2B56-2B59
3248-324F E000-F8FF FE00-FE0F FFFD 1F100-1F10A 1F110-1F12D 1F130-1F169 1F170-1F18D
1F18F-1F190 1F19B-1F1AC E0100-E01EF F0000-FFFFD 100000-10FFFD
""")


def _starts(table: Ranges) -> list[int]:
    return [first for first, _ in table]


_ZERO_STARTS = _starts(ZERO_WIDTH)
_DOUBLE_STARTS = _starts(DOUBLE_WIDTH)
_AMBIGUOUS_STARTS = _starts(AMBIGUOUS)


def _in(code: int, starts: list[int], table: Ranges) -> bool:
    i = bisect_right(starts, code) - 1
    return i >= 0 and code <= table[i][1]


def rune_width(char: str, *, east_asian: bool = False) -> int:
    """``runewidth.RuneWidth`` of one character: 0, 1 or 2 terminal columns."""
    code = ord(char)
    if _in(code, _ZERO_STARTS, ZERO_WIDTH):
        return 0
    if _in(code, _DOUBLE_STARTS, DOUBLE_WIDTH):
        return 2
    if east_asian and _in(code, _AMBIGUOUS_STARTS, AMBIGUOUS):
        return 2
    return 1


def string_width(text: str, *, east_asian: bool = False) -> int:
    """``runewidth.StringWidth``: the sum of the characters' widths."""
    if text.isascii():
        # Printable ASCII is 1 column each; C0 controls and DEL are 0.
        if text.isprintable():
            return len(text)
        return sum(1 for c in text if " " <= c < "\x7f")
    return sum(rune_width(c, east_asian=east_asian) for c in text)


_LOCALE = re.compile(r"^[a-z][a-z][a-z]?(?:_[A-Z][A-Z])?\.(.+)")
_MBLEN = {
    "utf-8": 6, "utf8": 6, "jis": 8, "eucjp": 3, "euckr": 2, "euccn": 2, "sjis": 2,
    "cp932": 2, "cp51932": 2, "cp936": 2, "cp949": 2, "cp950": 2, "big5": 2, "gbk": 2,
    "gb2312": 2,
}  # fmt: skip


def east_asian_locale(environ: Mapping[str, str] | None = None) -> bool:
    """Whether go-runewidth would count ambiguous characters as wide in this environment.

    Port of ``handleEnv``/``IsEastAsian`` (runewidth_posix.go): RUNEWIDTH_EASTASIAN
    decides when set; otherwise the first of LC_ALL, LC_CTYPE, LANG, where a
    multibyte charset in a CJK locale (or a non-UTF one) means East Asian.
    """
    env = os.environ if environ is None else environ
    forced = env.get("RUNEWIDTH_EASTASIAN", "")
    if forced:
        return forced == "1"
    locale = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or ""
    if locale in ("POSIX", "C") or (len(locale) > 1 and locale[0] == "C" and locale[1] in ".-"):
        return False
    charset = locale.lower()
    match = _LOCALE.match(locale)
    if match:
        charset = match.group(1).lower()
    if charset.endswith("@cjk_narrow"):
        return False
    charset = charset.split("@", 1)[0]
    longest = _MBLEN.get(charset, 1)
    return longest > 1 and (not charset.startswith("u") or locale.startswith(("ja", "ko", "zh")))
