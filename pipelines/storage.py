"""One place that turns a URI into a pyarrow filesystem, for every step.

Accepted URIs: a local path, ``file:///abs/path``, ``s3://bucket/prefix`` (AWS, MinIO, Ceph, GCS's S3 interop …),
and anything else ``pyarrow.fs.FileSystem.from_uri`` knows (``gs://``, ``hdfs://``).

S3 endpoint and credentials come from the standard environment — ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``~/.aws``, or instance credentials — and
are never put into the filesystem object (so they never travel inside Ray task payloads, nor reach a log). Every
process, Ray workers included, resolves URIs itself. A URI may still carry its own keys as user-info
(``s3://KEY:SECRET@bucket/prefix``, percent-encoded, as pyarrow takes them): they are used for that URI only, and
:func:`redact` strips them from every message, param, tag, manifest and summary. Transient S3 errors are retried with exponential backoff
(the AWS SDK's standard strategy); a failure is re-raised as :class:`StorageError` naming the endpoint and URI.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass
from urllib.parse import unquote, urlparse, urlunparse

import pyarrow.fs as pafs

from pipelines.errors import StorageError

S3_RETRY_ATTEMPTS = 6  # AWS standard strategy: exponential backoff with jitter between attempts
S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 60.0


def s3_endpoint() -> str | None:
    """The S3 endpoint from the environment (``AWS_ENDPOINT_URL_S3`` wins over ``AWS_ENDPOINT_URL``)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None, keys: tuple[str, str] | None = None) -> pafs.S3FileSystem:
    kwargs: dict = {
        "region": region,
        "connect_timeout": S3_CONNECT_TIMEOUT_S,
        "request_timeout": S3_REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=S3_RETRY_ATTEMPTS),
    }
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    if keys:  # the URI's own user-info
        kwargs.update(access_key=keys[0], secret_key=keys[1])
    return pafs.S3FileSystem(**kwargs)  # no keys: the AWS SDK's default credential chain


def _split_userinfo(netloc: str) -> tuple[tuple[str, str] | None, str]:
    """``(keys, bucket)`` of an S3 URI's netloc: ``KEY:SECRET@bucket`` → ``((KEY, SECRET), bucket)``."""
    if "@" not in netloc:
        return None, netloc
    userinfo, bucket = netloc.rsplit("@", 1)
    key, _, secret = userinfo.partition(":")
    return (unquote(key), unquote(secret)), bucket


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a URI; the path has no scheme (``bucket/key`` for S3, absolute for local)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # 1 letter: a Windows drive
        path = parsed.path if parsed.scheme == "file" else uri
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    if parsed.scheme in ("s3", "s3a") and not parsed.query:
        keys, bucket = _split_userinfo(parsed.netloc)
        if not bucket:
            raise StorageError(f"{redact_uri(uri)!r} names no bucket: expected s3://bucket/prefix")
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        return _s3(s3_endpoint(), region, keys), f"{bucket}{parsed.path}".rstrip("/")
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise StorageError(f"cannot resolve storage URI {redact_uri(uri)!r}: {redact(str(err))}") from None
    return fs, path.rstrip("/")


def absolute(uri: str) -> str:
    """``uri`` with a local path made absolute (so it stays valid from another working directory)."""
    fs, path = resolve(uri)
    return path if isinstance(fs, pafs.LocalFileSystem) else uri


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_QUERY_KEYS = ("key", "secret", "token", "password", "credential", "signature", "sig", "auth")


def _secret_key(name: str) -> bool:
    """A query parameter whose value is a credential (``secret_key``, ``X-Amz-Signature``, ``token`` …)."""
    return any(word in name.lower() for word in _SECRET_QUERY_KEYS)


