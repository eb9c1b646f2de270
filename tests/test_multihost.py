"""Many machines, simulated as real processes on this one (see tests/hosts.py).

A real `mlflow server` (SQLite backend, its own artifact folder, artifacts served
through it); host A labels, trains and registers; host A's folders are then
removed; host B runs `roomclf infer-all` on a Ray cluster of a head and worker
nodes (`ray start` processes, each with its own HOME) and gets the champion only
through the server; host C serves and follows a promotion made from host A.
Faults: a worker node's raylet SIGKILLed mid-run, the server killed during
registration. Nothing is mocked.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import pick_photos
from hosts import (
    PROJECT,
    Host,
    RayNode,
    TrackingServer,
    free_port,
    http_ok,
    stop_group,
    wait_for,
)

pytestmark = pytest.mark.slow

MODEL_RESOURCE = "roomclf_model"
# efficientnet_lite0: the network does not matter to what crosses hosts, and it is the cheapest to train
TRAIN_ARGS = ["--train-batches", "batch_01", "--valid-batches", "batch_02", "--backbone", "efficientnet_lite0",
              "--image-size", "96", "--frozen-epochs", "1", "--epochs", "1", "--batch-size", "16", "--lr", "0.01"]
LISTINGS = {"batch_01": 2, "batch_02": 2, "batch_19": 1}    # the small corpus infer-all runs on


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hosts")


@pytest.fixture(scope="module")
def server(base):
    srv = TrackingServer(base / "tracking-server").start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def labels_file(base, ground_truth) -> Path:
    """What host A's person labelled: 60 photos of batch_01, 30 of batch_02."""
    rows = pick_photos(ground_truth, "batch_01", 60) + pick_photos(ground_truth, "batch_02", 30)
    path = base / "labels.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    return path


def labelled_host(base, name, server, corpus_root, labels_file, **extra) -> Host:
    host = Host(base, name, server.url, corpus_root, **extra)
    host.run("import-labels", str(labels_file), "--as", "manual")
    return host


