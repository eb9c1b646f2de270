"""What a propagation run leaves to look at: CSV tables, the precision–coverage
plot and the suspect-label grid. Each writer takes data and a path, writes
atomically and returns the path."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from roomclf import storage
from roomclf.photos import PhotoError, thumbnail


def _aside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def write_csv(path: str | os.PathLike, header: list[str], rows: list) -> Path:
    path = Path(path)
    tmp = _aside(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def threshold_csv(path, table: list[dict]) -> Path:
    keys = ["share_min", "sim_min", "precision", "coverage", "accepted", "held_out"]
    return write_csv(path, keys, [[r[k] for k in keys] for r in table])


def suspects_csv(path, suspects: list[dict]) -> Path:
    return write_csv(path, ["path", "label", "vote", "share", "neighbours"],
                     [[s["path"], s["label"], s["vote"], s["share"], ";".join(s.get("neighbours", []))]
                      for s in suspects])


def duplicates_csv(path, pairs: list[tuple[str, str, float]]) -> Path:
    return write_csv(path, ["a", "b", "similarity"], [[a, b, f"{s:.4f}"] for a, b, s in pairs])


def precision_coverage_plot(path, table: list[dict], chosen: dict | None = None, title: str = "") -> Path:
    """One precision–coverage curve per nearest-similarity threshold, points along a
    curve being the vote-share thresholds; the chosen pair is circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for sim_min in sorted({r["sim_min"] for r in table}):
        rows = [r for r in table if r["sim_min"] == sim_min and r["accepted"]]
        ax.plot([r["coverage"] for r in rows], [r["precision"] for r in rows], marker=".",
                label=f"nearest sim >= {sim_min:g}")
    if chosen:
        ax.scatter([chosen["coverage"]], [chosen["precision"]], s=160, facecolors="none", edgecolors="black",
                   label=f"chosen: share >= {chosen['share_min']:g}, sim >= {chosen['sim_min']:g}")
    ax.set_xlabel("coverage (share of held-out labels accepted)")
    ax.set_ylabel("precision (accepted and right)")
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "label propagation, cross-validated on the manual labels", fontsize=10)
    tmp = _aside(path)
    fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def suspect_grid(path, root: str | os.PathLike, suspects: list[dict], limit: int = 48, cell: int = 160,
                 columns: int = 6) -> Path:
    """An image grid of suspect labels: each photo with its given label and its
    neighbours' vote underneath."""
    from PIL import Image, ImageDraw

    path = Path(path)
    shown = suspects[:limit]
    rows = max(1, -(-len(shown) // columns))
    text_h = 30
    grid = Image.new("RGB", (columns * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    for n, s in enumerate(shown):
        x, y = (n % columns) * cell, (n // columns) * (cell + text_h)
        try:
            thumb = thumbnail(storage.join(root, s["path"]), cell - 4)
            grid.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        except (PhotoError, OSError):
            draw.text((x + 8, y + cell // 2), "unreadable", fill="red")
        draw.text((x + 4, y + cell), f"given: {s['label']}", fill="black")
        draw.text((x + 4, y + cell + 14), f"vote: {s['vote']} {s['share']:.0%}", fill="firebrick")
    if not shown:
        draw.text((10, cell // 2), "no suspect labels", fill="black")
    tmp = _aside(path)
    grid.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