def redact_uri(uri: str) -> str:
    """``uri`` without credentials: user-info (``s3://KEY:SECRET@bucket``, ``http://user:pw@host``) becomes
    ``***@`` and the values of secret-looking query parameters (``secret_key=…``, ``X-Amz-Signature=…``) ``***``."""
    try:
        parsed = urlparse(uri)
    except ValueError:
        return uri
    netloc, query = parsed.netloc, parsed.query
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    if query:
        parts = []
        for item in query.split("&"):
            k, sep, v = item.partition("=")
            secret = sep and _secret_key(k)
            parts.append(f"{k}=***" if secret else item)
        query = "&".join(parts)
    if (netloc, query) == (parsed.netloc, parsed.query):  # nothing to hide: as given (urlunparse would turn
        return uri                                        # sqlite:////abs/path into sqlite://abs/path)
    return urlunparse(parsed._replace(netloc=netloc, query=query))


def strip_credentials(uri: str) -> str:
    """``uri`` without credentials and still usable (with the environment's keys): user-info and secret-looking
    query parameters dropped. For references that are read back, e.g. a version's ``eval.dataset`` tag; a redacted
    ``s3://***@bucket/x`` becomes ``s3://bucket/x``."""
    try:
        parsed = urlparse(uri)
    except ValueError:
        return redact(uri)
    if not parsed.scheme or len(parsed.scheme) == 1:
        return uri
    query = "&".join(item for item in parsed.query.split("&") if item and not (
        "=" in item and _secret_key(item.partition("=")[0])))
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    if (netloc, query) == (parsed.netloc, parsed.query):  # nothing to drop: as given (see redact_uri)
        return uri
    return urlunparse(parsed._replace(netloc=netloc, query=query))


def redact(text: str) -> str:
    """``text`` with every URI in it redacted (:func:`redact_uri`): for params, tags, manifests, summaries and
    error messages."""
    return _URI.sub(lambda m: redact_uri(m.group(0)), text)


