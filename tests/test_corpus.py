import pytest

from roomclf.corpus import CorpusError, discover, list_batches, parse_batches, safe_join


def test_discovers_19_batches_and_all_photos(corpus_root, ground_truth):
    assert list_batches(corpus_root) == [f"batch_{i:02d}" for i in range(1, 20)]
    corpus = discover(corpus_root, "batch_19")
    photos = set(corpus.paths)
    expected = {p for p in ground_truth if p.startswith("batch_19/")}
    assert photos == expected                      # broken photo files are photos, to be reported later
    assert sorted(s.rsplit("/", 1)[1] for s in corpus.skipped) == [".DS_Store", "listing.json"]
    assert all(p.listing.startswith("listing_") and p.batch == "batch_19" for p in corpus.photos)


def test_batch_specs(corpus_root):
    assert parse_batches("batch_01,batch_03", corpus_root) == ["batch_01", "batch_03"]
    assert parse_batches("batch_02-batch_04", corpus_root) == ["batch_02", "batch_03", "batch_04"]
    assert parse_batches("5", corpus_root) == ["batch_05"]
    assert len(parse_batches("all", corpus_root)) == 19
    with pytest.raises(CorpusError, match="batch_42"):
        parse_batches("batch_42", corpus_root)
    for bad in ("foo", "01-03"):
        with pytest.raises(CorpusError, match="bad batch"):
            parse_batches(bad, corpus_root)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        discover(tmp_path / "nope")


def test_extensions_any_case(tmp_path):
    d = tmp_path / "batch_01" / "l1"
    d.mkdir(parents=True)
    for name in ("a.JPG", "b.jpeg", "c.PNG", "d.webp", "e.txt", "._f.jpg"):
        (d / name).write_bytes(b"x")
    corpus = discover(tmp_path)
    assert [p.path.rsplit("/", 1)[1] for p in corpus.photos] == ["a.JPG", "b.jpeg", "c.PNG", "d.webp"]
    assert len(corpus.skipped) == 2


def test_safe_join_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "batch_01").mkdir(parents=True)
    (root / "batch_01" / "ok.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("s")
    (root / "batch_01" / "link.jpg").symlink_to(tmp_path / "secret.txt")
    assert safe_join(root, "batch_01/ok.jpg") == (root / "batch_01" / "ok.jpg").resolve()
    assert safe_join(root, "../secret.txt") is None
    assert safe_join(root, "/etc/passwd") is None
    assert safe_join(root, "batch_01/link.jpg") is None


@pytest.mark.parametrize("spec, words", [
    ("batch_99", "batch_99 not found"),                    # a batch the corpus lacks
    ("batch_01-batch_99", "batch_99 not found"),           # ... as the end of a range
    ("batch_00-batch_03", "batch_00 not found"),
    ("batch_01--batch_03", "bad batch range"),             # ill-formed ranges
    ("batch_01-batch_02-batch_03", "bad batch range"),
    ("batch_01-", "bad batch range"),
    ("batch_03-batch_01", "batch_03 comes after batch_01"),
    ("batch_01/../batch_02", "bad batch"),
    (",", "bad batch spec"),
    ([" "], "bad batch spec"),
])
def test_unknown_or_ill_formed_batch_specs_are_refused(corpus_root, spec, words):
    with pytest.raises(CorpusError, match=words.replace("-", r"\-")):
        parse_batches(spec, corpus_root)


def test_batch_spec_forms_mix(corpus_root):
    assert parse_batches("batch_18-batch_19, 3,batch_03", corpus_root) == ["batch_18", "batch_19", "batch_03"]
    assert parse_batches(["batch_02", "batch_04-batch_05"], corpus_root) == ["batch_02", "batch_04", "batch_05"]
    assert parse_batches(None, corpus_root) == parse_batches("all", corpus_root) == list_batches(corpus_root)
