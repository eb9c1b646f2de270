"""`roomclf label` on a batch with no predictions prelabels it before serving (no browser needed:
``roomclf.commands.label.prepare`` is everything the command does before it starts the server)."""
from __future__ import annotations

import json

from roomclf.commands.label import prepare
from roomclf.labels.store import LabelStore

BATCH = "batch_02"


def test_label_prelabels_a_batch_without_predictions_then_reuses_them(home, corpus_root):
    said: list[str] = []
    store = LabelStore()
    assert not store.labels(("predicted",), prefix=BATCH + "/")
    app = prepare(BATCH, str(corpus_root), limit=6, echo=said.append)   # no champion registered: zero-shot
    predicted = store.labels(("predicted",), prefix=BATCH + "/")
    assert len(predicted) == 6
    assert all(lab.extra["model"].startswith("zeroshot:") and len(lab.extra["top3"]) == 3 for lab in predicted.values())
    assert set(app.state.session.suggestions()) == set(predicted)
    assert [item["suggestion"] for item in app.state.session.queue()] == \
        [predicted[p].label for p in app.state.session.order]
    assert set(json.loads(store.get_meta(f"queue:{BATCH}"))) == set(predicted)
    assert any("no predictions yet: prelabelling it first" in line for line in said)

    # a batch that has predictions is served as it is
    said.clear()
    before = {p: lab.at for p, lab in predicted.items()}
    prepare(BATCH, str(corpus_root), limit=6, echo=said.append)
    assert said == []
    assert {p: lab.at for p, lab in store.labels(("predicted",), prefix=BATCH + "/").items()} == before


def test_no_prelabel_serves_without_suggestions(home, corpus_root, capsys):
    app = prepare(BATCH, str(corpus_root), limit=3, do_prelabel=False, echo=lambda line: None)
    assert not LabelStore().labels(("predicted",), prefix=BATCH + "/")
    assert app.state.session.suggestions() == {}
    assert "no suggestions for batch_02" in capsys.readouterr().err