def linked_corpus(root: Path, corpus_root: Path, listings: dict[str, int]) -> Path:
    """The first listings of some batches, their files linked from the corpus (which every host sees)."""
    for batch, n in listings.items():
        for listing in sorted(p for p in (corpus_root / batch).iterdir() if p.is_dir())[:n]:
            (root / batch / listing.name).mkdir(parents=True)
            for f in listing.iterdir():
                (root / batch / listing.name / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def small_corpus(base, corpus_root) -> Path:
    return linked_corpus(base / "shared-corpus", corpus_root, LISTINGS)


def client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


@pytest.fixture(scope="module")
def first_model(base, server, corpus_root, labels_file):
    """Host A trains and registers; then host A's folders are removed."""
    host = labelled_host(base, "host-a", server, corpus_root, labels_file)
    result = host.run("train", *TRAIN_ARGS, "--run-name", "host-a")
    local_artifacts = sorted(str(p) for p in host.dir.rglob("*") if "mlartifacts" in p.parts or p.name == "MLmodel")
    shutil.rmtree(host.dir)
    return {"stdout": result.stdout, "local_artifacts": local_artifacts}


@pytest.fixture(scope="module")
def cluster(base, server):
    """A Ray head without the model resource and a worker node that has it: each its own host."""
    head = RayNode(Host(base, "ray-head", server.url, base), None, cpus=1, temp_dir=f"/tmp/rclf-mh-{free_port()}")
    worker = RayNode(Host(base, "ray-worker-1", server.url, base), head.head_port, cpus=1,
                     resources=json.dumps({MODEL_RESOURCE: 2}))
    nodes = [head, worker]
    yield {"head": head, "worker": worker, "nodes": nodes, "address": f"127.0.0.1:{head.head_port}"}
    for node in reversed(nodes):
        node.stop()


def ray_facts(host: Host) -> dict:
    """From host B, as a driver of the cluster: node ids by resource, and where a task on a
    model node imports roomclf from (the package shipped through the runtime_env)."""
    script = (
        "import json, ray\n"
        "from roomclf.infer.ray_engine import ray_runtime_env\n"
        "ray.init(address='auto', runtime_env=ray_runtime_env(), log_to_driver=False)\n"
        f"@ray.remote(num_cpus=0.1, resources={{'{MODEL_RESOURCE}': 0.01}})\n"
        "def where():\n"
        "    import roomclf\n"
        "    return roomclf.__file__, ray.get_runtime_context().get_node_id()\n"
        "alive = [n for n in ray.nodes() if n['Alive']]\n"
        f"model = [n['NodeID'] for n in alive if n['Resources'].get('{MODEL_RESOURCE}')]\n"
        "other = [n['NodeID'] for n in alive if not n['Resources'].get('" + MODEL_RESOURCE + "')]\n"
        "print(json.dumps({'model_nodes': model, 'other_nodes': other, 'task': ray.get(where.remote())}))\n")
    out = host.tool("python", "-c", script, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- host A: train, register


def test_training_on_host_a_lands_on_the_server(server, first_model):
    c = client(server)
    exp = c.get_experiment_by_name("roomclf-train")
    assert exp is not None and exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    assert exp.artifact_location.startswith("mlflow-artifacts:")          # the server's, not host A's disk
    runs = c.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in runs] == ["host-a"]
    assert not c.search_runs([c.get_experiment_by_name("Default").experiment_id])
    assert first_model["local_artifacts"] == []                            # nothing landed on host A's disk
    assert any(server.artifacts.rglob("MLmodel"))

    run = runs[0]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"roomclf-train", "roomclf-valid"} and inputs["roomclf-train"].dataset.digest
    train_csv = c.download_artifacts(run.info.run_id, "data/train.csv", str(server.root / "check"))
    assert len(pd.read_csv(train_csv)) == 60

    for name in ("roomclf", "roomclf-onnx"):
        model = c.get_registered_model(name)
        assert model.description and model.aliases.get("champion") == "1"
        mv = c.get_model_version(name, "1")
        assert "batch_01" in mv.description and "batch_02" in mv.description and "accuracy" in mv.description
        assert mv.run_id == run.info.run_id


def test_registered_onnx_has_signature_and_input_example(server, first_model, base):
    from mlflow.models import Model

    host = Host(base, "host-d", server.url, base)
    local = host.tool("python", "-c", "import mlflow; print(mlflow.artifacts.download_artifacts("
                                      "'models:/roomclf-onnx@champion', dst_path='dl'))").stdout.strip().splitlines()[-1]
    meta = Model.load(local)
    assert meta.signature.inputs.input_names() == ["image"] or meta.signature.inputs.inputs
    assert {"probs", "attributes", "embedding"} <= set(meta.signature.outputs.input_names())
    assert meta.load_input_example(local).shape == (1, 3, 96, 96)


# --------------------------------------------------------------------------- host B: infer-all on a cluster


def test_infer_all_on_a_worker_node_through_the_server(base, server, first_model, cluster, small_corpus):
    host = Host(base, "host-b", server.url, small_corpus, RAY_ADDRESS=cluster["address"])
    facts = ray_facts(host)
    worker_id = facts["model_nodes"][0]
    assert len(facts["model_nodes"]) == 1 and worker_id not in facts["other_nodes"]
    code, node = facts["task"]
    assert node == worker_id and "runtime_resources" in code      # the package came through the runtime_env

    out = base / "shared-out"
    result = host.run("infer-all", "--data", str(small_corpus), "--out", str(out), "--actor-resource", MODEL_RESOURCE,
                      "--no-progress")
    assert "roomclf-onnx 1" in result.stdout
    from roomclf.infer.output import done_record, read_photos

    photos = read_photos(out)
    files = {str(p.relative_to(small_corpus)) for p in small_corpus.rglob("*.jpg")}
    assert len(photos) == len(files) and set(photos["path"]) == files
    assert set(photos["node"]) == {worker_id}                         # predicted on the worker node
    for batch in LISTINGS:
        assert done_record(out, batch)["nodes"] == {worker_id: int((photos["batch"] == batch).sum())}


