"""Shared by the bench scripts: each writes only its own section of docs/benchmarks.md."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DOC = PROJECT / "docs" / "benchmarks.md"
# The structured result of each bench (committed): its docs section is rendered from it, so a section can be
# rendered again (``--report``) without measuring anything.
RESULTS_DIR = PROJECT / "bench" / "results"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_section(name: str, text: str, path: Path = DOC) -> None:
    """Replace only the ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` block (append it if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block + "\n"
    write_atomic(path, new)


def result_path(name: str, folder: Path | None = None) -> Path:
    """``bench/results/NAME.json``: where ``save_result`` keeps a bench's structured result."""
    return Path(folder or RESULTS_DIR) / f"{name}.json"


def save_result(name: str, data, folder: Path | None = None) -> Path:
    """Keep a bench's structured result as ``bench/results/NAME.json`` (atomically: a reader sees the old file
    or the new one, and data that is not JSON leaves the old file as it was). Returns the file."""
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"      # fails before anything is written
    path = result_path(name, folder)
    write_atomic(path, text)
    return path


def load_result(name: str, folder: Path | None = None):
    """The result ``save_result`` kept under ``name`` (None when there is none)."""
    path = result_path(name, folder)
    return json.loads(path.read_text()) if path.is_file() else None


def publish(name: str, result: dict, render, write: bool = True) -> str:
    """Print the section ``render(result)``; with ``write``, keep ``result`` (``save_result``) and put the
    section in docs/benchmarks.md. Returns the section's text."""
    text = render(result)
    print(text)
    if write:
        save_result(name, result)
        write_section(name, text)
    return text


def report_saved(name: str, render, write: bool = True) -> str:
    """``--report``: print the section ``render`` makes of bench/results/NAME.json and, with ``write``, put it
    in docs/benchmarks.md; measures nothing. Exits with one line when the bench has never saved a result."""
    saved = load_result(name)
    if saved is None:
        raise SystemExit(f"no bench/results/{name}.json yet: run the bench first")
    return publish(name, saved, render, write)


def read_section(name: str, path: Path = DOC) -> str:
    """The text of the ``<!-- bench:NAME -->`` block as written now ("" when absent)."""
    old = path.read_text() if path.exists() else ""
    found = re.search(re.escape(f"<!-- bench:{name} -->") + r"\n(.*?)\n" + re.escape(f"<!-- /bench:{name} -->"),
                      old, re.DOTALL)
    return found[1] if found else ""


def headed_blocks(section: str, heading: str, stop: str | None = None) -> dict[str, str]:
    """The blocks of a written section that start at a line matching ``heading`` (a regex whose group 1 is
    the block's name) and run to the next such line, or to a line starting with ``stop``.

    Result files live in var/ (not committed), so a new checkout keeps what the section already says of
    runs it cannot render again rather than dropping them."""
    blocks: dict[str, list[str]] = {}
    name = None
    for line in section.splitlines():
        if m := re.match(heading, line):
            name = m[1]
            blocks[name] = []
        elif stop and line.startswith(stop):
            name = None
        if name:
            blocks[name].append(line)
    return {n: "\n".join(lines).rstrip() for n, lines in blocks.items()}


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = [table_row(header), "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + [table_row(r) for r in rows])


def table_row(cells: list) -> str:
    """One line of a markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


# ---- the honest split ---------------------------------------------------------------------------
# Every bench that reports room accuracy uses the same three disjoint sets of batches:
#   TRAIN  batch_01-batch_10  what models are fitted on (and where the labelling simulation picks photos);
#   TUNE   batch_11-batch_13  every choice (recipe, epochs, thresholds, int8 settings) is made here;
#   TEST   batch_14-batch_19  reported only, never used to choose anything.
# Photos of TUNE and TEST that duplicate a TRAIN photo (same bytes, or the same picture by embedding
# similarity, roomclf.train.data.duplicate_paths) are left out of both.
TRAIN_BATCHES = "batch_01-batch_10"
TUNE_BATCHES = "batch_11-batch_13"
TEST_BATCHES = "batch_14-batch_19"
SPLIT_NOTE = ("TRAIN = batch_01–10 (fitted on), TUNE = batch_11–13 (every choice made here), "
              "TEST = batch_14–19 (reported only, never used to choose); near-duplicates of TRAIN photos "
              "removed from TUNE and TEST")


def default_data() -> Path:
    """The shared corpus folder (the one holding ``listings/`` and ``labels.csv``)."""
    return Path(os.environ.get("ROOMCLF_TEST_DATA") or PROJECT.parent / "shared" / "data")


def ground_truth(data: Path | None = None) -> dict[str, str]:
    """path -> class from the corpus's labels.csv, read by the product (``read_ground_truth``: any known
    spelling of a class becomes its name; rows without a label, i.e. broken files, left out)."""
    from roomclf.labels.prelabel import read_ground_truth

    return read_ground_truth(Path(data or default_data()) / "labels.csv")


def write_by_eye_attributes(src: Path, dst: Path) -> Path:
    """A copy of the attributes CSV ``src`` holding only the rows a person labelled by eye (fireplace, TV,
    refrigerator, kitchen island), the labels the attribute targets are judged on; returns ``dst``."""
    import csv

    with open(src, newline="") as f, open(dst, "w", newline="") as out:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(r for r in reader if r.get("method") == "by_eye")
    return dst


def honest_split(data: Path | None = None, train: str = TRAIN_BATCHES, tune: str = TUNE_BATCHES,
                 test: str = TEST_BATCHES, backbone: str = "efficientnet_lite0", check_size: int | None = None,
                 near: bool = True) -> dict:
    """The labelled photos of each split as ``[(path, class)]``, leak-filtered against TRAIN.

    Returns ``{"train", "tune", "test": [(path, class)], "batches": {split: [batch]}, "leaks": {split:
    [path]}, "broken": {path: reason}}``. ``check_size``: open every photo once with the shared loader at
    that size and drop the ones that fail (what training does). Near-duplicates use the embedding cache
    (computed where missing).
    """
    from roomclf.corpus import parse_batches
    from roomclf.train.data import drop_broken, duplicate_paths

    data = Path(data or default_data())
    root = data / "listings"
    labels = ground_truth(data)
    batches = {name: parse_batches(spec, root) for name, spec in (("train", train), ("tune", tune), ("test", test))}
    seen: set[str] = set()
    for name, bs in batches.items():
        if seen & set(bs):
            raise ValueError(f"split {name} shares batches with another split: {sorted(seen & set(bs))}")
        seen |= set(bs)
    out: dict = {"batches": batches, "leaks": {}, "broken": {}}
    for name, bs in batches.items():
        wanted = set(bs)
        items = sorted((p, c) for p, c in labels.items() if p.split("/", 1)[0] in wanted)
        if check_size:
            items, broken = drop_broken(root, items, check_size)
            out["broken"].update(broken)
        out[name] = items
    train_paths = [p for p, _ in out["train"]]
    held = [p for name in ("tune", "test") for p, _ in out[name]]
    dup = set(duplicate_paths(root, train_paths, held, near=near, backbone=backbone))
    for name in ("tune", "test"):
        out["leaks"][name] = sorted(p for p, _ in out[name] if p in dup)
        out[name] = [(p, c) for p, c in out[name] if p not in dup]
    return out


def split_summary(split: dict) -> str:
    """One line: photos per split and what was removed."""
    b = split["batches"]
    return (f"TRAIN {b['train'][0]}–{b['train'][-1]} {len(split['train'])} photos; "
            f"TUNE {b['tune'][0]}–{b['tune'][-1]} {len(split['tune'])} photos "
            f"({len(split['leaks']['tune'])} near-duplicates of TRAIN photos removed); "
            f"TEST {b['test'][0]}–{b['test'][-1]} {len(split['test'])} photos "
            f"({len(split['leaks']['test'])} removed); {len(split['broken'])} unreadable photos dropped")
