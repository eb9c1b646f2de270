"""A measured figure lives in one place: the bench's committed result, rendered into docs/benchmarks.md.

Code comments, docstrings and --help texts say why a default was chosen and name the bench run or the docs
section ("bench/bench_train.py run `lite2-300` against `lite2`, docs/benchmarks.md, train"), never the number:
copies of a figure drift apart from the table they came from. This test fails when a percentage (a number
followed by ``%``) appears in a comment or a string literal (docstrings and help texts included) of any .py
file under roomclf/, serving/ or mlproject/. Format specifiers are not figures: ``{x:.1%}`` in an f-string or
a ``str.format`` string is left out (the replacement field is dropped before looking), and printf-style
``%d``/``%s``/``%5.1f`` put their digits after the ``%``, so they never match. Files under bench/results are
results, not code, and are not looked at.
"""
from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("roomclf", "serving", "mlproject")
PERCENT = re.compile(r"\d+(?:\.\d+)?\s?%")
# a str.format / f-string replacement field, innermost first (``{x:{w}.1%}`` takes two passes)
FIELD = re.compile(r"\{[^{}]*\}")
# in a comment, only a field with a format spec that ends in % (code quoted in a comment)
COMMENT_FIELD = re.compile(r"\{[^{}\s]*:[^{}\s]*%\}")
FSTRING_START = getattr(tokenize, "FSTRING_START", None)      # Python 3.12+: f-strings come in pieces
FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def source_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            rel = path.relative_to(PROJECT).as_posix()
            if "bench/results/" in rel or "/." in "/" + rel:
                continue
            files.append(path)
    return files


def _without_fields(text: str) -> str:
    text = text.replace("{{", "").replace("}}", "")     # escaped braces are literal text, not fields
    while True:
        stripped = FIELD.sub("", text)
        if stripped == text:
            return text
        text = stripped


def _slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0:r1 - 1]) + lines[r1 - 1][:c1]


def prose(source: str):
    """(line, kind, text) of every comment and string literal of ``source``, format fields dropped."""
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], "comment", COMMENT_FIELD.sub("", tok.string)
        elif tok.type == tokenize.STRING:
            yield tok.start[0], "string", _without_fields(tok.string)
        elif FSTRING_START is not None and tok.type == FSTRING_START:
            depth, j = 1, i + 1                 # the whole f-string, nested ones included, as written
            while depth:
                depth += {FSTRING_START: 1, FSTRING_END: -1}.get(tokens[j].type, 0)
                j += 1
            yield tok.start[0], "string", _without_fields(_slice(lines, tok.start, tokens[j - 1].end))
            i = j
            continue
        i += 1


def figures(path: Path) -> list[str]:
    rel = path.relative_to(PROJECT).as_posix()
    return [f"{rel}:{line + text.count(chr(10), 0, m.start())}: {kind}: {m.group(0)!r} in "
            f"{text[text.rfind(chr(10), 0, m.start()) + 1:].split(chr(10))[0].strip()[:120]!r}"
            for line, kind, text in prose(path.read_text(encoding="utf-8"))
            for m in PERCENT.finditer(text)]


def test_the_checker_sees_figures_and_not_format_specs():
    sample = '\n'.join([
        'x = 1  # TUNE 93.25% on the tuning split',
        'def f():',
        '    """Scores 92.8 % alone."""',
        '    return f"{a:.1%} at {b:.0%}", "{:.2%}".format(c), "%d photos, %5.1f%% done" % (1, 2.0)',
        'y = "a tenth of the best F1"',
        'z = f"{w:{n}.1%} and {{50%}}"',
    ]) + '\n'
    found = [(line, m.group(0)) for line, _, text in prose(sample) for m in PERCENT.finditer(text)]
    assert found == [(1, "93.25%"), (3, "92.8 %"), (6, "50%")]


def test_no_percentages_in_comments_docstrings_or_help():
    files = source_files()
    assert len(files) > 20, "the packages were not found"
    found = [f for path in files for f in figures(path)]
    assert not found, ("figures belong in docs/benchmarks.md (the bench's committed result); say why and name "
                       "the bench run / docs section instead:\n" + "\n".join(found))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
