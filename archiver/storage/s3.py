"""The S3 backend (AWS or any S3-compatible endpoint): boto3 calls, and botocore errors turned into StorageError.

Credentials come only from boto3's own chain (environment, profile, role) and never appear in a message.
One client is shared by every thread (boto3 clients are thread-safe; sessions are not, so ours is private).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import boto3
import botocore.exceptions as bex
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

from archiver.config import StorageConfig
from archiver.errors import StorageError
from archiver.redaction import redact
from archiver.storage import Stored, file_sha256
from archiver.storage.keys import check_key, public_url

log = logging.getLogger(__name__)
MiB = 1024 * 1024
MAX_METADATA_VALUE = 1024
MAX_METADATA_TOTAL = 2000  # S3 allows 2 KB of user metadata (names + values) in all

_CREDENTIALS_HINT = {
    "SignatureDoesNotMatch": "wrong credentials: the secret key does not match the access key (SignatureDoesNotMatch)",
    "InvalidAccessKeyId": "wrong credentials: the access key id is unknown (InvalidAccessKeyId)",
    "AccessDenied": "access denied: the credentials lack permission for this bucket (AccessDenied)",
    "InvalidToken": "wrong credentials: the session token is invalid (InvalidToken)",
    "ExpiredToken": "wrong credentials: the session token has expired (ExpiredToken)",
}


_TRANSIENT_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed", "Throttling"}
)


def _ascii(value: str, limit: int = MAX_METADATA_VALUE) -> str:
    """Percent-encode non-ASCII and control characters (S3 user metadata must be printable ASCII); whole
    characters only, at most ``limit`` characters."""
    out: list[str] = []
    size = 0
    for c in value:
        piece = c if " " <= c <= "~" else quote(c, safe="")
        size += len(piece)
        if size > limit:
            break
        out.append(piece)
    return "".join(out)


def s3_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """User metadata S3 accepts: lowercase ``[a-z0-9-]`` names, printable-ASCII values cut to 1 KB each and
    2 KB in all; URLs are redacted (archiver.redaction)."""
    out: dict[str, str] = {}
    budget = MAX_METADATA_TOTAL
    for name, value in metadata.items():
        key = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
        if not key or len(key) >= budget:
            continue
        text = value.strip()
        if text.startswith(("http://", "https://", "//")):
            text = redact(text)
        out[key] = _ascii(text, min(MAX_METADATA_VALUE, budget - len(key)))
        budget -= len(key) + len(out[key])
    return out


def _b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _full_sha256(head: Mapping[str, Any]) -> str | None:
    """The hex SHA-256 of the whole object from a HEAD's ``ChecksumSHA256``; None for none or a composite one."""
    value = head.get("ChecksumSHA256")
    if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def _display(endpoint_url: str) -> str:
    return redact(endpoint_url) if endpoint_url else "AWS S3"


