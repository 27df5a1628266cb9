"""Darkroom station client: submit images, wait for jobs, download results.

Standard library only (Python >= 3.9). Mirrors the TypeScript SDK (packages/client):

    from darkroom import Client
    dr = Client("http://127.0.0.1:8080", "station-key")
    job = dr.submit("edit", image="photo.jpg", params={"operations": [{"op": "resize", "width": 512}]})
    done = dr.wait(job["id"], timeout=120)
    dr.download(job["id"], "out.webp")

Every submit carries an Idempotency-Key (a fresh UUID per call, the same on each of its
retries), so the retries of network errors, 429, 502, 503 and 504 never create a second job.
"""

import base64
import binascii
import email.utils
import hashlib
import http.client
import hmac
import json
import mimetypes
import os
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

__all__ = [
    "Client",
    "DarkroomError",
    "DarkroomNetworkError",
    "DarkroomTimeoutError",
    "DownloadResult",
    "FINAL_STATUSES",
    "backoff_delay",
    "parse_retry_after",
    "sign_webhook",
    "standard_webhook_key",
    "verify_standard_webhook",
    "verify_webhook_signature",
]

__version__ = "0.1.0"

FINAL_STATUSES = frozenset(["completed", "failed", "cancelled"])
RETRY_STATUSES = frozenset([429, 502, 503, 504])
MAX_IDS_PER_REQUEST = 100


# --- errors -------------------------------------------------------------------------------


class DarkroomError(Exception):
    """An error answer from the API, with the fields of its problem+json body.

    ``code`` is the problem's stable machine-readable code (``http_<status>`` when the body was
    not a problem, e.g. a proxy's page); ``errors`` lists ``{"path", "message"}`` per field;
    ``retry_after`` is the answer's Retry-After in seconds; ``request_id`` its X-Request-Id.
    """

    def __init__(self, status, code, detail, title=None, type=None, errors=None, retry_after=None,
                 request_id=None, request="", attempt=1):
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code
        self.type = type
        self.errors = list(errors or [])
        self.retry_after = retry_after
        self.request_id = request_id
        self.request = request
        self.attempt = attempt
        fields = "; ".join("%s: %s" % (e["path"], e["message"]) for e in self.errors)
        super().__init__("%s %s: %s%s" % (status, code, detail, " (%s)" % fields if fields else ""))

    @classmethod
    def from_response(cls, status, headers, body, request="", attempt=1, reason=""):
        problem = None
        if "json" in (headers.get("content-type") or "").lower():
            try:
                parsed = json.loads(body.decode("utf-8"))
                if isinstance(parsed, dict):
                    problem = parsed
            except ValueError:
                pass  # not JSON after all: described from the status alone
        problem = problem or {}

        def text(key):
            value = problem.get(key)
            return value if isinstance(value, str) else None

        errors = []
        if isinstance(problem.get("errors"), list):
            for e in problem["errors"]:
                if isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("message"), str):
                    item = {"path": e["path"], "message": e["message"]}
                    if isinstance(e.get("code"), str):
                        item["code"] = e["code"]  # why an imageUrl fetch failed
                    errors.append(item)
        fallback = reason or body[:200].decode("utf-8", "replace").strip() or "HTTP %d" % status
        return cls(
            status=status,
            code=text("code") or "http_%d" % status,
            detail=text("detail") or fallback,
            title=text("title"),
            type=text("type"),
            errors=errors,
            retry_after=parse_retry_after(headers.get("retry-after")),
            request_id=headers.get("x-request-id"),
            request=request,
            attempt=attempt,
        )


class DarkroomNetworkError(Exception):
    """No usable answer: connection refused or reset, DNS, a timeout, a body cut off."""

    def __init__(self, request, cause, attempts=1):
        self.request = request
        self.cause = cause
        self.attempts = attempts
        self.reason = getattr(cause, "reason", None) or str(cause) or type(cause).__name__
        suffix = " (after %d attempts)" % attempts if attempts > 1 else ""
        super().__init__("%s failed: %s%s" % (request, self.reason, suffix))


