"""Benchmark: attribute tags on photos never used for any choice, by evidence policy.

Room labels come from labels.csv (the true class of each photo: tags are judged
within it), attribute labels from attributes.csv. Every photo with an attribute
label is embedded once with the frozen pretrained body (raw pooled features,
cached like every embedding). The split is the benches' honest split
(``bench/common.py: honest_split``): the heads are trained on TRAIN
(batch_01..10), their thresholds are picked on TUNE (batch_11..13), and
precision / recall / F1 are reported on TEST (batch_14..19) with those
thresholds; photos of TUNE and TEST that duplicate a TRAIN photo are in none.

The body is frozen here: a full fast.ai fine-tune per variant costs ~35 min on
this 2-core machine. ``roomclf train`` fits the same heads on its fine-tuned
body's features, so its figures can differ from these.

Test labels are always the *reliable* ones (``by_eye``, curated, annotation
positives, and annotation zeros only where nothing better exists), whatever a
variant trained on; the figures for the attributes that have by-eye labels are
also given on those labels alone. An attribute that a variant does not emit
(untrained) counts as F1 0 in the macro averages.

The result is kept as data in ``bench/results/attributes.json`` and the section
rendered from it (``--report``: render it again without measuring).

    python bench/bench_attributes.py [--data ../shared/data] [--backbone efficientnet_lite0] [--no-write]
    python bench/bench_attributes.py --report
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from common import (  # noqa: E402
    SPLIT_NOTE,
    default_data,
    ground_truth,
    honest_split,
    load_result,
    save_result,
    split_summary,
    table,
    write_by_eye_attributes,
    write_section,
)

from roomclf.labels.store import LabelStore  # noqa: E402
from roomclf.taxonomy import ATTRIBUTE_KEYS  # noqa: E402
from roomclf.train.attributes import (  # noqa: E402
    EVIDENCE_POLICIES,
    attribute_targets,
    auc,
    fit_attribute_head,
    fit_linear,
    head_scores,
    import_attributes,
    scores_metrics,
)

# the parts of this bench (train: heads fitted, val: thresholds picked, test: reported) -> honest_split's
PARTS = {"train": "train", "val": "tune", "test": "test"}
NAMED = ("kitchen.refrigerator", "kitchen.kitchen_island", "living_room.fireplace", "living_room.tv",
         "interior.laundry", "interior.staircase")
TARGETS = ("kitchen.refrigerator", "living_room.fireplace", "living_room.tv")
PROBE = ("living_room.fireplace", "living_room.tv", "kitchen.refrigerator", "kitchen.kitchen_island")
MIN_TEST_POSITIVES = 10
CHOSEN = "reliable"
SECTION = "attributes"
# how the section names the photos of each part (``cv``: where the probe cross-validates), as a result keeps it
PART_NAMES = {"train": "TRAIN", "val": "TUNE", "test": "TEST", "cv": "TRAIN + TUNE"}


def split_parts(paths: list[str], split: dict) -> dict[str, np.ndarray]:
    """Masks over ``paths`` of the parts, taken from ``split`` (``common.honest_split``): a photo in no part
    of it (a near-duplicate of a TRAIN photo, an unlabelled one) is in none."""
    parts = {}
    for part, name in PARTS.items():
        members = {p for p, _ in split[name]}
        parts[part] = np.array([p in members for p in paths], dtype=bool)
    return parts


def load(data: Path, backbone: str):
    """Features of every attribute-labelled photo, (Y, M) under each policy and by eye alone, the parts
    of the honest split, the import reports and the split's summary line."""
    from roomclf.models.embeddings import embed

    root = data / "listings"
    truth = ground_truth(data)
    with open(data / "attributes.csv", newline="") as f:
        paths = sorted({r["path"] for r in csv.DictReader(f)} & set(truth))
    emb = embed(root, paths, backbone, normalize=False, progress=True)
    labels, reports = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        write_by_eye_attributes(data / "attributes.csv", Path(tmp) / "by_eye.csv")
        for name, csv_path, policy in [*((p, data / "attributes.csv", p) for p in EVIDENCE_POLICIES),
                                       ("by_eye", Path(tmp) / "by_eye.csv", "as_is")]:
            store = LabelStore(Path(tmp) / f"{name}.sqlite")
            store.import_csv(data / "labels.csv", corpus_root=root)
            reports[name] = import_attributes(store, csv_path, root, evidence=policy)
            labels[name] = attribute_targets(emb.paths, store, truth)
    split = honest_split(data)
    return emb, labels, split_parts(emb.paths, split), reports, split_summary(split)


