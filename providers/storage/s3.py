"""S3 (or any S3-compatible store) through boto3, confined to one bucket and prefix.

boto3 is imported on first use and its blocking calls run on S3's own worker threads, never the
ones the rest of the process shares (``providers.storage.s3_calls``). Failures are translated
once, here, into the error tree; messages pass through ``core.redact`` so neither a signature nor
a key ever leaves this module.

``timeout_s`` is the whole budget of one operation, its retries included: botocore's retries and
timeouts multiplied (a hanging endpoint held a write 3-4 x ``timeout_s`` before the storage chain's
fallback took it). No retry starts past the deadline, and the caller is answered at the deadline;
an attempt still in flight then ends in its worker thread within its own socket timeout, the thread
held until then (a write it was sending may still land, beside the copy the fallback stored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio

from core.errors import (
    ConfigError,
    InputError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from core.redact import redact
from providers.base import StoredObject
from providers.storage.keys import check_key, check_prefix, guess_content_type, too_large
from providers.storage.s3_calls import THREADS, THROTTLED, Budget, OutOfTime, in_thread, watch

T = TypeVar("T")
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 refuses longer
#: requests per call: botocore's ``max_attempts`` counts the retries, not the first request
ATTEMPTS = 3
#: the longest a TCP connect may take (less where ``timeout_s`` is less): a host that drops packets
#: is said as such without spending the budget of the whole operation on one attempt
CONNECT_TIMEOUT_S = 5.0
PROVIDER = "s3"

_MISSING = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_UNSUPPORTED = {"NotImplemented", "501"}


def _redacted(text: str) -> str:
    return redact(text)


class S3Storage:
    """A ``StorageProvider`` on ``s3://bucket/prefix``.

    Args:
        bucket: bucket name (required).
        prefix: every key is stored under this prefix (``"swarm/"`` -> ``swarm/<key>``).
        endpoint_url: an S3-compatible endpoint (MinIO, R2, moto); ``None`` for AWS.
        region: signing region.
        presign_expiry_s: default lifetime of ``url()`` links.
        client: an already-built boto3 S3 client (tests); built lazily otherwise.
    """

    name = PROVIDER

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        presign_expiry_s: int = 3600,
        timeout_s: float = 30.0,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint_url = endpoint_url or None
        self.region = region or "us-east-1"
        self.presign_expiry_s = presign_expiry_s
        self.timeout_s = timeout_s
        self._client = watch(client) if client is not None else None
        self._client_lock = threading.Lock()
        self._if_none_match_works: bool | None = None

    @classmethod
    def from_config(
        cls, name: str, settings: Mapping[str, Any], *, client: Any = None, **_deps: object
    ) -> S3Storage:
        """Build from ``providers.storage.backends.<name>``.

        Keys: bucket, prefix, endpoint_url, region, presign_expiry_s, timeout_s. Credentials come
        from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profile, role).
        ``client`` is an already-built boto3 S3 client (tests); built on first use otherwise.
        """
        bucket = settings.get("bucket")
        if not bucket:
            raise ConfigError(
                "bucket is empty; set SWARM_S3_BUCKET (or write the bucket name) or choose storage 'local'",
                key=f"providers.storage.backends.{name}.bucket",
            )
        prefix = settings.get("prefix") or ""
        if prefix:
            check_prefix(prefix)
        return cls(
            bucket,
            prefix=prefix,
            endpoint_url=settings.get("endpoint_url"),
            region=settings.get("region"),
            presign_expiry_s=int(settings.get("presign_expiry_s", 3600)),
            timeout_s=float(settings.get("timeout_s", 30.0)),
            client=client,
        )

    # --- client and error translation ---------------------------------------------------------

    def client(self) -> Any:
        """The boto3 client, built once (thread-safe)."""
        with self._client_lock:
            if self._client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError:
                    raise ProviderUnavailable(
                        PROVIDER, "boto3 is not installed; run: pip install boto3"
                    ) from None
                self._client = watch(boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=Config(
                        signature_version="s3v4",
                        connect_timeout=min(self.timeout_s, CONNECT_TIMEOUT_S),
                        read_timeout=self.timeout_s,
                        retries={"max_attempts": ATTEMPTS - 1, "mode": "standard"},
                        max_pool_connections=THREADS,  # a connection kept for each of S3's threads
                        s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                    ),
                ))
            return self._client

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key or ''}"

    def _timed_out(self, key: str | None, budget: Budget) -> ProviderError:
        """The operation's budget is spent: said with its attempts, the time spent and the last answer
        (throttled to the end: rate-limited, as a throttled call that gave up within it)."""
        if budget.no_thread:
            return ProviderTimeout(PROVIDER, f"timed out on {self._where(key)}: not started within timeout_s"
                                   f" {self.timeout_s:g} s: {budget.no_thread}")
        if budget.throttled:
            return ProviderRateLimited(PROVIDER, f"throttled on {self._where(key)} ({budget.last}) until"
                                       f" timeout_s {self.timeout_s:g} s was spent ({budget.said()})")
        met = f"the last failure: {budget.last}" if budget.last else "no answer"
        return ProviderTimeout(PROVIDER, f"timed out on {self._where(key)}: not done within timeout_s"
                               f" {self.timeout_s:g} s ({budget.said()}; {met})")

    def _translate(self, exc: Exception, key: str | None, budget: Budget | None = None) -> Exception:
        from botocore import exceptions as bex

        what = self._where(key)
        budget = budget or Budget(self.timeout_s)
        tried = f" ({budget.said()})" if budget.attempts else ""
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            message = _redacted(str(err.get("Message") or code))
            codes = {code, status}
            if code == "NoSuchBucket":
                return ProviderUnavailable(
                    PROVIDER,
                    f"bucket {self.bucket!r} does not exist; set providers.storage.backends.s3.bucket to an existing"
                    " bucket (SWARM_S3_BUCKET), or create it",
                )
            if codes & _MISSING:
                return InputError(f"no object {key!r} in storage", field="key")
            if codes & _EXISTS:
                return InputError(f"{key!r} already exists and overwrite is off", field="key")
            if codes & _DENIED:
                return ProviderUnavailable(
                    PROVIDER, f"access denied to {what} ({code}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to"
                    " credentials the bucket's policy allows"
                )
            if codes & THROTTLED or status == "503":
                return ProviderRateLimited(PROVIDER, f"throttled on {what} ({code}){tried}")
            if status.startswith("5"):
                return ProviderUnavailable(PROVIDER, f"server error {status} on {what}: {message}{tried}")
            return ProviderError(PROVIDER, f"{code or status} on {what}: {message}")
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return ProviderUnavailable(
                PROVIDER, "no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if isinstance(exc, bex.ConnectTimeoutError | bex.ReadTimeoutError | OutOfTime):
            return self._timed_out(key, budget)
        if isinstance(exc, bex.EndpointConnectionError | bex.ConnectionError):
            return ProviderUnavailable(PROVIDER, f"cannot reach {self.endpoint_url or 'AWS S3'}{tried}")
        if isinstance(exc, bex.BotoCoreError):
            return ProviderError(PROVIDER, _redacted(f"{type(exc).__name__}: {exc}"))
        return exc

    async def _call(self, fn: Callable[..., T], *args: Any, key: str | None = None) -> T:
        """``fn(*args)`` on one of S3's worker threads, answered within ``timeout_s`` (see
        ``providers.storage.s3_calls``)."""
        budget = Budget(self.timeout_s)

        def body() -> T:
            try:
                return fn(*args)
            except (InputError, ProviderError):
                raise
            except Exception as exc:
                translated = self._translate(exc, key, budget)
                if translated is exc:
                    raise
                raise translated from None

        with anyio.move_on_after(self.timeout_s):
            return await in_thread(body, budget)
        raise self._timed_out(key, budget)

    # --- sync bodies --------------------------------------------------------------------------

    def _put_sync(self, key: str, data: bytes, content_type: str | None, overwrite: bool) -> None:
        client = self.client()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key), "Body": data}
        if content_type:
            args["ContentType"] = content_type
        if overwrite:
            client.put_object(**args)
            return
        if self._if_none_match_works is not False:
            from botocore.exceptions import ClientError

            try:
                client.put_object(**args, IfNoneMatch="*")
                self._if_none_match_works = True
                return
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in _UNSUPPORTED:
                    raise
                self._if_none_match_works = False
        # Store without conditional writes: check, then write (a narrow race remains).
        if self._exists_sync(key):
            raise InputError(f"{key!r} already exists and overwrite is off", field="key")
        client.put_object(**args)

    def _exists_sync(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in _MISSING:
                # a HEAD's 404 has no body to tell a missing object from a missing bucket: a
                # missing bucket read "no such object" (and the create-only path wrote anyway)
                self._check_bucket()
                return False
            raise

    def _check_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                exc.response.setdefault("Error", {})["Code"] = "NoSuchBucket"  # said as every other call says it
                raise
            # a policy without HeadBucket, a store that answers it otherwise: the object is missing, as before

    def _list_sync(self, prefix: str) -> list[StoredObject]:
        paginator = self.client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                found.append(
                    StoredObject(key=key, size=int(item["Size"]), content_type=guess_content_type(key),
                                 modified=item["LastModified"].timestamp() if item.get("LastModified") else None)
                )
        return sorted(found, key=lambda o: o.key)

    def _presign_sync(self, key: str, expires_s: int) -> str:
        return self.client().generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=max(1, min(int(expires_s), MAX_PRESIGN_S)),
        )

    # --- StorageProvider ----------------------------------------------------------------------

    async def put(
        self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True
    ) -> StoredObject:
        """Upload ``data``; ``overwrite=False`` is a conditional (create-only) write."""
        check_key(key)
        content_type = content_type or guess_content_type(key)
        await self._call(self._put_sync, key, bytes(data), content_type, overwrite, key=key)
        url = await self.url(key, self.presign_expiry_s)
        return StoredObject(key=key, size=len(data), content_type=content_type, url=url)

    async def get(self, key: str) -> bytes:
        full = self._full(key)

        def read() -> bytes:
            body = self.client().get_object(Bucket=self.bucket, Key=full)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return await self._call(read, key=key)

    async def get_at_most(self, key: str, max_bytes: int) -> bytes:
        """``get``, refusing an object over ``max_bytes`` from its ``Content-Length`` before its
        body is read."""
        full = self._full(key)

        def read() -> bytes:
            answer = self.client().get_object(Bucket=self.bucket, Key=full)
            body = answer["Body"]
            try:
                if int(answer.get("ContentLength") or 0) > max_bytes:
                    raise too_large(int(answer["ContentLength"]), max_bytes)
                data = body.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise too_large(len(data), max_bytes)
                return bytes(data)
            finally:
                body.close()

        return await self._call(read, key=key)

    async def exists(self, key: str) -> bool:
        check_key(key)
        return await self._call(self._exists_sync, key, key=key)

    async def delete(self, key: str) -> None:
        full = self._full(key)
        await self._call(lambda: self.client().delete_object(Bucket=self.bucket, Key=full), key=key)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        return await self._call(self._list_sync, check_prefix(prefix))

    async def url(self, key: str, expires_s: int | None = None) -> str:
        """A presigned GET URL valid for ``expires_s`` seconds (capped at 7 days)."""
        check_key(key)
        return await self._call(self._presign_sync, key, expires_s or self.presign_expiry_s, key=key)