class DarkroomTimeoutError(Exception):
    """``wait`` ran past its timeout. The job itself goes on; ``last`` is the last state seen."""

    def __init__(self, job_id, timeout, last):
        self.job_id = job_id
        self.timeout = timeout
        self.last = last
        seen = " (last seen %s)" % last["status"] if last else ""
        super().__init__("job %s was not final after %s s%s" % (job_id, timeout, seen))


# --- retry policy -------------------------------------------------------------------------


def backoff_delay(retry, base_delay=0.25, max_delay=10.0, rand=random.random):
    """Seconds before retry number ``retry`` (0 = the first): full jitter over the capped exponential."""
    return rand() * min(max_delay, base_delay * 2 ** min(retry, 30))


def parse_retry_after(value, now=None):
    """Retry-After (delay-seconds or an HTTP-date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- webhooks -----------------------------------------------------------------------------


def _to_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _hmac_hex(secret, t, body):
    return hmac.new(_to_bytes(secret), b"%d." % t + _to_bytes(body), hashlib.sha256).hexdigest()


def sign_webhook(secret, body, t=None):
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, as the server signs deliveries."""
    t = int(time.time()) if t is None else int(t)
    return "t=%d,v1=%s" % (t, _hmac_hex(secret, t, body))


def verify_webhook_signature(secret, header, body, tolerance=300, now=None):
    """Checks a ``Darkroom-Signature`` header against the raw body (bytes or str).

    Any ``v1`` may match (compared in constant time), and ``t`` must be within ``tolerance``
    seconds of ``now`` (default the clock) in either direction.
    """
    if not isinstance(header, str) or len(header) > 4096:
        return False
    t = None
    candidates = []
    for part in header.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            if t is not None or not re.fullmatch(r"\d{1,15}", value):
                return False
            t = int(value)
        elif key == "v1" and re.fullmatch(r"[0-9a-fA-F]{64}", value):
            candidates.append(value.lower())
    if t is None or not candidates:
        return False
    now = int(time.time()) if now is None else now
    if abs(now - t) > tolerance:
        return False
    expected = _hmac_hex(secret, t, body)
    match = False
    for candidate in candidates:
        # Every candidate is compared, so the time taken does not depend on which one matched.
        if hmac.compare_digest(expected, candidate):
            match = True
    return match


def standard_webhook_key(secret):
    """The Standard Webhooks HMAC key for a station secret.

    A secret of the spec's own form, ``whsec_<base64>``, is base64-decoded; any other secret is
    keyed by its UTF-8 bytes (a Standard Webhooks library is given ``whsec_`` + base64 of them).
    """
    if secret.startswith("whsec_"):
        encoded = secret[len("whsec_"):]
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if decoded and base64.b64encode(decoded).decode("ascii") == encoded:
            return decoded
    return secret.encode("utf-8")


def verify_standard_webhook(secret, headers, body, tolerance=300, now=None):
    """Checks a delivery's Standard Webhooks headers against the raw body (bytes or str).

    ``headers`` is any mapping (names in any case): ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` (space-separated ``v1,<base64 HMAC-SHA256 of "<id>.<t>.<body>">``; any
    may match). The timestamp must be within ``tolerance`` seconds of ``now``.
    """
    lower = {str(k).lower(): v for k, v in dict(headers).items()}
    msg_id = lower.get("webhook-id")
    ts = lower.get("webhook-timestamp")
    sig = lower.get("webhook-signature")
    if not isinstance(msg_id, str) or not isinstance(ts, str) or not isinstance(sig, str):
        return False
    if len(sig) > 4096 or not re.fullmatch(r"\d{1,15}", ts):
        return False
    t = int(ts)
    now = int(time.time()) if now is None else now
    if abs(now - t) > tolerance:
        return False
    signed = msg_id.encode("utf-8") + b"." + ts.encode("ascii") + b"." + _to_bytes(body)
    expected = hmac.new(standard_webhook_key(secret), signed, hashlib.sha256).digest()
    match = False
    for part in sig.split(" "):
        version, comma, value = part.partition(",")
        if not comma or version != "v1" or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", value):
            continue
        # Every candidate is compared, so the time taken does not depend on which one matched.
        if hmac.compare_digest(expected, base64.b64decode(value)):
            match = True
    return match