def redact_values(value):
    """``value`` (a JSON-like tree of dicts, lists and strings) with every string :func:`redact`-ed: for a resolved
    config or a step's result before it is written to a manifest, marker or summary."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value


def describe(uri: str) -> str:
    """``uri`` (credentials redacted) plus the endpoint it resolves to, for messages."""
    if urlparse(uri).scheme in ("s3", "s3a"):
        return f"{redact_uri(uri)} (endpoint {redact_uri(s3_endpoint() or 'AWS default')})"
    return redact_uri(uri)


@contextlib.contextmanager
def errors(action: str, uri: str):
    """Re-raise pyarrow/OS errors of one storage action as a :class:`StorageError` a user can act on."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as err:
        text = redact(str(err).splitlines()[0]) if str(err) else type(err).__name__
        if "curlCode" in text or "NETWORK_CONNECTION" in text or "Couldn't connect" in text:
            raise StorageError(
                f"cannot reach object storage while trying to {action} {describe(uri)}: {text}. "
                "Is the endpoint up, and is AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) right?"
            ) from None
        if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
            raise StorageError(f"bucket of {describe(uri)} does not exist ({action})") from None
        if "ACCESS_DENIED" in text or "AccessDenied" in text or "InvalidAccessKeyId" in text:
            raise StorageError(
                f"access denied while trying to {action} {describe(uri)}: check the AWS_* credentials"
            ) from None
        raise StorageError(f"failed to {action} {describe(uri)}: {text}") from None


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended to its path (a URI's query, e.g. ``?endpoint_override=…``, stays last)."""
    if "://" not in uri:
        return os.path.join(uri, *parts)
    base, sep, query = uri.partition("?")
    return posixpath.join(base.rstrip("/"), *parts) + sep + query


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with errors("read", uri), fs.open_input_stream(path) as f:
        return f.read()


def read_json(uri: str):
    """The JSON document at ``uri``; None when it does not exist — or does not parse (a file truncated by a crash
    before writes were atomic, or by a full disk: treated as absent, so the step that writes it runs again)."""
    import json
    import logging

    try:
        data = read_bytes(uri)
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        logging.getLogger(__name__).warning("%s does not parse (%s): treated as absent", describe(uri), err)
        return None


def _local_temp(path: str, data: bytes) -> str:
    """``data`` in a fsynced temporary file beside ``path`` (same folder: a rename is atomic); its path."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically: readers see the old file or the new one, never a part. Locally: write to a
    temporary file beside it, fsync, rename. Object storage: one PUT (S3 never exposes a partial object)."""
    fs, path = resolve(uri)
    with errors("write", uri):
        if isinstance(fs, pafs.LocalFileSystem):
            os.replace(_local_temp(path, data), path)
            return
        with fs.open_output_stream(path) as f:
            f.write(data)


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create ``uri`` with ``data`` only if it does not exist yet, atomically (a lease or lock object).
    True: created; False: it already existed. Locally: a hard link of a complete temporary file (fails if the name
    exists). S3: a conditional PUT (``If-None-Match: *``; the server answers 412 when the key exists)."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        with errors("create", uri):
            tmp = _local_temp(path, data)
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a") or parsed.query:
        raise StorageError(f"exclusive create is supported on local folders and s3:// URIs, not {describe(uri)}")
    keys, bucket = _split_userinfo(parsed.netloc)
    return _s3_put_if_absent(bucket, parsed.path.lstrip("/"), data, uri, keys)


def _s3_put_if_absent(bucket: str, key: str, data: bytes, uri: str, keys: tuple[str, str] | None) -> bool:
    import boto3  # pyarrow's S3 filesystem has no conditional writes
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    creds = {"aws_access_key_id": keys[0], "aws_secret_access_key": keys[1]} if keys else {}
    client = boto3.client("s3", endpoint_url=s3_endpoint(), **creds, config=Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_REQUEST_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": S3_RETRY_ATTEMPTS}))
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        return True
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise StorageError(f"failed to create {describe(uri)}: {redact(str(err))}") from None
    except BotoCoreError as err:
        raise StorageError(f"cannot reach object storage while trying to create {describe(uri)}: "
                           f"{redact(str(err))}") from None


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    with errors("look up", uri):
        return fs.get_file_info(path).type != pafs.FileType.NotFound


def delete(uri: str) -> None:
    """Delete one file; a missing file is fine."""
    fs, path = resolve(uri)
    with errors("delete", uri), contextlib.suppress(FileNotFoundError):
        fs.delete_file(path)


def delete_tree(uri: str) -> None:
    """Delete a folder (a prefix, on object storage) and everything under it; a missing folder is fine."""
    fs, path = resolve(uri)
    with errors("delete", uri), contextlib.suppress(FileNotFoundError):
        fs.delete_dir(path)


@dataclass(frozen=True)
class FileEntry:
    relpath: str  # '/'-separated, relative to the listed root
    size: int
    mtime_ns: int


def list_files(uri: str) -> list[FileEntry]:
    """Every file under ``uri`` (recursive), sorted by relative path; an empty list when it does not exist."""
    fs, root = resolve(uri)
    with errors("list", uri):
        if fs.get_file_info(root).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    out = []
    prefix = root.replace(os.sep, "/").rstrip("/") + "/"
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        # by prefix, not posixpath.relpath: that resolves relative (S3 "bucket/key") paths against the process's
        # working directory, which a Ray job's may no longer have
        path = info.path.replace(os.sep, "/")
        rel = path[len(prefix):] if path.startswith(prefix) else posixpath.relpath(path, prefix)
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        out.append(FileEntry(rel, int(info.size or 0), int(mtime)))
    return sorted(out, key=lambda e: e.relpath)


def list_dirs(uri: str) -> list[str]:
    """Names of the folders directly under ``uri`` (prefixes, on object storage), sorted; [] when it does not exist."""
    fs, root = resolve(uri)
    with errors("list", uri):
        if fs.get_file_info(root).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos if i.type == pafs.FileType.Directory)


def check_reachable(uri: str) -> None:
    """Fail early, with the endpoint named, when the storage behind ``uri`` cannot be reached."""
    fs, path = resolve(uri)
    bucket_root = path.split("/", 1)[0] if not isinstance(fs, pafs.LocalFileSystem) else None
    with errors("reach", uri):
        if bucket_root is not None and fs.get_file_info(bucket_root).type == pafs.FileType.NotFound:
            raise StorageError(f"bucket '{bucket_root}' of {describe(uri)} does not exist")
