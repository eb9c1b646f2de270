"""sample-data: the archive path with a small archive built here, and an existing corpus used in place."""
import csv
import zipfile

import pytest
from click.testing import CliRunner

from roomclf.sample_data import SampleDataError, get_sample_corpus, sha256


@pytest.fixture()
def small_archive(tmp_path, corpus_root, ground_truth):
    """A Houses-Dataset-shaped zip: 3 houses x 4 rooms from real photos, plus noise files."""
    by_room = {"bathroom": "bathroom", "bedroom": "bedroom", "frontal": "exterior", "kitchen": "kitchen"}
    picks = {room: [p for p, r in sorted(ground_truth.items()) if r["label"] == lab and r["source"] == "houses_dataset"][:3]
             for room, lab in by_room.items()}
    archive = tmp_path / "houses.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for house in (1, 2, 3):
            for room in by_room:
                z.write(corpus_root / picks[room][house - 1], f"Houses-dataset-master/Houses Dataset/{house}_{room}.jpg")
        z.writestr("Houses-dataset-master/Houses Dataset/HousesInfo.txt", "1 2 3\n")
        z.writestr("Houses-dataset-master/README.md", "readme")
    return archive


def test_archive_is_laid_out_as_a_crawl_with_labels(small_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", str(small_archive))
    out = tmp_path / "sample"
    corpus = get_sample_corpus(out)
    assert not corpus.in_place and corpus.photos == 12
    files = sorted(p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*.jpg"))
    assert files[:4] == [f"batch_01/listing_0001/photo_0{i}.jpg" for i in range(1, 5)]
    rows = list(csv.DictReader(open(corpus.labels_csv)))
    assert {r["label"] for r in rows} == {"bathroom", "bedroom", "exterior", "kitchen"}
    assert rows[0] == {"path": "batch_01/listing_0001/photo_01.jpg", "label": "exterior", "subtype": "frontal",
                       "source": "houses_dataset"}
    assert (out / "archive.sha256").read_text().count(sha256(small_archive)) == 1
    # a rerun reuses the layout
    again = get_sample_corpus(out)
    assert again.photos == 12 and again.root == corpus.root


def test_checksum_mismatch_is_refused(small_archive, tmp_path):
    with pytest.raises(SampleDataError, match="checksum mismatch"):
        get_sample_corpus(tmp_path / "s", str(small_archive), expected_sha256="0" * 64)
    assert not (tmp_path / "s" / "listings").exists()


def test_existing_corpus_is_used_in_place(shared_data, tmp_path):
    corpus = get_sample_corpus(tmp_path / "s", str(shared_data))
    assert corpus.in_place and corpus.root == (shared_data / "listings").resolve()
    assert not any((tmp_path / "s").glob("**/*.jpg"))


def test_cli_missing_source_is_one_line(tmp_path, home, monkeypatch):
    from roomclf.cli import main

    monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", str(tmp_path / "nothing.zip"))
    result = CliRunner().invoke(main, ["sample-data", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no such archive or folder" in result.output
