"""The README is the front door and stays one: short, every `roomclf` command it (and docs/) shows is a real
command with real options, its headline figures are those of docs/benchmarks.md, and no relative link in
README.md or docs/*.md leads nowhere (a #anchor into a Markdown file must name one of its headings)."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import click
import pytest

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
DOCS = PROJECT / "docs"
BENCHMARKS = DOCS / "benchmarks.md"
MAX_README_LINES = 150

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?:^|(?<=[\s/(]))roomclf[ \t]+([a-z][\w-]*)([^\n]*)", re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?%?")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def shown_code(text: str) -> list[str]:
    """The shell a page shows: every line of its fenced blocks, comments dropped, and every inline code span."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.splitlines()[1:-1]:
            line = re.sub(r"(^|\s)#.*$", "", line)        # a shell comment (prose about the command)
            if line.strip():
                lines.append(line)
    prose = FENCE.sub("", text)
    return lines + CODE_SPAN.findall(prose)


def roomclf_commands():
    from roomclf.cli import main

    ctx = click.Context(main)
    return {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}


def shown_invocations(text: str) -> list[tuple[str, list[str], str]]:
    """(command, its --options, the shown text) for every `roomclf COMMAND ...` a page shows."""
    found = []
    for code in shown_code(text):
        for match in COMMAND.finditer(code):
            rest = re.split(r"\s(?:\||&&|;|>)\s", match.group(2))[0]      # the next command of a pipeline
            options = [word.split("=", 1)[0] for word in rest.split() if word.startswith("-")]
            found.append((match.group(1), options, match.group(0).strip()))
    return found


# --------------------------------------------------------------------------- the README is short


def test_readme_reads_in_five_minutes():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    ci = [line.strip() for line in (PROJECT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == "make test"


# --------------------------------------------------------------------------- the commands it shows exist


@pytest.mark.parametrize("page", markdown_files()[:1] + [p for p in markdown_files()[1:] if p != BENCHMARKS],
                         ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_roomclf_command_shown_is_real(page):
    commands = roomclf_commands()
    shown = shown_invocations(page.read_text())
    if page == README:
        assert len({name for name, _, _ in shown}) >= 9, "the README shows the workflow's commands"
    bad = []
    for name, options, text in shown:
        command = commands.get(name)
        if command is None:
            bad.append(f"{text!r}: no command {name!r} (roomclf --help)")
            continue
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        known |= set(command.get_help_option_names(click.Context(command)))
        bad += [f"{text!r}: {name} has no option {opt}" for opt in options if opt not in known]
    assert not bad, bad


def test_the_command_check_sees_a_wrong_command():
    page = "```bash\nroomclf trian --epochs 3   # roomclf and roomclf-onnx\n```\nand `roomclf serve --nope`\n"
    assert [(n, o) for n, o, _ in shown_invocations(page)] == [("trian", ["--epochs"]), ("serve", ["--nope"])]


# --------------------------------------------------------------------------- its figures are the benchmarks'


def headline_rows() -> list[list[str]]:
    """The cells of the README's one table of figures (the first table under '## The numbers')."""
    section = README.read_text().split("\n## The numbers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) >= 3 and set(rows[1].replace("|", "").strip()) <= set("-: ")
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def in_benchmarks(number: str, bench: str) -> bool:
    """``number`` as written in benchmarks.md: literally, or a percentage written there as a fraction
    (91.58% = 0.9158)."""
    plain = number.rstrip("%")
    alone = r"(?<![\d.,]){}(?![\d]|[.,]\d)"                  # not part of a longer number
    if re.search(alone.format(re.escape(plain)), bench):
        return True
    if number.endswith("%"):
        digits = len(plain.split(".", 1)[1]) if "." in plain else 0
        fraction = f"{float(plain.replace(',', '')) / 100:.{digits + 2}f}"
        return re.search(alone.format(re.escape(fraction)), bench) is not None
    return False


def test_headline_figures_are_copied_from_the_benchmarks():
    bench = BENCHMARKS.read_text()
    rows = headline_rows()
    assert len(rows) >= 4
    missing = []
    for row in rows:
        assert "docs/benchmarks.md#" in row[0], f"each row links to its benchmarks section: {row[0]}"
        for cell in row:
            cell = re.sub(r"\]\([^)]*\)", "]", cell)            # link targets hold digits of their own
            missing += [f"{n} ({cell})" for n in NUMBER.findall(cell) if not in_benchmarks(n, bench)]
    assert not missing, f"not in docs/benchmarks.md: {missing}"


def test_the_figure_check_reads_fractions_and_refuses_strangers():
    bench = "| accuracy | 0.9158 | **TEST 91.77%** | 37.1 ms | 1,000 photos |"
    assert in_benchmarks("91.58%", bench) and in_benchmarks("91.77%", bench) and in_benchmarks("37.1", bench)
    assert in_benchmarks("1,000", bench) and not in_benchmarks("000", bench)
    assert not in_benchmarks("91.5%", bench) and not in_benchmarks("37", bench) and not in_benchmarks("92.1%", bench)


# --------------------------------------------------------------------------- its links lead somewhere


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    anchors, seen = set(), {}
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).lower()
        slug = "".join(ch for ch in title if ch in " -_" or unicodedata.category(ch)[0] in "LN").replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_github_anchors_follow_githubs_rule():
    page = "# Training (`bench/bench_train.py`)\n## Zero-shot prelabel (cold start) — `x.py`\n## A\n## A\n"
    assert github_anchors(page) == {"training-benchbench_trainpy", "zero-shot-prelabel-cold-start--xpy", "a", "a-1"}


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):          # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, broken