def test_ray_address_without_flag_and_ray_client_refused(base, server, first_model, cluster, small_corpus):
    host = Host(base, "host-b2", server.url, small_corpus, RAY_ADDRESS="ray://127.0.0.1:10001")
    bad = host.run("infer-all", "--out", str(base / "out-client"), "--no-progress", check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("Error: ray://127.0.0.1:10001: Ray Client")
    missing = Host(base, "host-b3", server.url, small_corpus, RAY_ADDRESS=cluster["address"])
    none = missing.run("infer-all", "--out", str(base / "out-none"), "--actor-resource", "gpu_model",
                       "--no-progress", check=False)
    assert none.returncode == 1 and "no node of the cluster has the resource 'gpu_model'" in none.stderr


# --------------------------------------------------------------------------- mlflow run, promotion, serving


def test_mlflow_run_train_lands_in_roomclf_train(base, server, corpus_root, labels_file, first_model):
    host = labelled_host(base, "host-a2", server, corpus_root, labels_file)
    params = [x for k, v in (("train_batches", "batch_01"), ("valid_batches", "batch_02"),
                             ("backbone", "efficientnet_lite0"), ("image_size", "96"),
                             ("frozen_epochs", "1"), ("epochs", "1"), ("batch_size", "16"), ("lr", "0.01"))
              for x in ("-P", f"{k}={v}")]
    host.tool("mlflow", "run", str(PROJECT), "-e", "train", "--env-manager", "local", *params, timeout=900)
    c = client(server)
    runs = c.search_runs([c.get_experiment_by_name("roomclf-train").experiment_id])
    assert len(runs) == 2
    launcher = c.search_runs([c.get_experiment_by_name("Default").experiment_id])
    assert len(launcher) == 1 and launcher[0].data.tags["roomclf.step_run"] in {r.info.run_id for r in runs}
    assert c.get_model_version("roomclf-onnx", "2").run_id == launcher[0].data.tags["roomclf.step_run"]


def test_serving_host_follows_a_promotion_made_on_host_a(base, server, first_model):
    import httpx

    c = client(server)
    if int(c.get_registered_model("roomclf-onnx").latest_versions[0].version) < 2:
        pytest.skip("needs the second version registered by the mlflow run test")
    champion = c.get_registered_model("roomclf-onnx").aliases["champion"]
    other = "1" if champion == "2" else "2"
    serving = Host(base, "host-c", server.url, base)
    port = free_port()
    proc = serving.popen("serve", "--port", str(port), "--poll", "1", log=serving.dir / "serve.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 120, "roomclf serve", proc,
                 serving.dir / "serve.log")
        assert httpx.get(f"http://127.0.0.1:{port}/model").json()["version"] == champion
        promoter = Host(base, "host-a3", server.url, base)
        said = promoter.run("promote", "roomclf-onnx", other).stdout
        assert "@champion now on roomclf v" in said and f"roomclf-onnx v{other}" in said
        listed = [ln for ln in promoter.run("models").stdout.splitlines() if "champion" in ln]
        assert sorted(ln.split()[:2] for ln in listed)[1] == ["roomclf-onnx", other]
        onnx_mv = c.get_model_version_by_alias("roomclf-onnx", "champion")
        torch_mv = c.get_model_version_by_alias("roomclf", "champion")
        assert onnx_mv.version == other and torch_mv.run_id == onnx_mv.run_id      # moved together
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/model").json()["version"] == other, 60,
                 "host C follows the promotion", proc, serving.dir / "serve.log")
    finally:
        stop_group(proc)


