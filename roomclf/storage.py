"""The one filesystem layer: a corpus root or an output root is a local folder or an ``s3://bucket/prefix`` URI.

Every function takes a *location*: a local path (``str`` or ``os.PathLike``) or an ``s3://`` URI string. Local
locations go through ``pathlib``/``os`` exactly as before this module existed (nothing is added on that path but
one string test); ``s3://`` ones through ``pyarrow.fs.S3FileSystem`` (the filesystem Ray Data and Parquet use).

The S3 endpoint and region come from the standard variables (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` or
MLflow's ``MLFLOW_S3_ENDPOINT_URL``; ``AWS_REGION`` or ``AWS_DEFAULT_REGION``). Credentials are left to the AWS
SDK's own chain (``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role): roomclf never
logs, stores nor passes them on (they enter a cache key only as a digest), and refuses a URI that carries them.
Configuration problems (missing or rejected credentials, a bucket that does not exist, an endpoint that does not
answer) raise a ``StorageError`` naming the bucket and what to set; a single object that cannot be read is an
``OSError`` (``FileNotFoundError`` when it is missing), like a local file.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from roomclf.errors import RoomclfError

S3 = "s3://"
# MLflow's own variable last: a machine set up for MLflow's S3 artifacts reaches the same endpoint
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
KEY_VARS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Where the AWS SDK finds credentials besides the key variables (checked only to word a refusal).
_OTHER_CREDENTIAL_VARS = ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_SHARED_CREDENTIALS_FILE")


class StorageError(RoomclfError):
    """Object storage cannot be used as configured (one line: the bucket and what to set)."""


class CredentialsError(StorageError):
    """Credentials missing, or refused by the endpoint."""


class BucketNotFound(StorageError):
    """The bucket of a URI does not exist at the endpoint."""


class TooLarge(RoomclfError, OSError):
    """A file bigger than the reader accepts (``size`` in bytes), refused before it is read."""

    def __init__(self, size: int):
        super().__init__(f"file too large ({size} bytes)")
        self.size = size


# --------------------------------------------------------------------------- locations


def is_uri(location) -> bool:
    """True for an object-store URI (``s3://...``), False for a local path."""
    return isinstance(location, str) and "://" in location


def resolve(location) -> Path | str:
    """A location in its one canonical form: an absolute local ``Path``, or ``s3://bucket/prefix`` (no trailing
    slash). A URI with another scheme, credentials, a query or no bucket is refused in one line."""
    if not is_uri(location):
        return Path(location).expanduser().resolve()
    return _canonical_uri(location)


def _canonical_uri(uri: str) -> str:
    if not uri.startswith(S3):
        raise StorageError(f"{uri.split('://', 1)[0]}:// is not supported: give a local folder or s3://bucket/prefix")
    if "@" in uri:      # s3://KEY:SECRET@bucket/...: the secret may hold '/', so the URI is never echoed
        raise CredentialsError(f"credentials do not belong in an s3:// URI: set {KEY_VARS} instead")
    bucket, _, path = uri[len(S3):].partition("/")
    if not _BUCKET_NAME.fullmatch(bucket):
        raise StorageError("an s3:// URI must start with a bucket name (3 to 63 lowercase letters, digits, dots "
                           "and hyphens): s3://bucket/prefix")
    if "?" in path or "#" in path:
        raise StorageError(f"{S3}{bucket}: a query or fragment in an s3:// URI is not supported")
    prefix = "/".join(p for p in path.split("/") if p)
    return f"{S3}{bucket}/{prefix}" if prefix else f"{S3}{bucket}"


def join(root, *parts: str) -> Path | str:
    """``root/part/...``: a ``Path`` for a local root, a URI for an object-store one."""
    if not is_uri(root):
        return Path(root, *parts)
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def parent(location) -> Path | str | None:
    """The folder holding ``location``: a ``Path`` for a local one, a URI for an object-store one (None for a
    bucket itself, which lies in no folder)."""
    if not is_uri(location):
        return Path(location).parent
    head = _canonical_uri(location).rpartition("/")[0]
    return head if head.startswith(S3) and len(head) > len(S3) else None


def as_uri(location) -> str:
    """The location as a URI (``file://...`` for a local path), e.g. for an MLflow dataset source."""
    return location if is_uri(location) else Path(location).resolve().as_uri()


def _bucket_key(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "bucket/a/b"): the bucket, and the path pyarrow's S3 filesystem takes."""
    path = _canonical_uri(uri)[len(S3):]
    return path.split("/", 1)[0], path


# --------------------------------------------------------------------------- the S3 filesystem

_FILESYSTEMS: dict[tuple, object] = {}


def endpoint() -> str | None:
    """The S3 endpoint the variables name (the first set of ``ENDPOINT_VARS``), or None (AWS)."""
    return next((os.environ[v].strip() for v in ENDPOINT_VARS if os.environ.get(v, "").strip()), None)


def _endpoint_name() -> str:
    url = endpoint()
    if not url:
        return "AWS S3"
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _s3_filesystem():
    """pyarrow's S3 filesystem for the current variables; one per endpoint, region and credential set
    (the credentials enter only as a digest, so a changed key gets a new filesystem)."""
    import pyarrow.fs as pafs

    url = endpoint()
    region = next((os.environ[v] for v in REGION_VARS if os.environ.get(v)), None)
    creds = hashlib.sha256("\0".join(os.environ.get(v, "") for v in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")).encode()).hexdigest()
    key = (url, region, creds)
    fs = _FILESYSTEMS.get(key)
    if fs is None:
        options = {"region": region}
        if url:
            parts = urlsplit(url if "://" in url else f"https://{url}")
            options.update(endpoint_override=parts.netloc.rsplit("@", 1)[-1], scheme=parts.scheme or "https")
        fs = _FILESYSTEMS[key] = pafs.S3FileSystem(**options)
    return fs


def filesystem(location) -> tuple[object, str]:
    """(pyarrow filesystem, path in it) of a location, for pyarrow and Ray Data readers and writers."""
    if not is_uri(location):
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(Path(location).resolve())
    return _s3_filesystem(), _bucket_key(location)[1]


def _has_credentials() -> bool:
    if os.environ.get("AWS_ACCESS_KEY_ID") or any(os.environ.get(v) for v in _OTHER_CREDENTIAL_VARS):
        return True
    return (Path.home() / ".aws" / "credentials").is_file()


def _no_bucket(bucket: str) -> str:
    return (f"{S3}{bucket}: no such bucket at {_endpoint_name()} (check the bucket name, or {ENDPOINT_VARS[1]} "
            "for another endpoint)")


def _storage_error(exc: OSError, bucket: str) -> StorageError | None:
    """The one-line error for an S3 failure that is a configuration problem, else None."""
    text = str(exc)
    where = f"{S3}{bucket}"
    if "NO_SUCH_BUCKET" in text:
        return BucketNotFound(_no_bucket(bucket))
    if "INVALID_ACCESS_KEY_ID" in text or "INVALID_CLIENT_TOKEN_ID" in text:
        return CredentialsError(f"{where}: the access key is not known to {_endpoint_name()}: set AWS_ACCESS_KEY_ID "
                                "(and AWS_SECRET_ACCESS_KEY) to a key of that endpoint")
    if "SIGNATURE_DOES_NOT_MATCH" in text:
        return CredentialsError(f"{where}: the secret key does not match the access key: set AWS_SECRET_ACCESS_KEY "
                                "to the secret of AWS_ACCESS_KEY_ID")
    if "EXPIRED_TOKEN" in text:
        return CredentialsError(f"{where}: the session token has expired: renew AWS_SESSION_TOKEN "
                                f"(or set {KEY_VARS})")
    credential_like = "ACCESS_DENIED" in text or "MISSING_AUTHENTICATION" in text or "INTERNAL_FAILURE" in text
    if credential_like and not _has_credentials():
        return CredentialsError(f"{where}: no S3 credentials found: set {KEY_VARS} (or AWS_PROFILE)")
    if "ACCESS_DENIED" in text:
        return CredentialsError(f"{where}: access denied with the credentials given: set {KEY_VARS} to a key "
                                "allowed to use this bucket")
    if "NETWORK_CONNECTION" in text or "curlCode" in text:
        return StorageError(f"{where}: cannot reach the S3 endpoint {_endpoint_name()} (set {ENDPOINT_VARS[1]} "
                            f"or {ENDPOINT_VARS[0]})")
    return None


@contextmanager
def _s3_call(bucket: str, strict: bool = True):
    """Turn pyarrow's S3 errors into ``StorageError`` lines. A missing object stays ``FileNotFoundError``;
    any other failure too is a ``StorageError`` when ``strict``, else it stays the ``OSError`` it was
    (a photo that cannot be read is the photo's problem, not the run's)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        error = _storage_error(exc, bucket)
        if error is not None:
            raise error from None
        if strict:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StorageError(f"{S3}{bucket}: {first[:300]}") from None
        raise


# --------------------------------------------------------------------------- listing


def list_dirs(root) -> list[str] | None:
    """The names of the folders directly under ``root``, sorted; None when ``root`` is not a folder
    (on S3: when nothing lies under the prefix)."""
    if not is_uri(root):
        root = Path(root)
        if not root.is_dir():
            return None
        return sorted(d.name for d in root.iterdir() if d.is_dir())
    import pyarrow.fs as pafs

    bucket, path = _bucket_key(root)
    with _s3_call(bucket):
        infos = _s3_filesystem().get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    if not infos:
        _check_bucket(bucket)
        return None
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def walk_files(root) -> list[str]:
    """Every file under ``root``, as paths relative to it with forward slashes, in ``os.walk`` order
    (a folder's own files by name, then its subfolders by name). Empty when ``root`` does not exist."""
    if not is_uri(root):
        root = Path(root)
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root)
            found += [(rel_dir / name).as_posix() for name in sorted(filenames)]
        return found
    import pyarrow.fs as pafs

    bucket, path = _bucket_key(root)
    with _s3_call(bucket):
        infos = _s3_filesystem().get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    rels = [i.path[len(path) + 1:] for i in infos if i.type == pafs.FileType.File and not i.path.endswith("/")]
    return sorted(rels, key=_walk_order)


def _walk_order(rel: str) -> list[tuple[int, str]]:
    """Sort key giving ``os.walk`` order: at each level, files (0) before folders (1), each by name."""
    *dirs, name = rel.split("/")
    return [(1, d) for d in dirs] + [(0, name)]


def list_files(folder) -> list[str]:
    """The names of the files directly in ``folder``, sorted; empty when it does not exist."""
    if not is_uri(folder):
        folder = Path(folder)
        return sorted(f.name for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []
    import pyarrow.fs as pafs

    bucket, path = _bucket_key(folder)
    with _s3_call(bucket):
        infos = _s3_filesystem().get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and not i.path.endswith("/"))


def is_file(path) -> bool:
    if not is_uri(path):
        return Path(path).is_file()
    import pyarrow.fs as pafs

    bucket, key = _bucket_key(path)
    with _s3_call(bucket):
        return _s3_filesystem().get_file_info(key).type == pafs.FileType.File


def cache_key(path) -> tuple[int, int]:
    """What says a photo changed, for caches keyed by photo: (size in bytes, modification time in ns).
    ``FileNotFoundError`` when it does not exist. On S3 the time comes from a listing of the object's folder
    (a single object's metadata, as pyarrow reads it, has none), as in ``cache_keys``."""
    if not is_uri(path):
        st = Path(path).stat()
        return st.st_size, st.st_mtime_ns
    parent, _, name = _canonical_uri(path).rpartition("/")
    found = _listed_keys(parent, False).get(name)
    if found is None:
        raise FileNotFoundError(f"no such object: {path}")
    return found


def cache_keys(root, rels: list[str]) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """``cache_key`` of many files given relative to ``root``: ({rel: key} of those that exist, {rel: why not}
    of the others). Locally one ``stat`` a file, as before; on S3 one listing per top folder they lie in
    (a batch), not one request per photo."""
    if not is_uri(root):
        root = Path(root)
        keys, missing = {}, {}
        for rel in rels:
            try:
                st = (root / rel).stat()
            except OSError as exc:
                missing[rel] = exc.strerror or str(exc)
                continue
            keys[rel] = (st.st_size, st.st_mtime_ns)
        return keys, missing
    keys = {}
    for folder, group in _by_top_folder(rels).items():
        listed = _listed_keys(join(root, folder) if folder else root, recursive=bool(folder))
        for rel in group:
            key = listed.get(rel[len(folder) + 1:] if folder else rel)
            if key is not None:
                keys[rel] = key
    return keys, {rel: "No such file or directory" for rel in rels if rel not in keys}


def files_present(root, rels: list[str]) -> set[str]:
    """Which of ``rels`` (relative to ``root``) are files (``file_checker``)."""
    is_there = file_checker(root)
    return {rel for rel in rels if is_there(rel)}


def file_checker(root):
    """A test ``is_there(rel)``: is ``root/rel`` a file? For many calls: locally ``is_file`` each time; on S3
    each top folder (a batch) is listed once, on its first use, rather than one request a file."""
    if not is_uri(root):
        root = Path(root)
        return lambda rel: (root / rel).is_file()
    listed: dict[str, set[str]] = {}

    def is_there(rel: str) -> bool:
        top, sep, rest = rel.partition("/")
        folder = top if sep else ""
        if folder not in listed:
            listed[folder] = set(_listed_keys(join(root, folder) if folder else root, recursive=bool(folder)))
        return (rest if sep else rel) in listed[folder]

    return is_there


def _by_top_folder(rels: list[str]) -> dict[str, list[str]]:
    """rels grouped by their first folder ("" for files directly under the root)."""
    groups: dict[str, list[str]] = {}
    for rel in rels:
        top, sep, _ = rel.partition("/")
        groups.setdefault(top if sep else "", []).append(rel)
    return groups


def _listed_keys(folder: str, recursive: bool) -> dict[str, tuple[int, int]]:
    """{path relative to ``folder``: (size, mtime in ns)} of the objects an S3 listing of it gives."""
    import pyarrow.fs as pafs

    bucket, path = _bucket_key(folder)
    with _s3_call(bucket):
        infos = _s3_filesystem().get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    return {i.path[len(path) + 1:]: (i.size, i.mtime_ns or 0) for i in infos
            if i.type == pafs.FileType.File and not i.path.endswith("/")}


# --------------------------------------------------------------------------- reading and writing


def read_bytes(path, max_bytes: int | None = None) -> bytes:
    """The bytes of a file. ``TooLarge`` (before reading) when it is bigger than ``max_bytes``; an ``OSError``
    when it cannot be read; ``StorageError`` when object storage is not usable as configured."""
    if not is_uri(path):
        path = path if isinstance(path, Path) else Path(path)
        if max_bytes is not None:
            size = path.stat().st_size
            if size > max_bytes:
                raise TooLarge(size)
        return path.read_bytes()
    bucket, key = _bucket_key(path)
    with _s3_call(bucket, strict=False):
        with _s3_filesystem().open_input_file(key) as f:
            size = f.size()
            if max_bytes is not None and size > max_bytes:
                raise TooLarge(size)
            return f.read()


def open_text(path):
    """A text file opened for reading as ``open(path, newline="")`` opens it (what ``csv`` readers take): a local
    file streamed as before, an object read whole through ``read_bytes`` and decoded as UTF-8."""
    if not is_uri(path):
        return open(path, newline="")
    return io.StringIO(read_bytes(path).decode("utf-8"), newline="")


def write_bytes(path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never part of it: locally a temporary file
    beside it, synced, then renamed over it; on S3 one object, visible only once complete."""
    if not is_uri(path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return
    bucket, key = _bucket_key(path)
    with _s3_call(bucket):
        with _s3_filesystem().open_output_stream(key) as out:
            out.write(data)


def remove(path) -> None:
    """Delete a file; nothing happens when there is none."""
    if not is_uri(path):
        Path(path).unlink(missing_ok=True)
        return
    bucket, key = _bucket_key(path)
    try:
        with _s3_call(bucket):
            _s3_filesystem().delete_file(key)
    except FileNotFoundError:
        pass


def _check_bucket(bucket: str) -> None:
    """``BucketNotFound`` unless the bucket exists (a listing under a missing bucket just finds nothing)."""
    import pyarrow.fs as pafs

    with _s3_call(bucket):
        found = _s3_filesystem().get_file_info(bucket).type != pafs.FileType.NotFound
    if not found:
        raise BucketNotFound(_no_bucket(bucket))


def ensure_folder(root) -> None:
    """Make ``root`` ready to write into: create a local folder; for S3, check that the bucket exists and the
    credentials are accepted (``StorageError`` otherwise), so a run fails before its work, not after."""
    if not is_uri(root):
        Path(root).mkdir(parents=True, exist_ok=True)
        return
    import pyarrow.fs as pafs

    bucket, path = _bucket_key(root)
    with _s3_call(bucket):
        _s3_filesystem().get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    _check_bucket(bucket)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
