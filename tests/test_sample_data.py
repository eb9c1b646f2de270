"""sample-data: the shipped manifest, and real downloads from a local HTTP server.

The server (http.server on 127.0.0.1, in a thread) serves corpus photos whose copy is
byte-identical to their upstream file (``identical=1`` in upstream.csv), under the
manifest URLs' paths; ``ROOMCLF_SAMPLE_URL_PREFIX`` sends the downloads to it. Some
files misbehave on purpose: missing (404), corrupted, slow, failing once with a 503,
stalling past the timeout.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from roomclf.sample.download import (
    SampleDataError,
    get_sample_corpus,
    sha256,
    source_url,
)
from roomclf.sample.manifest import (
    MANIFEST,
    PINNED_COMMITS,
    Entry,
    attributes_file,
    build,
    build_attributes,
    load,
    write,
    write_attributes,
)
from roomclf.taxonomy import CLASSES

PROJECT = Path(__file__).resolve().parent.parent


class PhotoServer:
    """A real HTTP server for manifest entries; ``mode[url_path]`` makes one file misbehave."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.mode: dict[str, str] = {}
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with server.lock:
                    server.hits[self.path] += 1
                    first = server.hits[self.path] == 1
                mode = server.mode.get(self.path, "ok")
                body = server.files.get(self.path)
                if body is None or mode == "missing":
                    return self._send(404, b"not found")
                if mode == "flaky" and first:
                    return self._send(503, b"try later")
                if mode == "corrupt":
                    body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
                if mode == "slow":
                    time.sleep(0.6)
                if mode == "stall":
                    time.sleep(4)
                self._send(200, body)

            def _send(self, code: int, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "image/jpeg" if code == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.prefix = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests(self) -> Counter:
        with self.lock:
            return Counter(self.hits)


def url_path(entry: Entry) -> str:
    return urlsplit(entry.url).path


def identical_entries(shared_data: Path, batches: str, per_class: int | None) -> list[Entry]:
    return build(shared_data, batches, per_class=per_class, identical_only=True)


def serve_files(shared_data: Path, entries: list[Entry]) -> dict[str, bytes]:
    files = {}
    for e in entries:
        data = (shared_data / "listings" / e.path).read_bytes()
        assert len(data) == e.size, e.path      # identical=1: the corpus copy is the upstream file
        files[url_path(e)] = data
    return files


@pytest.fixture()
def net_env(monkeypatch):
    """Talk to 127.0.0.1 directly even where a proxy is configured; no in-place corpus."""
    for var in ("ROOMCLF_SAMPLE_SOURCE", "ROOMCLF_SAMPLE_MANIFEST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return monkeypatch


def run_cli(*args: str):
    from roomclf.cli import main

    return CliRunner().invoke(main, ["sample-data", *args], catch_exceptions=False)


# ---- the shipped manifest ---------------------------------------------------------------------
def test_shipped_manifest_is_well_formed():
    entries = load()     # checks columns, places, sha256 and sizes row by row
    assert 1000 <= len(entries) <= 2000
    assert {e.label for e in entries} == set(CLASSES)
    assert len({e.path for e in entries}) == len(entries)
    batches = sorted({e.batch for e in entries})
    assert len(batches) >= 3
    for b in batches:                   # every batch can train or validate all 7 classes
        assert {e.label for e in entries if e.batch == b} == set(CLASSES), b
    url = re.compile(r"^https://raw\.githubusercontent\.com/([^/]+/[^/]+)/([0-9a-f]{40})/(\S+)$")
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.size > 0
        m = url.match(e.url)
        assert m, e.url
        assert PINNED_COMMITS[m.group(1)] == m.group(2), e.url
        assert " " not in m.group(3)
    assert MANIFEST.read_text().count("\n") == len(entries) + 1


def test_shipped_manifest_is_what_the_script_builds(shared_data, tmp_path):
    """Rebuilt from ../shared/data by `python -m roomclf.sample.manifest`, it is the same file."""
    out = tmp_path / "m.csv"
    done = subprocess.run([sys.executable, "-m", "roomclf.sample.manifest", "--data", str(shared_data),
                           "--out", str(out)], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "per class:" in done.stdout
    assert out.read_bytes() == MANIFEST.read_bytes()
    assert attributes_file(out).read_bytes() == attributes_file(MANIFEST).read_bytes()
    assert "attribute labels of" in done.stdout
    # and its hashes are the corpus's where the corpus copy is the upstream file
    with open(shared_data / "upstream.csv", newline="") as f:
        identical = {r["path"] for r in csv.DictReader(f) if r["identical"] == "1"}
    same = [e for e in load() if e.path in identical][:20]
    assert same and all(sha256(shared_data / "listings" / e.path) == e.sha256 for e in same)


def test_url_prefix_replaces_scheme_and_host():
    path = "/a/b/" + "0" * 40 + "/Houses%20Dataset/1_bedroom.jpg"
    url = "https://raw.githubusercontent.com" + path
    assert source_url(url, "http://127.0.0.1:9/") == "http://127.0.0.1:9" + path
    assert source_url(url, "") == url


# ---- downloads --------------------------------------------------------------------------------
def test_download_verifies_reports_and_resumes(shared_data, tmp_path, net_env):
    entries = identical_entries(shared_data, "batch_01", per_class=1)        # 7 photos, one per class
    assert len(entries) == 7
    manifest = write(entries, tmp_path / "manifest.csv")
    attributes = build_attributes(shared_data, entries)
    write_attributes(attributes, attributes_file(manifest))
    missing, corrupt, slow, flaky, stall = entries[:5]
    out = tmp_path / "sample"
    with PhotoServer(serve_files(shared_data, entries)) as server:
        server.mode = {url_path(missing): "missing", url_path(corrupt): "corrupt", url_path(slow): "slow",
                       url_path(flaky): "flaky", url_path(stall): "stall"}
        net_env.setenv("ROOMCLF_SAMPLE_URL_PREFIX", server.prefix)
        t0 = time.perf_counter()
        result = run_cli("--out", str(out), "--manifest", str(manifest), "--timeout", "1.5", "--retries", "1")
        elapsed = time.perf_counter() - t0
        assert result.exit_code == 0, result.output
        good = [e for e in entries if e not in (missing, corrupt, stall)]
        for e in good:                                           # landed, verified, where the crawl puts them
            assert sha256(out / "listings" / e.path) == e.sha256
        for e in (missing, corrupt, stall):
            assert not (out / "listings" / e.path).exists()
        assert not list(out.rglob("*.part"))
        out_text = result.output
        assert f"{len(good)} of 7 sample photos" in out_text and "could not get 3 photos" in out_text
        assert re.search(rf"{missing.path}: missing \(HTTP 404\)", out_text)
        assert re.search(rf"{corrupt.path}: sha256 mismatch", out_text)
        assert re.search(rf"{stall.path}: timed out after 1.5s \(gave up after 2 tries\)", out_text)
        with open(out / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [(r["path"], r["label"]) for r in rows] == [(e.path, e.label) for e in good]
        with open(out / "attributes.csv", newline="") as f:     # the attribute labels of the photos that landed
            landed = list(csv.DictReader(f))
        assert landed and landed == [r for r in attributes if r["path"] in {e.path for e in good}]
        hits = server.requests()
        assert hits[url_path(flaky)] == 2 and hits[url_path(slow)] == 1 and hits[url_path(stall)] == 2
        assert elapsed < 30

        # a rerun fetches only what is missing; a damaged file is not trusted and comes again
        (out / "listings" / good[0].path).write_bytes(b"half a photo")
        stale = out / "listings" / good[1].path
        (stale.parent / f".{stale.name}.x1y2.part").write_bytes(b"left by a killed run")
        server.mode = {url_path(missing): "missing", url_path(corrupt): "corrupt"}
        before = server.requests()
        again = run_cli("--out", str(out), "--manifest", str(manifest), "--timeout", "1.5", "--retries", "1")
        assert again.exit_code == 0, again.output
        assert server.requests() - before == Counter({url_path(missing): 1, url_path(corrupt): 1,
                                                      url_path(stall): 1, url_path(good[0]): 1})
        assert "2 downloaded" in again.output and f"{len(good) - 1} already there" in again.output
        assert sha256(out / "listings" / good[0].path) == good[0].sha256
        assert sha256(out / "listings" / stall.path) == stall.sha256     # no longer stalling: it came
        assert not list(out.rglob("*.part"))

        # once the server has them, the last ones land and labels.csv lists all 7
        server.mode = {}
        before = server.requests()
        last = run_cli("--out", str(out), "--manifest", str(manifest))
        assert last.exit_code == 0 and "7 of 7 sample photos" in last.output and "could not" not in last.output
        assert server.requests() - before == Counter({url_path(missing): 1, url_path(corrupt): 1})
    with open(out / "labels.csv", newline="") as f:
        assert sorted(r["path"] for r in csv.DictReader(f)) == sorted(e.path for e in entries)
    with open(out / "attributes.csv", newline="") as f:
        assert list(csv.DictReader(f)) == attributes


def test_get_sample_corpus_downloads_through_the_environment(shared_data, tmp_path, net_env):
    """What the demo calls: manifest and URL prefix from the environment, a concurrent download."""
    entries = identical_entries(shared_data, "batch_01-batch_02", per_class=2)
    write(entries, tmp_path / "m.csv")
    with PhotoServer(serve_files(shared_data, entries)) as server:
        net_env.setenv("ROOMCLF_SAMPLE_URL_PREFIX", server.prefix)
        net_env.setenv("ROOMCLF_SAMPLE_MANIFEST", str(tmp_path / "m.csv"))
        corpus = get_sample_corpus(tmp_path / "s", progress=False)
        assert not corpus.in_place and corpus.photos == len(entries) == corpus.fetched and not corpus.failed
        assert corpus.root == (tmp_path / "s" / "listings").resolve()
        assert sorted(p.name for p in corpus.root.iterdir()) == ["batch_01", "batch_02"]
        again = get_sample_corpus(tmp_path / "s", progress=False)
        assert again.present == len(entries) and again.fetched == 0
        assert sum(server.requests().values()) == len(entries)


def test_unreachable_source_fails_fast_with_one_line(shared_data, tmp_path, net_env):
    import socket

    entries = identical_entries(shared_data, "batch_01", per_class=3)
    write(entries, tmp_path / "m.csv")
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    net_env.setenv("ROOMCLF_SAMPLE_URL_PREFIX", f"http://127.0.0.1:{port}")
    from roomclf.cli import main

    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["sample-data", "--out", str(tmp_path / "o"), "--manifest",
                                       str(tmp_path / "m.csv"), "--retries", "1", "--jobs", "4"])
    assert result.exit_code == 1
    assert "cannot download the sample" in result.output and "ROOMCLF_SAMPLE_SOURCE" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: cannot download the sample")
    assert time.perf_counter() - t0 < 20
    assert not (tmp_path / "o" / "labels.csv").exists()


def test_existing_corpus_is_used_in_place(shared_data, tmp_path):
    corpus = get_sample_corpus(tmp_path / "s", str(shared_data))
    assert corpus.in_place and corpus.root == (shared_data / "listings").resolve()
    assert not any((tmp_path / "s").glob("**/*.jpg"))


def test_source_that_is_not_a_corpus_is_one_line(tmp_path, home, monkeypatch):
    monkeypatch.setenv("ROOMCLF_SAMPLE_SOURCE", str(tmp_path / "nothing"))
    result = run_cli("--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "not a corpus" in result.output
    with pytest.raises(SampleDataError, match="not a corpus"):
        get_sample_corpus(tmp_path / "o")


def test_bad_manifest_or_prefix_is_one_line(tmp_path, net_env):
    bad = tmp_path / "m.csv"
    bad.write_text("path,label,subtype,source,sha256,size,url\n"
                   "batch_01/listing_0001/photo_01.jpg,kitchen,,x,notahash,10,https://example.org/a.jpg\n")
    from roomclf.cli import main

    result = CliRunner().invoke(main, ["sample-data", "--out", str(tmp_path / "o"), "--manifest", str(bad)])
    assert result.exit_code == 1 and "bad sha256, size or url" in result.output
    net_env.setenv("ROOMCLF_SAMPLE_URL_PREFIX", "localhost:8000")
    result = CliRunner().invoke(main, ["sample-data", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.strip() == \
        "Error: ROOMCLF_SAMPLE_URL_PREFIX=localhost:8000: expected http(s)://HOST[:PORT]"


# ---- the demo on a downloaded sample ----------------------------------------------------------
@pytest.mark.slow
def test_demo_runs_on_a_downloaded_sample_without_shared(shared_data, tmp_path):
    """`roomclf sample-data` then `roomclf demo` in fresh processes, with nothing of ../shared in reach:
    the corpus is what came from the local server into a temporary folder."""
    entries = identical_entries(shared_data, "batch_01-batch_04", per_class=8)
    assert {e.label for e in entries} == set(CLASSES)
    manifest = write(entries, tmp_path / "manifest.csv")
    write_attributes(build_attributes(shared_data, entries), attributes_file(manifest))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()        # the cores it may use (conftest) and nothing else of ours
           if (not k.startswith(("ROOMCLF_", "MLFLOW_", "RAY_")) or k == "ROOMCLF_CPUS") and k != "TORCH_HOME"}
    env.update({"HOME": str(tmp_path / "user"), "ROOMCLF_HOME": str(home),
                "ROOMCLF_DATA": str(home / "sample" / "listings"), "ROOMCLF_SAMPLE_MANIFEST": str(manifest),
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"})
    (tmp_path / "user").mkdir()
    roomclf = str(Path(sys.executable).with_name("roomclf"))
    with PhotoServer(serve_files(shared_data, entries)) as server:
        env["ROOMCLF_SAMPLE_URL_PREFIX"] = server.prefix
        got = subprocess.run([roomclf, "sample-data"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        assert got.returncode == 0, got.stdout + got.stderr
        assert f"{len(entries)} of {len(entries)} sample photos" in got.stdout
        demo = subprocess.run([roomclf, "demo", "--manual-labels", "40"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=840)
        out = demo.stdout + demo.stderr
        assert demo.returncode == 0, out[-6000:]
        assert sum(server.requests().values()) == len(entries)     # the demo reused the verified sample
    assert "[7/7] summary" in out and "validation accuracy" in out
    assert "attribute check-boxes of the photos it labels from attributes.csv" in out   # the sample's tags
    assert str(home / "sample" / "listings") in out
    assert "shared/data" not in out