class S3Store:
    """One bucket (and key prefix) on AWS S3 or an S3-compatible endpoint."""

    def __init__(
        self,
        cfg: StorageConfig,
        *,
        multipart_threshold: int = 5 * 1024 * MiB,  # S3's limit for one PUT: anything smaller gets a full checksum
        max_attempts: int = 3,  # short: the pipeline waits out longer outages itself ([storage] retry_for)
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.where = _display(cfg.endpoint_url)
        self._session = boto3.session.Session()
        self._client = self._make_client(max_attempts, connect_timeout, read_timeout)
        self._timeouts = (connect_timeout, read_timeout)
        self._conditional = True  # until the server refuses If-None-Match on a PUT
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(5 * MiB, min(multipart_threshold, 512 * MiB)),
            max_concurrency=4,
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self.where!r})"

    def _make_client(self, max_attempts: int, connect_timeout: float, read_timeout: float) -> Any:
        custom = bool(self.cfg.endpoint_url)
        options: dict[str, Any] = {}
        if custom:
            # Many S3-compatible servers reject botocore's newer default CRC checksum headers; put() sends the
            # SHA-256 it knows (and Content-MD5 for bytes), which the server checks and keeps.
            options = {
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        config = BotoConfig(
            region_name=self.cfg.region or None,
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, self.cfg.concurrency * 4),  # each multipart upload uses up to 4
            s3={"addressing_style": "path" if custom else "auto"},
            **options,
        )
        try:
            return self._session.client("s3", endpoint_url=self.cfg.endpoint_url or None, config=config)
        except (bex.BotoCoreError, ValueError) as exc:
            raise StorageError(f"S3 endpoint {self.where}: cannot configure a client: {exc}") from exc

    # -- errors -------------------------------------------------------------------------------------

    def _raise(self, exc: Exception, what: str) -> NoReturn:
        """One clear StorageError for a botocore/boto3 failure; never includes credentials."""
        prefix = f"S3 {what} (bucket {self.bucket!r} at {self.where})"
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _CREDENTIALS_HINT:
                reason = _CREDENTIALS_HINT[code]
            elif code in ("403", "Forbidden"):
                reason = "access denied / wrong credentials (SignatureDoesNotMatch, InvalidAccessKeyId or AccessDenied)"
            elif code in ("NoSuchBucket",) or (code in ("404", "NotFound") and what == "check"):
                reason = f"bucket {self.bucket!r} does not exist"
            elif code in (
                "301",
                "PermanentRedirect",
                "AuthorizationHeaderMalformed",
                "IllegalLocationConstraintException",
            ):
                reason = f"the bucket is in another region than {self.cfg.region!r} ({code})"
            else:
                message = str(err.get("Message", "")).strip()
                reason = f"{code or 'error'} (HTTP {status})" + (f": {message}" if message else "")
            transient = (isinstance(status, int) and status >= 500) or code in _TRANSIENT_CODES
            raise StorageError(f"{prefix}: {reason}", transient=transient) from exc
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            raise StorageError(
                f"{prefix}: no usable S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from exc
        if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ProxyConnectionError):
            raise StorageError(f"{prefix}: cannot reach endpoint {self.where}", transient=True) from exc
        if isinstance(exc, bex.ReadTimeoutError | bex.ConnectionClosedError | bex.ConnectionError):
            raise StorageError(
                f"{prefix}: the connection to {self.where} failed: {type(exc).__name__}", transient=True
            ) from exc
        if isinstance(exc, S3UploadFailedError):
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, bex.BotoCoreError | bex.ClientError):
                self._raise(cause, what)
            raise StorageError(f"{prefix}: upload failed: {exc}") from exc
        raise StorageError(f"{prefix}: {type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (bex.BotoCoreError, bex.ClientError, S3UploadFailedError) as exc:
            self._raise(exc, what)
        except OSError as exc:  # reading the local file for upload_file
            raise StorageError(f"S3 {what}: {exc.strerror or exc}") from exc

    # -- the Store interface ------------------------------------------------------------------------

    def check(self, write: bool = True) -> None:
        """At start-up: the endpoint answers, the credentials are right and the bucket exists."""
        # A start-up probe fails within seconds instead of retrying a dead endpoint for a minute.
        probe = self._make_client(2, min(self._timeouts[0], 5.0), min(self._timeouts[1], 15.0))
        with self._errors("check"):
            try:
                probe.head_bucket(Bucket=self.bucket)
            except bex.ClientError as exc:
                # HEAD responses have no body, so a 403 does not say why: ask again with a GET.
                if exc.response.get("Error", {}).get("Code") in ("403", "Forbidden"):
                    probe.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                raise

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def stat(self, key: str) -> Stored | None:
        """One HEAD asking for the object's checksum (``x-amz-checksum-mode: ENABLED``): its full-object SHA-256
        when it was uploaded with one (a composite multipart checksum says nothing about the whole: None)."""
        check_key(key)
        with self._errors(f"HEAD {key}"):
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except bex.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return Stored(int(head.get("ContentLength", -1)), _full_sha256(head), head.get("ContentType"))

    def put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str],
            sha256: str | None = None) -> None:
        """One PUT with ``x-amz-checksum-sha256`` (the server checks the bytes against it and keeps it, so a later
        HEAD proves the content); a file above the multipart threshold (5 GiB by default: S3's limit for one PUT)
        goes in parts, with a composite checksum that proves the parts, not the whole."""
        self._put(key, data, content_type, metadata, sha256, {})

    def put_if_absent(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str],
                      sha256: str | None = None) -> bool | None:
        """One PUT that creates ``key`` only where nothing is stored yet (``If-None-Match: *``): True when it did;
        False when an object is already there (HTTP 412, or 409 while another upload of it is under way), nothing
        written; None when the server does not implement conditional writes (501, or a 400 naming the condition:
        then never asked again, prove and put instead; any other error is raised as it is)
        or the file is one for a multipart upload. A server that ignores the header overwrites: with keys that name
        their content, the same bytes."""
        if not self._conditional or (isinstance(data, Path) and data.stat().st_size > self._transfer.multipart_threshold):
            return None
        try:
            self._put(key, data, content_type, metadata, sha256, {"IfNoneMatch": "*"})
        except StorageError as exc:  # an answer of the server's (a ClientError's response), or none (unreachable)
            response = getattr(exc.__cause__, "response", None)
            response = response if isinstance(response, dict) else {}
            code = str((response.get("Error") or {}).get("Code", ""))
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            message = str((response.get("Error") or {}).get("Message", "")).lower()
            if code == "NotImplemented" or status == 501 or (
                    code in ("InvalidArgument", "InvalidRequest") and ("match" in message or "condition" in message)):
                log.info("S3 endpoint %s: no conditional PUT (%s); checking each object before its upload instead",
                         self.where, code or status)
                self._conditional = False
                return None
            raise
        return True

    def _put(self, key: str, data: bytes | Path, content_type: str, metadata: Mapping[str, str],
             sha256: str | None, condition: dict[str, str]) -> None:
        check_key(key)
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": s3_metadata(metadata), **condition}
        if self.cfg.cache_control:
            extra["CacheControl"] = self.cfg.cache_control
        with self._errors(f"PUT {key}"):
            if isinstance(data, Path):
                size = data.stat().st_size
                if size > self._transfer.multipart_threshold:
                    extra["ChecksumAlgorithm"] = "SHA256"
                    self._client.upload_file(str(data), self.bucket, key, ExtraArgs=extra, Config=self._transfer)
                    return
                checksum = _b64(sha256 or file_sha256(data))
                with data.open("rb") as body:
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentLength=size,
                                            ChecksumSHA256=checksum, **extra)
            else:
                md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
                checksum = _b64(sha256 or hashlib.sha256(data).hexdigest())
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5,
                                        ChecksumSHA256=checksum, **extra)

    def get(self, key: str) -> bytes:
        check_key(key)
        with self._errors(f"GET {key}"):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def copy(self, source: str, key: str) -> None:
        """CopyObject on the server (no bytes through this machine), with the type, metadata and Cache-Control of
        the source, and a SHA-256 checksum the server computes and keeps (what ``prove`` reads)."""
        check_key(source)
        check_key(key)
        with self._errors(f"COPY {source} to {key}"):
            self._client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": source},
                                     MetadataDirective="COPY", ChecksumAlgorithm="SHA256")

    def delete(self, keys: Sequence[str]) -> None:
        """DeleteObjects, 1 000 keys a request (S3's limit); a key with no object counts as deleted (S3 says so
        too). A key the server refuses to delete is a StorageError naming it."""
        keys = [check_key(k) for k in keys]
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            with self._errors(f"DELETE {len(chunk)} objects"):
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            errors = [e for e in answer.get("Errors", []) if e.get("Code") not in ("NoSuchKey",)]
            if errors:
                first = errors[0]
                raise StorageError(f"S3 DELETE {first.get('Key')}: {first.get('Code')}: {first.get('Message')} "
                                   f"({len(errors)} of {len(chunk)} objects not deleted)")

    def url_for(self, key: str) -> str:
        return public_url(self.cfg.public_base_url, key)

    def local_path(self, key: str) -> Path | None:
        return None

    def local_root(self) -> Path | None:
        return None

    def close(self) -> None:
        self._client.close()
