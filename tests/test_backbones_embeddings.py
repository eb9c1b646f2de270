"""Backbone registry and embeddings: real pretrained weights, cache behaviour."""
import os
import shutil

import numpy as np
import pytest
from conftest import pick_photos

from roomclf.models.backbones import BACKBONES, BackboneError, build_backbone, get_spec
from roomclf.models.embeddings import embed


def test_registry_carries_preprocessing():
    spec = get_spec("efficientnet_lite0")
    assert (spec.weights_size, spec.train_size, spec.mean, spec.std, spec.feature_dim) == (
        224, 224, (0.5,) * 3, (0.5,) * 3, 1280)
    lite2 = get_spec("efficientnet_lite2")      # its weights are 260 px; training fine-tunes it larger
    assert (lite2.weights_size, lite2.train_size) == (260, 300)
    assert {n: s.weights_size for n, s in BACKBONES.items() if n != "efficientnet_lite2"} == {
        n: s.train_size for n, s in BACKBONES.items() if n != "efficientnet_lite2"}
    assert set(BACKBONES) >= {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50", "densenet121"}
    with pytest.raises(BackboneError, match="unknown backbone"):
        get_spec("vgg11")


WEIGHTS = {"resnet50": "ResNet50_Weights", "densenet121": "DenseNet121_Weights"}   # torchvision's weight enums


@pytest.fixture()
def no_network(monkeypatch):
    """Downloads fail, as they do offline: every URL goes through a proxy on a port nobody listens on."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, dead)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    urllib.request.install_opener(None)      # urlopen builds its opener (and reads the proxies) anew
    yield
    urllib.request.install_opener(None)


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_torchvision_backbone_offline_is_one_line(name, tmp_path, monkeypatch, no_network):
    import torchvision

    from roomclf.errors import RoomclfError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackboneError) as err:
        build_backbone(name)
    message = str(err.value)
    assert isinstance(err.value, RoomclfError) and "\n" not in message
    url = getattr(torchvision.models, WEIGHTS[name]).IMAGENET1K_V1.url
    filename = url.rsplit("/", 1)[1]
    assert f"{name} needs torchvision's ImageNet weights and they could not be downloaded" in message
    assert filename in message and url in message and str(tmp_path / "hub" / "checkpoints") in message
    assert not list(tmp_path.rglob("*.pth"))     # nothing half-written left in the cache


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_torchvision_backbone_loads_from_the_hub_cache(name, tmp_path, monkeypatch, no_network):
    """A checkpoint under the exact name torchvision expects is what the registry loads (no download)."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = getattr(torchvision.models, WEIGHTS[name]).IMAGENET1K_V1.url
    torch.manual_seed(7)
    saved = getattr(torchvision.models, name)(weights=None).state_dict()
    ckpt = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(saved, ckpt)
    model = build_backbone(name)
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert not model.training
    assert "downloaded" in get_spec(name).weights


def test_pretrained_weights_are_loaded_not_random():
    import torch

    a, b = build_backbone("efficientnet_lite0"), build_backbone("efficientnet_lite0")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    random = build_backbone("efficientnet_lite0", pretrained=False)
    assert not torch.equal(a.conv_stem.weight, random.conv_stem.weight)


@pytest.mark.slow
def test_linear_probe_across_batches_proves_real_imagenet_features(corpus_root, ground_truth, home):
    """~300 photos of batch_01 train a logistic regression, ~300 of batch_02 test it (>= 75%)."""
    from sklearn.linear_model import LogisticRegression

    train, test = pick_photos(ground_truth, "batch_01", 300), pick_photos(ground_truth, "batch_02", 300, seed=1)
    labels = dict(train + test)
    e_train = embed(corpus_root, [p for p, _ in train], progress=False)
    e_test = embed(corpus_root, [p for p, _ in test], progress=False)
    clf = LogisticRegression(max_iter=3000, C=1.0).fit(e_train.vectors, [labels[p] for p in e_train.paths])
    acc = float(np.mean(clf.predict(e_test.vectors) == np.array([labels[p] for p in e_test.paths])))
    print(f"linear probe batch_01 -> batch_02: {acc:.3f} on {len(e_test.paths)} photos")
    assert acc >= 0.75


def test_embeddings_are_cached_and_only_changed_photos_recomputed(tmp_path, corpus_root, monkeypatch):
    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache"))
    root = tmp_path / "corpus"
    src = sorted((corpus_root / "batch_01").rglob("*.jpg"))[:3]
    paths = []
    for i, f in enumerate(src):
        dst = root / "batch_01" / "listing_x" / f"photo_{i}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
        paths.append(dst.relative_to(root).as_posix())
    (root / "batch_01" / "listing_x" / "broken.jpg").write_bytes(b"")
    paths.append("batch_01/listing_x/broken.jpg")

    first = embed(root, paths, progress=False)
    assert first.computed == 4 and len(first.paths) == 3 and first.errors == {paths[3]: "empty file"}
    assert np.allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    second = embed(root, paths, progress=False)
    assert second.computed == 0 and np.array_equal(first.vectors, second.vectors)
    assert second.errors == first.errors

    os.utime(root / paths[1], ns=(1, 1))           # a changed file is recomputed, nothing else
    third = embed(root, paths, progress=False)
    assert third.computed == 1 and np.allclose(third.vectors, first.vectors, atol=1e-5)
    raw = embed(root, paths, normalize=False, progress=False)
    assert raw.computed == 0 and np.linalg.norm(raw.vectors[0]) > 1.5


def test_embeddings_cached_at_another_input_size_are_not_reused(tmp_path, corpus_root, monkeypatch):
    """The embeddings' input size (the registry's ``weights_size``) of a backbone can change: vectors cached at
    the old size must not come back as if they were computed at the new one; the training size plays no part."""
    from dataclasses import replace

    from roomclf.models import backbones

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache"))
    paths = [p.relative_to(corpus_root).as_posix() for p in sorted((corpus_root / "batch_01").rglob("*.jpg"))[:2]]
    at_224 = embed(corpus_root, paths, progress=False)
    spec = backbones.BACKBONES["efficientnet_lite0"]
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", replace(spec, train_size=160))
    assert embed(corpus_root, paths, progress=False).computed == 0     # another training size: same vectors
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", replace(spec, weights_size=160))
    at_160 = embed(corpus_root, paths, progress=False)
    assert at_224.computed == 2 and at_160.computed == 2
    assert not np.allclose(at_224.vectors, at_160.vectors, atol=1e-3)
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", spec)
    assert embed(corpus_root, paths, progress=False).computed == 0      # each size keeps its own cache


def test_embedding_matches_roomnet_features(corpus_root, home):
    import torch

    from roomclf.models.network import RoomNet
    from roomclf.photos import model_input

    paths = [p.relative_to(corpus_root).as_posix() for p in sorted((corpus_root / "batch_01").rglob("*.jpg"))[:4]]
    raw = embed(corpus_root, paths, normalize=False, progress=False)
    net = RoomNet("efficientnet_lite0").eval()
    x = torch.from_numpy(np.stack([model_input(corpus_root / p, 224) for p in paths]))
    with torch.no_grad():
        feats = net.features((x - 0.5) / 0.5).numpy()
    assert np.allclose(feats, raw.vectors, atol=1e-4)


def _batch_paths(corpus_root, batch: str, n: int) -> list[str]:
    return [p.relative_to(corpus_root).as_posix() for p in sorted((corpus_root / batch).rglob("*.jpg"))[:n]]


def test_onnxruntime_embeddings_agree_with_torch(corpus_root, home):
    """The onnxruntime graph gives torch eager's vectors (cosine >= 0.999 per photo) and, through the head
    read back from the graph, torch's ImageNet logits for the cached raw vectors."""
    import torch

    from roomclf.models.backbones import normalizer, split_backbone
    from roomclf.models.embeddings import Embedder
    from roomclf.photos import model_input

    paths = _batch_paths(corpus_root, "batch_02", 12)
    raw = embed(corpus_root, paths, normalize=False, progress=False)
    body, pool, head = split_backbone("efficientnet_lite0", build_backbone("efficientnet_lite0"))
    x = torch.from_numpy(np.stack([model_input(corpus_root / p, 224) for p in raw.paths]))
    with torch.no_grad():
        feats = pool(body(normalizer(get_spec("efficientnet_lite0"))(x)))
        logits = head(feats).numpy()
    feats = feats.numpy()
    cos = np.sum(feats * raw.vectors, axis=1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(raw.vectors, axis=1))
    assert len(raw.paths) == 12 and cos.min() >= 0.999
    ours = Embedder("efficientnet_lite0").imagenet_logits(raw.vectors)
    assert np.allclose(ours, logits, atol=1e-3)
    assert (ours.argmax(1) == logits.argmax(1)).all()


def test_embedding_runs_a_batch_per_roomclf_cpu_and_keeps_the_order(tmp_path, corpus_root, monkeypatch):
    """The one cores setting (settings.cpus: $ROOMCLF_CPUS) sizes how many batches run at once through the
    embedder's one-thread session; the vectors come back in input order, the same as one batch at a time."""
    import threading
    import time

    from roomclf.models.embeddings import Embedder

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache"))
    paths = [p.relative_to(corpus_root).as_posix() for p in sorted((corpus_root / "batch_02").rglob("*.jpg"))[:24]]

    class Watched(Embedder):
        """The real embedder, noting how many of its runs overlap."""
        def __init__(self):
            super().__init__("efficientnet_lite0")
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def __call__(self, batch):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.2)              # long enough that the batches started together overlap
            try:
                return super().__call__(batch)
            finally:
                with self.lock:
                    self.now -= 1

    assert Embedder("efficientnet_lite0").session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("ROOMCLF_CPUS", "3")
    watched = Watched()
    three = embed(corpus_root, paths, batch_size=4, progress=False, embedder=watched)
    assert watched.most == 3 and three.paths == paths
    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache1"))
    monkeypatch.setenv("ROOMCLF_CPUS", "1")
    watched = Watched()
    one = embed(corpus_root, paths, batch_size=4, progress=False, embedder=watched)
    assert watched.most == 1 and np.allclose(one.vectors, three.vectors, atol=1e-5)


