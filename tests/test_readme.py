"""The README is the front door and stays one: short, every `roomclf` command it (and docs/) shows is a real
command with real options, its headline table is rendered from a bench's result file, and no relative link in
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


def test_headline_table_is_rendered_from_the_tradeoff_result():
    """The README's one table of figures, and its section of docs/benchmarks.md, are what bench_tradeoff
    renders from its committed result file: no figure typed by hand, none out of date."""
    import sys

    sys.path.insert(0, str(PROJECT / "bench"))
    from bench_tradeoff import NAME, headline, render
    from common import load_result, read_section

    result = load_result(NAME)
    assert result and len(result["rows"]) >= 2, "bench/results/tradeoff.json: run bench/bench_tradeoff.py"
    assert "The numbers" in README.read_text().split("<!-- bench:headline -->")[0].rsplit("\n## ", 1)[-1]
    assert read_section("headline", README) == headline(result).strip()
    assert read_section(NAME) == render(result).strip()


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