# --- transport ----------------------------------------------------------------------------


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but never sends the station's key to another origin (a presigned URL)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old, nxt = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(new.full_url)
            if (old.scheme, old.netloc) != (nxt.scheme, nxt.netloc):
                new.remove_header("Authorization")
                new.unredirected_hdrs.pop("Authorization", None)
        return new


class _Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def _multipart(fields, image_name, image_bytes):
    boundary = "darkroom-" + uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n" % (boundary, name)).encode("utf-8"))
        out.append(value.encode("utf-8") + b"\r\n")
    ctype = mimetypes.guess_type(image_name)[0] or "application/octet-stream"
    safe = image_name.replace('"', "_").replace("\r", "_").replace("\n", "_")
    out.append((
        "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"%s\"\r\nContent-Type: %s\r\n\r\n"
        % (boundary, safe, ctype)
    ).encode("utf-8"))
    out.append(image_bytes + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode("ascii"))
    return b"".join(out), "multipart/form-data; boundary=" + boundary


class DownloadResult:
    """What ``download`` did: ``not_modified`` when the file already held the result."""

    def __init__(self, not_modified, path, bytes, content_type, etag, sha256):
        self.not_modified = not_modified
        self.path = path
        self.bytes = bytes
        self.content_type = content_type
        self.etag = etag
        self.sha256 = sha256

    def __repr__(self):
        return "DownloadResult(not_modified=%r, path=%r, bytes=%r, sha256=%r)" % (
            self.not_modified, self.path, self.bytes, self.sha256)


def _job_path(job_id):
    return "/v1/jobs/" + urllib.parse.quote(job_id, safe="")


def _etag_sha(etag):
    m = re.fullmatch(r'(?:W/)?"([0-9a-f]{64})"', etag or "")
    return m.group(1) if m else None