def test_int8_and_fp32_vectors_never_share_a_cache(tmp_path, corpus_root, monkeypatch):
    """int8 vectors are computed and cached apart from fp32 ones: neither is ever returned for the other."""
    from roomclf.models.embeddings import Embedder

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache"))
    paths = _batch_paths(corpus_root, "batch_03", 10)
    fp32 = embed(corpus_root, paths, progress=False)
    int8 = embed(corpus_root, paths, precision="int8", progress=False)
    assert fp32.computed == 10 and int8.computed == 10           # nothing of fp32's was reused for int8
    assert not np.array_equal(fp32.vectors, int8.vectors)
    assert np.sum(fp32.vectors * int8.vectors, axis=1).min() >= 0.99     # the agreement it was kept for
    assert embed(corpus_root, paths, precision="int8", progress=False).computed == 0
    again = embed(corpus_root, paths, progress=False)
    assert again.computed == 0 and np.array_equal(again.vectors, fp32.vectors)
    assert Embedder("efficientnet_lite0", "int8").path.name == f"efficientnet_lite0-224px-int8{_vnni()}.onnx"
    caches = sorted(p.name for p in (tmp_path / "cache").glob("*.sqlite"))
    assert caches == ["efficientnet_lite0-224px-fp32.sqlite", "efficientnet_lite0-224px-int8.sqlite"]