PROBE_SIZES = (320, 416)      # px: a larger input than the model's, and the corpus photos' own size at most


def probe_features(root: Path, paths: list[str], backbone: str) -> dict[str, np.ndarray]:
    """Other readings of the frozen body for ``paths``: average- and max-pooled at the model's input size
    (the model exports the average) and at each of ``PROBE_SIZES``."""
    import torch

    from roomclf.models.backbones import build_backbone, get_spec, split_backbone
    from roomclf.photos import model_input

    spec = get_spec(backbone)
    body, _, _ = split_backbone(backbone, build_backbone(backbone, pretrained=True))
    body.eval()
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    sizes = list(dict.fromkeys((spec.train_size, *PROBE_SIZES)))
    out: dict[str, list] = {}
    for size in sizes:
        out[f"average-pooled, {size} px" + (" (what the model exports)" if size == spec.train_size else "")] = []
        out[f"max-pooled, {size} px"] = []
    names = list(out)
    with torch.inference_mode():
        for i in range(0, len(paths), 32):
            part = paths[i:i + 32]
            for k, size in enumerate(sizes):
                x = torch.from_numpy(np.stack([model_input(root / p, size) for p in part]))
                fmap = body((x - mean) / std)
                out[names[2 * k]].append(fmap.mean((2, 3)).numpy())
                out[names[2 * k + 1]].append(fmap.amax((2, 3)).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def probe(root: Path, emb, labels, parts, backbone: str, folds: int = 5, seed: int = 0) -> list[dict]:
    """How well the frozen body's features can rank the hard attributes at all: 5-fold cross-validated
    AUC on TRAIN + TUNE and AUC on TEST of one linear head per feature reading:
    ``[{"reading", "auc": {key: [cv, test]}}]``."""
    Y, M = labels[CHOSEN]
    cols = [ATTRIBUTE_KEYS.index(k) for k in PROBE]
    rows_idx = np.flatnonzero(M[:, cols].any(1) & (parts["train"] | parts["val"] | parts["test"]))
    feats = probe_features(root, [emb.paths[i] for i in rows_idx], backbone)
    Ys, Ms = Y[rows_idx], M[rows_idx]
    fit_rows = ~parts["test"][rows_idx]
    rng = np.random.default_rng(seed)
    out = []
    for name, F in feats.items():
        aucs = {}
        for j in cols:
            lab = np.flatnonzero(Ms[:, j] & fit_rows)
            fold = np.empty(len(lab), int)
            for cls in (0, 1):
                idx = np.flatnonzero(Ys[lab, j] == cls)
                fold[idx] = rng.permutation(len(idx)) % folds
            oof = np.zeros(len(lab))
            for f in range(folds):
                m = np.zeros(len(Ys), bool)
                m[lab[fold != f]] = True
                W, b = fit_linear(F, Ys[:, [j]], (Ms[:, [j]] & m[:, None]), seed=seed)
                oof[fold == f] = head_scores(W, b, F[lab[fold == f]])[:, 0]
            W, b = fit_linear(F, Ys[:, [j]], Ms[:, [j]] & fit_rows[:, None], seed=seed)
            test = np.flatnonzero(Ms[:, j] & ~fit_rows)
            aucs[ATTRIBUTE_KEYS[j]] = [_num(auc(oof, Ys[lab, j])),
                                       _num(auc(head_scores(W, b, F[test])[:, 0], Ys[test, j]))]
        out.append({"reading": name, "auc": aucs})
    return out


def _num(v) -> float | None:
    return None if v is None else float(v)


def scores_of(fit, X) -> np.ndarray:
    return head_scores(fit.head.linear.weight.detach().numpy(), fit.head.linear.bias.detach().numpy(), X)


def evaluate(fit, S: np.ndarray, Y: np.ndarray, M: np.ndarray) -> dict[str, dict]:
    """Per key with labelled positives: support, negatives, and P/R/F1 at the fit's threshold
    (0 when the key is not emitted)."""
    out = {}
    for j, key in enumerate(ATTRIBUTE_KEYS):
        y = Y[M[:, j], j]
        if not (y == 1).any():
            continue
        thr = fit.thresholds[key]
        metrics = scores_metrics(S[M[:, j], j], y, thr) if thr is not None else \
            {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        out[key] = {**metrics, "support": int((y == 1).sum()), "negatives": int((y == 0).sum()),
                    "emitted": thr is not None}
    return out


def macro(metrics: dict[str, dict], keys: list[str]) -> float:
    return float(np.mean([metrics[k]["f1"] if k in metrics else 0.0 for k in keys])) if keys else float("nan")


def fit_variant(emb, labels, parts, policy: str, **kw):
    Y, M = labels[policy]
    tr, va = parts["train"], parts["val"]
    t0 = time.perf_counter()
    fit = fit_attribute_head(emb.vectors[tr], Y[tr], M[tr], emb.vectors[va], Y[va], M[va], **kw)
    return fit, time.perf_counter() - t0


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def measure(data: Path, backbone: str) -> dict:
    """Every variant fitted and scored: the bench's result, as plain data (``render`` makes the section)."""
    t_start = time.perf_counter()
    emb, labels, parts, reports, split_line = load(data, backbone)
    te = parts["test"]
    Xt = emb.vectors[te]
    Yr, Mr = (a[te] for a in labels[CHOSEN])
    Ye, Me = (a[te] for a in labels["by_eye"])
    test_pos = (Mr & (Yr > 0.5)).sum(0)
    big = [k for j, k in enumerate(ATTRIBUTE_KEYS) if test_pos[j] >= MIN_TEST_POSITIVES]
    keys = list(dict.fromkeys([*NAMED, *big]))
    print(f"{len(emb.paths)} photos with features; train/val/test = {[int(p.sum()) for p in parts.values()]}; "
          f">= {MIN_TEST_POSITIVES} test positives: {', '.join(big)}")

    variants = [(f"{p}", p, {}) for p in EVIDENCE_POLICIES]
    variants += [(f"{CHOSEN}, L2 1e-1", CHOSEN, {"weight_decay": 1e-1}),
                 (f"{CHOSEN}, L2 1e-3", CHOSEN, {"weight_decay": 1e-3}),
                 (f"{CHOSEN}, AUC gate on the threshold batches alone", CHOSEN, {"gate": "validation"}),
                 (f"{CHOSEN}, no AUC gate", CHOSEN, {"min_auc": 0.0})]
    rows, results = [], {}
    for name, policy, kw in variants:
        fit, secs = fit_variant(emb, labels, parts, policy, **kw)
        S = scores_of(fit, Xt)
        test, eye = evaluate(fit, S, Yr, Mr), evaluate(fit, S, Ye, Me)
        results[name] = (fit, test, eye)
        rows.append({"name": name, "macro_f1": macro(test, big),
                     "f1": {k: test.get(k, {}).get("f1") for k in TARGETS},
                     "f1_by_eye": {k: eye.get(k, {}).get("f1") for k in TARGETS},
                     "emitted": sum(test[k]["emitted"] for k in big if k in test), "keys_emitted": len(fit.trained),
                     "fit_s": secs})
        print(rows[-1])

    fit, test, eye = results[CHOSEN]
    per_key = []
    for key in keys:
        e, r, b, thr = test.get(key), fit.report[key], eye.get(key), fit.thresholds[key]
        per_key.append({"key": key, "positives": r["positives"], "support": r["support"], "auc": _num(r.get("auc")),
                        "threshold": _num(thr), "threshold_from": r["threshold_from"],
                        "status": "emitted" if thr is not None else r["status"],
                        "test": {m: e[m] for m in ("support", "negatives", "precision", "recall", "f1")} if e else None,
                        "by_eye": {m: b[m] for m in ("support", "negatives", "f1")} if b else None})
    probe_rows = probe(data / "listings", emb, labels, parts, backbone)
    return {"backbone": backbone, "split_line": split_line, "part_names": PART_NAMES,
            "photos": {part: int(mask.sum()) for part, mask in parts.items()},
            "min_test_positives": MIN_TEST_POSITIVES, "chosen": CHOSEN, "targets": list(TARGETS), "big": big,
            "variants": rows, "per_key": per_key, "macro_f1": macro(test, big),
            "untrained": [{"key": k, "status": fit.report[k]["status"],
                           "labelled": bool(fit.report[k]["positives"] or fit.report[k]["negatives"])}
                          for k in fit.untrained],
            "dropped_zeros": dict(sorted(reports[CHOSEN].dropped_zeros.items())),
            "probe": {"keys": list(PROBE), "rows": probe_rows},
            "seconds": time.perf_counter() - t_start}


def render(res: dict) -> str:
    """The ``attributes`` section from a result of ``measure`` (as bench/results/attributes.json holds it).
    ``split_line`` None: a run made before the honest split (its parts by batch alone, named in ``part_names``,
    no near-duplicate filter)."""
    big, targets, chosen, least = res["big"], res["targets"], res["chosen"], res["min_test_positives"]
    names, split_line = res["part_names"], res["split_line"]
    short = [k.split(".")[1] for k in targets]
    variant_table = table(
        ["training labels (variant)", f"test macro-F1, {len(big)} keys with >= {least} positives",
         *(f"{s} F1" for s in short), *(f"{s} F1, by-eye labels" for s in short), "of those keys emitted",
         "keys emitted", "fit s"],
        [[v["name"], f"{v['macro_f1']:.3f}", *(_f(v["f1"][k]) for k in targets),
          *(_f(v["f1_by_eye"][k]) for k in targets), f"{v['emitted']}/{len(big)}", v["keys_emitted"],
          f"{v['fit_s']:.1f}"] for v in res["variants"]])
    key_rows = []
    for r in res["per_key"]:
        e, b = r["test"], r["by_eye"]
        key_rows.append([r["key"], r["positives"], r["support"], _f(r["auc"]),
                         "-" if r["threshold"] is None else f"{r['threshold']:.3f} ({r['threshold_from']})",
                         e["support"] if e else 0, e["negatives"] if e else 0, _f(e and e["precision"]),
                         _f(e and e["recall"]), f"**{_f(e and e['f1'])}**",
                         f"{_f(b['f1'])} ({b['support']}/{b['negatives']})" if b else "-", r["status"]])
    key_table = table(["attribute", "train pos", "threshold-batch pos", "gate AUC", "threshold (from)", "test pos",
                       "test neg", "precision", "recall", "F1", "F1 by-eye labels (pos/neg)", "status"], key_rows)
    tested = {r["key"]: r["test"] or {} for r in res["per_key"]}
    target_f1 = {k: tested.get(k, {}).get("f1", 0.0) for k in targets}
    probe_table = table(["frozen features", *(f"{k} AUC: CV / test" for k in res["probe"]["keys"])],
                        [[row["reading"], *(" / ".join(f"{a:.2f}" if a is not None else "-" for a in row["auc"][k])
                                            for k in res["probe"]["keys"])] for row in res["probe"]["rows"]])
    dropped, photos = res["dropped_zeros"], res["photos"]
    return "\n".join([
        "## Attribute tags (`bench/bench_attributes.py`)", "",
        (f"**Body: {res['backbone']}, frozen ImageNet-pretrained features** (not the fine-tuned body of `roomclf train`: "
         "a full fast.ai train costs ~35 min per variant on this 2-core machine), one linear masked-BCE head per "
         "attribute (`roomclf/train/attributes.py`). " + (f"Split: {SPLIT_NOTE}. " if split_line else "")
         + f"Heads trained on {names['train']}, thresholds picked on {names['val']} (best F1 with precision >= 0.8 "
         f"where that costs at most a tenth of the F1), reported on {names['test']}, photos never used for any "
         "choice. Tags are judged within each photo's true room class (labels.csv). "
         + (f"{split_line}. " if split_line else "")
         + f"Photos with attribute labels and features: train {photos['train']}, thresholds {photos['val']}, "
           f"test {photos['test']}."), "",
        ("Test labels are the reliable ones whatever a variant trained on: by-eye and curated labels, object-annotation "
         "positives, and annotation zeros only for attributes without reliable negatives (stove, dishwasher, microwave, "
         "range hood, living-room stairs: for those, precision is measured against \"not annotated\", a noisy "
         "negative). An attribute a variant does not emit counts as F1 0."), "",
        "Evidence policy (which training/threshold labels count; `import_attributes(..., evidence=...)`):", "",
        "- `as_is`: every row of attributes.csv, annotation zeros as negatives.",
        ("- `reliable` (the default): annotation zeros are left out where better evidence exists: the same photo "
         "has a by-eye label, or the attribute has by-eye negatives. "
         + (f"Here that drops {sum(dropped.values())} zeros ({', '.join(f'{k} {v}' for k, v in dropped.items())})."
            if dropped else "")),
        "- `no_annotation_zeros`: every annotation zero left out (the appliances without by-eye labels lose all negatives).", "",
        variant_table, "",
        (f"Per attribute, `{chosen}` policy, default settings (the six the seed names first, then every other "
         f"attribute with >= {least} test positives):"), "",
        key_table, "",
        (f"Targets (issue 17): macro-F1 >= 0.8 over the {len(big)} keys with >= {least} test positives: "
         f"**{res['macro_f1']:.3f}**; F1 >= 0.8 each for "
         + ", ".join(f"{k.split('.')[1]} **{v:.2f}**" for k, v in target_f1.items()) + "."), "",
        (f"Untrained under `{chosen}` (never emitted): "
         + ", ".join(f"{u['key']} ({u['status'].removeprefix('untrained: ')})" for u in res["untrained"] if u["labelled"])
         + "; and, without a single positive label: "
         + ", ".join(u["key"] for u in res["untrained"] if not u["labelled"])
         + ". The gate AUC is taken over the out-of-fold scores of the training photos together with the "
           "threshold batches' photos (`gate=\"pooled\"`); a key below 0.7 is not emitted."), "",
        ("Why fireplace and tv miss: the frozen body's pooled features rank them poorly to begin with. One linear "
         f"head per reading of the same frozen body, AUC cross-validated on {names['cv']} (5 folds) / on "
         f"{names['test']}. "
         "A reading that ranks a key near 0.6-0.8 cannot give F1 0.8; compare the rows to see what "
         "max pooling or a larger input would change (320 px: a model trained with `--image-size 320`, ~2x the "
         "compute per photo of 224 px; 416 px: the corpus photos' own size at most, ~3.4x). A body fine-tuned "
         "with the attribute labels (not only a head on top) is the other way:"), "",
        probe_table, "",
        f"Whole bench: {res['seconds']:.0f} s (embeddings cached; the probe recomputes its features).",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(default_data()))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--no-write", action="store_true",
                    help="print only; leave docs/benchmarks.md and bench/results/attributes.json alone")
    ap.add_argument("--report", action="store_true",
                    help="measure nothing: render the section again from bench/results/attributes.json")
    args = ap.parse_args()
    if args.report:
        res = load_result(SECTION)
        if res is None:
            sys.exit(f"no saved result (bench/results/{SECTION}.json): run the bench first")
    else:
        res = json.loads(json.dumps(measure(Path(args.data), args.backbone)))    # what the JSON file holds
        if not args.no_write:
            save_result(SECTION, res)
    text = render(res)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