# --------------------------------------------------------------------------- faults


def test_worker_node_killed_mid_run_then_rerun_is_exactly_once(base, server, first_model, cluster, corpus_root):
    root = linked_corpus(base / "kill-corpus", corpus_root, dict.fromkeys(("batch_03", "batch_04", "batch_05",
                                                                           "batch_06"), 4))
    second = RayNode(Host(base, "ray-worker-2", server.url, base), cluster["head"].head_port, cpus=1,
                     resources=json.dumps({MODEL_RESOURCE: 2}))
    cluster["nodes"].append(second)
    host = Host(base, "host-b4", server.url, root, RAY_ADDRESS=cluster["address"])
    out = base / "kill-out"
    args = ["infer-all", "--out", str(out), "--actor-resource", MODEL_RESOURCE, "--no-progress",
            "--stall-timeout", "90"]
    log = host.dir / "infer.log"
    proc = host.popen(*args, log=log)
    try:
        wait_for(lambda: any((out / "_done").glob("*.json")) if (out / "_done").is_dir() else False, 300,
                 "a first batch committed", proc, log)
        victim = cluster["worker"]
        os.kill(victim.raylet_pid(), signal.SIGKILL)                   # that node is gone, mid-run
        proc.wait(timeout=400)
    finally:
        stop_group(proc)
    text = log.read_text()
    if proc.returncode != 0:                                           # failed: then with one clear line
        assert "Traceback" not in text and text.strip().splitlines()[-1].startswith("Error: "), text[-2000:]
    host.run(*args, timeout=600)                                       # the rerun finishes what is left
    from roomclf.infer.output import read_photos

    photos = read_photos(out)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))
    assert sorted(photos["path"]) == sorted(set(photos["path"])) and set(files) <= set(photos["path"])


def test_server_stopped_during_registration(base, server, corpus_root, labels_file, first_model):
    host = labelled_host(base, "host-a4", server, corpus_root, labels_file,
                         MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
                         MLFLOW_HTTP_REQUEST_TIMEOUT="20")
    before = set(server.artifacts.rglob("MLmodel"))
    log = host.dir / "train.log"
    proc = host.popen("train", *TRAIN_ARGS, "--run-name", "interrupted", log=log)
    try:
        wait_for(lambda: "registering" in log.read_text(), 600, "training reaches registration", proc, log)
        wait_for(lambda: set(server.artifacts.rglob("MLmodel")) - before, 120, "a first model version uploaded",
                 proc, log)
        server.kill()
        proc.wait(timeout=300)
    finally:
        stop_group(proc)
        if server.proc is None:
            server.start()          # back on the same port, whatever happened: the next tests share it
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in text, text[-3000:]
    assert last.startswith("Error: registration failed: the MLflow tracking store at http://127.0.0.1:"), last
    kept = list((host.roomclf_home / "train-runs").glob("*/model.onnx"))     # the training is not thrown away
    assert len(kept) == 1 and f"the trained model is kept in {kept[0].parent}" in text

    c = client(server)
    from mlflow.artifacts import list_artifacts

    for name in ("roomclf", "roomclf-onnx"):
        for alias, version in c.get_registered_model(name).aliases.items():
            uri = c.get_model_version_download_uri(name, version)
            files = list_artifacts(artifact_uri=uri, tracking_uri=server.url)
            assert any(f.path.endswith("MLmodel") for f in files), (name, alias, version)
    done = host.run("train", *TRAIN_ARGS, "--run-name", "interrupted")     # the same command, server back
    assert "registered roomclf-onnx v" in done.stdout
    assert [p.parent for p in (host.roomclf_home / "train-runs").glob("*/model.onnx")] == [kept[0].parent]
    runs = c.search_runs([c.get_experiment_by_name("roomclf-train").experiment_id], "run_name = 'interrupted'")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]   # the dead run is not left RUNNING