def _vnni() -> str:
    from roomclf.models.quantize import cpu_has_vnni

    return "-vnni" if cpu_has_vnni() else ""


def test_the_int8_embedder_is_quantised_for_the_cpu_it_runs_on(tmp_path, corpus_root, monkeypatch):
    """Full-range int8 weights where the CPU has VNNI, reduced range elsewhere: two files, never one for both."""
    from roomclf.models import embeddings, quantize

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embeddings, "INT8_MIN_COSINE", -1.0)      # this test is about which file, not agreement
    paths = _batch_paths(corpus_root, "batch_03", 8)
    made = {}
    for vnni in (True, False):
        monkeypatch.setattr(quantize, "cpu_has_vnni", lambda vnni=vnni: vnni)
        made[vnni] = embeddings.embedder_file(precision="int8", root=corpus_root, calibration=paths)
    assert (made[True].name, made[False].name) == ("efficientnet_lite0-224px-int8-vnni.onnx",
                                                  "efficientnet_lite0-224px-int8.onnx")
    assert made[True].read_bytes() != made[False].read_bytes()        # 8-bit against 7-bit weights


def test_int8_embedder_that_disagrees_with_fp32_is_refused(tmp_path, corpus_root, monkeypatch):
    from roomclf.models import embeddings

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embeddings, "INT8_MIN_COSINE", 1.01)      # no int8 copy can be this close
    monkeypatch.setattr(embeddings, "INT8_CALIBRATION_PHOTOS", 4)
    paths = _batch_paths(corpus_root, "batch_03", 6)
    # calibrated on 4 of the 6 photos, judged on the other 2
    with pytest.raises(embeddings.EmbeddingError, match="disagrees with fp32 .* on 2 photos it was not calibrated on"):
        embeddings.embed(corpus_root, paths, precision="int8", progress=False)
    assert not list((tmp_path / "cache" / "onnx").glob("*int8*"))      # nothing half-made is kept
    with pytest.raises(embeddings.EmbeddingError, match="unknown embedding precision"):
        embeddings.embed(corpus_root, paths, precision="fp16", progress=False)


@pytest.mark.slow
def test_ray_engine_embeds_many_batches_as_the_local_one_does(tmp_path, corpus_root, monkeypatch):
    """`roomclf embed --engine ray`: onnxruntime actors reading their own photos on a real local Ray fill the same
    cache with the same vectors and errors as the local engine; a rerun computes nothing."""
    from click.testing import CliRunner

    from roomclf.cli import main
    from roomclf.corpus import discover

    root = tmp_path / "corpus"
    for batch in ("batch_18", "batch_19"):
        for i, f in enumerate(sorted((corpus_root / batch).rglob("*.jpg"))[:12]):
            dst = root / batch / f"listing_{i % 3}" / f"photo_{i}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
    (root / "batch_19" / "listing_0" / "broken.jpg").write_bytes(b"not a photo at all")
    paths = discover(root, "batch_18,batch_19").paths

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "ray-cache"))
    args = ["embed", "--data", str(root), "--batches", "batch_18,batch_19", "--engine", "ray"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "24 embeddings (25 computed" in first.output and "1 unreadable" in first.output
    on_ray = embed(root, paths, progress=False)
    assert on_ray.computed == 0                           # the Ray run filled this cache
    again = CliRunner().invoke(main, args)
    assert "(0 computed" in again.output

    monkeypatch.setenv("ROOMCLF_EMBEDDING_DIR", str(tmp_path / "local-cache"))
    local = embed(root, paths, progress=False)
    assert local.computed == 25 and on_ray.paths == local.paths and on_ray.errors == local.errors
    assert np.min(np.sum(on_ray.vectors * local.vectors, axis=1)) > 0.9999
