"""Every section of docs/benchmarks.md is rendered from a committed result file (issue #32).

For each ``<!-- bench:NAME -->`` block found in docs/benchmarks.md (found, not listed, so a new section without
a renderer here fails): bench/results/NAME.json exists and the bench's renderer applied to it gives exactly the
text the block holds, so ``python bench/bench_X.py --report`` rewrites the page without changing it and no
figure in it is typed by hand. And each block is written by one bench only: the one named here.
"""
from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
from common import DOC, load_result, read_section, result_path  # noqa: E402

# section -> (bench module, renderer called as renderer(load_result(section)))
RENDERERS = {
    "annoy": ("bench_annoy", "render"),
    "propagation": ("bench_propagation", "render"),
    "zeroshot": ("bench_zeroshot", "render"),
    "labelapp": ("bench_labelapp", "render"),
    "serving": ("bench_serving", "render"),
    "infer": ("bench_infer", "infer_section"),
    "infer-accuracy": ("bench_infer", "accuracy_section"),
    "attributes": ("bench_attributes", "render"),
    "train": ("bench_train", "render_result"),
    "labels": ("bench_labels", "render"),
    "ensemble": ("bench_ensemble", "render_saved"),
    "embed": ("bench_embed", "render"),
    "crawl": ("bench_crawl", "render"),
    "attribute_curve": ("bench_attribute_curve", "render"),
    "tradeoff": ("bench_tradeoff", "render"),
    "batch": ("bench_batch", "render"),
}
# the calls whose first argument names the section a bench writes (or keeps the result of)
WRITERS = {"write_section", "publish", "save_result"}


def doc_sections() -> list[str]:
    """The NAME of every ``<!-- bench:NAME -->`` block of docs/benchmarks.md, in page order."""
    return re.findall(r"^<!-- bench:(\S+) -->$", DOC.read_text(), re.MULTILINE)


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The string ``node`` stands for: a literal, a module constant, or a sum of those (None otherwise)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, constants), _text(node.right, constants)
        return left + right if left is not None and right is not None else None
    return None


def sections_written(source: str) -> set[str]:
    """The section names a bench's source passes to write_section / publish / save_result (literals and
    module-level string constants; a name only known at run time is not counted)."""
    tree = ast.parse(source)
    constants: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if (value := _text(node.value, constants)) is not None:
                constants[node.targets[0].id] = value
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func in WRITERS and (name := _text(node.args[0], constants)) is not None:
                names.add(name)
    return names


def test_the_page_has_sections_and_each_has_a_renderer():
    names = doc_sections()
    assert len(names) == len(set(names)), f"a section appears twice in docs/benchmarks.md: {names}"
    assert set(RENDERERS) <= set(names), f"no section for {sorted(set(RENDERERS) - set(names))}"
    assert set(names) <= set(RENDERERS), f"no renderer mapped for {sorted(set(names) - set(RENDERERS))}"


@pytest.mark.parametrize("name", doc_sections())
def test_the_section_is_its_bench_rendering_of_the_committed_result(name):
    assert name in RENDERERS, f"section {name!r}: add its bench and renderer to RENDERERS"
    module, renderer = RENDERERS[name]
    assert result_path(name).is_file(), f"bench/results/{name}.json is missing: run bench/{module}.py"
    render = getattr(importlib.import_module(module), renderer)
    assert render(load_result(name)).strip() == read_section(name).strip()


def test_the_section_finder_sees_literals_constants_and_sums():
    source = ('SECTION = "infer"\nACCURACY = SECTION + "-accuracy"\nNAME = "x"\n'
              'def main(name):\n    publish(SECTION, {}, str)\n    common.save_result(ACCURACY, {})\n'
              '    write_section("annoy", "t")\n    write_section(name, "t")\n    print("other")\n')
    assert sections_written(source) == {"infer", "infer-accuracy", "annoy"}


@pytest.mark.parametrize("name", doc_sections())
def test_one_bench_writes_the_section(name):
    writers = sorted(path.stem for path in BENCH.glob("bench_*.py") if name in sections_written(path.read_text()))
    assert writers == [RENDERERS.get(name, ("?",))[0]], f"section {name!r} is written by {writers}"