class Client:
    """A station's view of Darkroom.

    ``base_url`` defaults to ``DARKROOM_URL`` (else ``http://127.0.0.1:8080``), ``key`` to
    ``DARKROOM_API_KEY``. Network errors and answers 429, 502, 503 and 504 are retried up to
    ``attempts`` in all, after exponential backoff with full jitter (``base_delay``, capped at
    ``max_delay`` seconds) or the answer's Retry-After; a Retry-After above ``max_retry_after``
    is not waited for. ``timeout`` is per attempt, in seconds. ``on_retry(request, attempt,
    delay, error)`` is told about each retry before its delay.
    """

    def __init__(self, base_url=None, key=None, attempts=5, base_delay=0.25, max_delay=10.0,
                 max_retry_after=60.0, timeout=30.0, on_retry=None, user_agent=None):
        self.base_url = (base_url or os.environ.get("DARKROOM_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.key = key if key is not None else os.environ.get("DARKROOM_API_KEY")
        self.attempts = max(1, int(attempts))
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self.on_retry = on_retry
        self.user_agent = user_agent or "darkroom-client-python/%s python/%d.%d" % (
            __version__, sys.version_info[0], sys.version_info[1])
        self._opener = urllib.request.build_opener(_Redirects())

    # -- one exchange, with retries --

    def _request(self, method, path, query=None, headers=None, body=None, accept=(), retry=True,
                 retry_conflict=False, extra_timeout=0.0):
        url = self.base_url + path
        if query:
            query = {k: v for k, v in query.items() if v is not None}
            if query:
                url += "?" + urllib.parse.urlencode(query)
        target = urllib.parse.urlsplit(url)
        request = "%s %s%s" % (method, target.path, "?" + target.query if target.query else "")
        sent = {"Accept": "application/json", "User-Agent": self.user_agent}
        sent.update(headers or {})
        if self.key:
            sent["Authorization"] = "Bearer " + self.key
        attempts = self.attempts if retry else 1
        timeout = self.timeout + extra_timeout if self.timeout else None
        attempt = 0
        while True:
            attempt += 1
            req = urllib.request.Request(url, data=body, method=method, headers=sent)
            try:
                try:
                    with self._opener.open(req, timeout=timeout) as res:
                        answer = _Answer(res.status, {k.lower(): v for k, v in res.headers.items()}, res.read())
                except urllib.error.HTTPError as err:
                    try:
                        content = err.read() if err.fp is not None else b""
                    finally:
                        err.close()
                    answer = _Answer(err.code, {k.lower(): v for k, v in (err.headers or {}).items()}, content)
            except (OSError, http.client.HTTPException) as err:
                failure = DarkroomNetworkError(request, err, attempt)
                if attempt >= attempts:
                    raise failure
                delay = backoff_delay(attempt - 1, self.base_delay, self.max_delay)
            else:
                if 200 <= answer.status < 300 or answer.status in accept:
                    return answer
                error = DarkroomError.from_response(answer.status, answer.headers, answer.body, request, attempt)
                retryable = answer.status in RETRY_STATUSES or (
                    retry_conflict and answer.status == 409 and error.retry_after is not None)
                if not retryable or attempt >= attempts:
                    raise error
                if error.retry_after is not None and error.retry_after > self.max_retry_after:
                    raise error
                failure = error
                delay = error.retry_after if error.retry_after is not None else backoff_delay(
                    attempt - 1, self.base_delay, self.max_delay)
            if self.on_retry:
                self.on_retry(request, attempt, delay, failure)
            time.sleep(delay)

    def _json(self, method, path, **kw):
        return self._request(method, path, **kw).json()

    # -- what a station does --

    def submit(self, pipeline, image=None, params=None, priority=None, webhook_url=None,
               idempotency_key=None, wait=None, filename=None, image_url=None, webhook_events=None,
               timeout_seconds=None, ttl_seconds=None):
        """Submits a job; answers its status body (``deduplicated: True`` when the key found an earlier job).

        ``image`` is a file path or bytes (sent as multipart); without one the body is JSON.
        ``image_url`` instead has the server fetch the image (public http(s) addresses only).
        ``wait`` (0-60 s) lets the server hold the answer until the job is final.
        ``timeout_seconds`` and ``ttl_seconds`` set the job's own execution limit and queue
        time-to-live, at most the operator's.
        """
        key = idempotency_key or str(uuid.uuid4())
        optional = {"params": params, "priority": priority, "webhookUrl": webhook_url,
                    "webhookEvents": None if webhook_events is None else list(webhook_events),
                    "imageUrl": image_url, "timeoutSeconds": timeout_seconds, "ttlSeconds": ttl_seconds}
        fields = {"pipeline": pipeline}
        fields.update((k, v) for k, v in optional.items() if v is not None)
        headers = {"Idempotency-Key": key}
        if image is not None:
            if isinstance(image, (bytes, bytearray, memoryview)):
                data, name = bytes(image), filename or "image"
            else:
                path = os.fspath(image)
                with open(path, "rb") as f:
                    data = f.read()
                name = filename or os.path.basename(path)
            texts = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
            body, headers["Content-Type"] = _multipart(texts, name, data)
        else:
            body = json.dumps(fields).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return self._json("POST", "/v1/jobs", query={"wait": wait}, headers=headers, body=body,
                          retry_conflict=True, extra_timeout=float(wait or 0))

    def status(self, job_id):
        """A job's status body."""
        return self._json("GET", _job_path(job_id))

    def statuses(self, ids):
        """Status bodies of many jobs (asked 100 at a time); unknown ids are left out."""
        unique = list(dict.fromkeys(ids))
        out = []
        for i in range(0, len(unique), MAX_IDS_PER_REQUEST):
            chunk = unique[i:i + MAX_IDS_PER_REQUEST]
            out.extend(self._json("GET", "/v1/jobs", query={"ids": ",".join(chunk)})["jobs"])
        return out

    def jobs(self, status=None, pipeline=None, since=None, limit=None, cursor=None):
        """One page of the station's own jobs, newest first: ``{"jobs": [...], "nextCursor": ...}``.

        ``status`` is one status or a list of them; ``since`` an ISO 8601 time or a datetime.
        Pass ``nextCursor`` back as ``cursor`` for the next page; it is None after the last.
        """
        if isinstance(status, (list, tuple, set)):
            status = ",".join(status)
        if since is not None and hasattr(since, "isoformat"):
            since = since.isoformat()
        return self._json("GET", "/v1/jobs", query={
            "status": status, "pipeline": pipeline, "since": since, "limit": limit, "cursor": cursor})

    def iter_jobs(self, status=None, pipeline=None, since=None, page_size=100):
        """Every job of the station that matches, newest first, page after page."""
        cursor = None
        while True:
            page = self.jobs(status=status, pipeline=pipeline, since=since, limit=page_size, cursor=cursor)
            for job in page["jobs"]:
                yield job
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def retry(self, job_id):
        """Queues a failed or cancelled job again under a new id; answers the new job's status body.

        The new job has ``retryOf``, the old one then ``retriedBy``. A job that is queued,
        active or completed, or was retried already, is a DarkroomError 409.
        """
        return self._json("POST", _job_path(job_id) + "/retry")

    def wait(self, job_id, timeout=None, poll_interval=0.25, max_poll_interval=5.0, on_update=None):
        """Polls until the job is final (completed, failed or cancelled) and answers its status body.

        The interval starts at ``poll_interval`` and doubles up to ``max_poll_interval`` while
        nothing changes. Past ``timeout`` seconds: DarkroomTimeoutError (the job goes on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        last = None
        while True:
            job = self.status(job_id)
            if job != last:
                last = job
                interval = poll_interval
                if on_update:
                    on_update(job)
            else:
                interval = min(max(poll_interval, max_poll_interval), interval * 2)
            if job.get("status") in FINAL_STATUSES:
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DarkroomTimeoutError(job_id, timeout, last)
                time.sleep(min(interval, left))
            else:
                time.sleep(interval)

    def download(self, job_id, path, if_none_match=None):
        """Writes the result to ``path`` (whole or not at all); answers a DownloadResult.

        When ``path`` already exists its sha256 is sent as If-None-Match: a 304 leaves it
        alone (``not_modified``). The bytes received are checked against the ETag.
        """
        path = os.path.abspath(os.fspath(path))
        if if_none_match is None and os.path.isfile(path):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if_none_match = '"%s"' % h.hexdigest()
        headers = {"Accept": "*/*"}
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        request = "GET %s/result" % _job_path(job_id)
        for attempt in range(1, self.attempts + 1):
            answer = self._request("GET", _job_path(job_id) + "/result", headers=headers, accept=(304,))
            etag = answer.headers.get("etag")
            ctype = answer.headers.get("content-type")
            if answer.status == 304:
                return DownloadResult(True, path, 0, ctype, etag, _etag_sha(etag))
            sha = hashlib.sha256(answer.body).hexdigest()
            expected = _etag_sha(etag)
            if expected and expected != sha:
                failure = DarkroomNetworkError(request, "the bytes received do not match the ETag", attempt)
            else:
                directory = os.path.dirname(path)
                tmp = os.path.join(directory, ".%s.%s.part" % (os.path.basename(path), uuid.uuid4().hex))
                try:
                    with open(tmp, "wb") as f:
                        f.write(answer.body)
                    os.replace(tmp, path)
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                return DownloadResult(False, path, len(answer.body), ctype, etag, sha)
            if attempt >= self.attempts:
                raise failure
            time.sleep(backoff_delay(attempt - 1, self.base_delay, self.max_delay))
        raise AssertionError("unreachable")

    def result(self, job_id):
        """The result's bytes, in memory."""
        return self._request("GET", _job_path(job_id) + "/result", headers={"Accept": "*/*"}).body

    def cancel(self, job_id):
        """Cancels a job: ``status: cancelled`` when queued, ``cancelRequested: True`` when active.

        A job already final is a DarkroomError 409.
        """
        try:
            return self._json("DELETE", _job_path(job_id))
        except DarkroomError as err:
            # A retry after a lost answer finds the job already cancelled by the first attempt.
            if err.status == 409 and err.attempt > 1:
                job = self.status(job_id)
                if job.get("status") == "cancelled":
                    return job
            raise

    def queue(self):
        """Every pipeline's queue, its workers, and the limits."""
        return self._json("GET", "/v1/queue")

    def pipelines(self):
        """The pipelines, whether each takes an image, and the JSON Schema of its params."""
        return self._json("GET", "/v1/pipelines")