# --------------------------------------------------------------------------- the UI


def test_ui_with_a_remote_store_says_where_it_is(base, server, first_model):
    host = Host(base, "host-e", server.url, base)
    said = host.run("ui", timeout=60).stdout
    experiment = client(server).get_experiment_by_name("roomclf-train").experiment_id
    assert "nothing to start here" in said
    assert f"{server.url}/#/experiments/{experiment}?workflowType=machine_learning" in said


def test_server_ui_in_a_browser_shows_the_experiment_and_the_model(server, first_model, tmp_path):
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        from roomclf.tracking.experiments import ui_link

        experiment = client(server).get_experiment_by_name("roomclf-train").experiment_id
        page.goto(ui_link(server.url, f"experiments/{experiment}"), timeout=60000)   # what roomclf prints
        page.get_by_text("host-a").first.wait_for(timeout=90000)
        page.get_by_text("Training").first.wait_for(timeout=30000)          # its dataset inputs
        page.screenshot(path=str(tmp_path / "experiment.png"))
        page.goto(ui_link(server.url, "models/roomclf-onnx"), timeout=60000)
        page.get_by_text("as an ONNX graph").first.wait_for(timeout=90000)
        page.get_by_text("@ champion").or_(page.get_by_text("champion")).first.wait_for(timeout=30000)
        page.screenshot(path=str(tmp_path / "model.png"))
        browser.close()
    if os.environ.get("ROOMCLF_TEST_SCREENSHOTS"):                  # to look at them by eye
        keep = Path(os.environ["ROOMCLF_TEST_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for f in tmp_path.glob("*.png"):
            shutil.copy(f, keep / f.name)
    assert (tmp_path / "model.png").stat().st_size > 0


def test_local_ui_stops_everything_it_started_on_sigterm(tmp_path):
    from hosts import BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ROOMCLF_"))}
    env.update(ROOMCLF_HOME=str(tmp_path / "home"), HOME=str(tmp_path), MLFLOW_DISABLE_TELEMETRY="true")
    port = free_port()
    proc = subprocess.Popen([str(BIN / "roomclf"), "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 120, "roomclf ui", proc)
        started = descendants(proc.pid)
        assert len(started) >= 2                                      # the server and its workers
        proc.send_signal(signal.SIGTERM)                              # to roomclf ui alone
        proc.wait(timeout=60)
        wait_for(lambda: not any(alive(p) for p in started), 30, "everything roomclf ui started stops")
        assert not http_ok(f"http://127.0.0.1:{port}/health")
    finally:
        stop_group(proc, first=signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                parent[int(p)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        cur = todo.pop()
        kids = [c for c, pp in parent.items() if pp == cur]
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- the README


def readme_cluster_commands() -> list[list[str]]:
    import shlex

    text = (PROJECT / "README.md").read_text()
    section = text.split("## Many machines", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in section.splitlines() if line.strip() and not line.startswith("#")]


def matches(readme: list[str], ran: list[str]) -> bool:
    """The same program, and every word of the README's command in the command a host ran
    ($VARS stand for any value, `.` for the project folder; the tests add flags of their own)."""
    import re

    def same(word: str, w: str) -> bool:
        pattern = "^" + re.sub(r"\\\$[A-Z_]+", ".+", re.escape(word)) + "$"
        return bool(re.match(pattern, w)) or (word == "." and w == str(PROJECT))

    return bool(ran) and ran[0] == readme[0] and all(any(same(word, w) for w in ran[1:]) for word in readme[1:])


def test_every_readme_cluster_command_ran_in_these_tests():
    from hosts import RAN

    if len(RAN) < 20:
        pytest.skip("run with the whole module: the commands are recorded as the hosts run them")
    missing = [" ".join(cmd) for cmd in readme_cluster_commands() if not any(matches(cmd, ran) for ran in RAN)]
    assert not missing, missing
