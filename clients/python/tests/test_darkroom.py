"""Tests of the Python station client.

The end-to-end cases run against a real api and worker when DARKROOM_URL and DARKROOM_API_KEY
are set (packages/client/test/python.test.ts starts them); the rest need nothing.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import darkroom  # noqa: E402
from darkroom import Client, DarkroomError, DarkroomTimeoutError  # noqa: E402
from darkroom.__main__ import parse_op  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "..", "..", "packages", "testing", "fixtures", "images")
URL = os.environ.get("DARKROOM_URL")
KEY = os.environ.get("DARKROOM_API_KEY")
LIMITED_KEY = os.environ.get("DARKROOM_TEST_LIMITED_KEY")
e2e = unittest.skipUnless(URL and KEY, "needs DARKROOM_URL and DARKROOM_API_KEY (a running api and worker)")


def fixture(name):
    return os.path.join(FIXTURES, name)


def image_size(data):
    """(format, width, height) from a PNG IHDR or a WebP VP8/VP8L/VP8X header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = struct.unpack("<I", data[21:25])[0]
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            height = int.from_bytes(data[27:30], "little") + 1
            return "webp", width, height
    raise AssertionError("neither PNG nor WebP: %r" % data[:16])


class WebhookSignatureTest(unittest.TestCase):
    SECRET = "whsec_test_secret"
    BODY = '{"id":"edit_8ntv3369rr6e6hh0y4efv87d","status":"completed"}'
    # Computed with the server's signer (HMAC-SHA256 of "1700000000.<body>").
    HEADER = "t=1700000000,v1=0027870ef90dc2c3e55bbfa93acf50f85f9febcd01c84ae37b41f8f427d539c1"

    def test_known_vector(self):
        self.assertTrue(darkroom.verify_webhook_signature(self.SECRET, self.HEADER, self.BODY, now=1700000100))
        self.assertTrue(darkroom.verify_webhook_signature(self.SECRET, self.HEADER, self.BODY.encode(), now=1700000000))
        self.assertEqual(darkroom.sign_webhook(self.SECRET, self.BODY, t=1700000000), self.HEADER)

    def test_standard_webhooks_vectors(self):
        # The Standard Webhooks spec's own example, and a plain station secret signed by the server's code.
        spec = {
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        }
        self.assertTrue(darkroom.verify_standard_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", spec, '{"test": 2432232314}', now=1614265330))
        plain = {
            "Webhook-Id": "wh_synthetic_abc",
            "Webhook-Timestamp": "1700000000",
            "Webhook-Signature": "v1,bogus v1,IsX3y/mkptLmy3lReedhG113z0PXk9dac8HcJeHDq08=",
        }
        self.assertTrue(darkroom.verify_standard_webhook("a-station-secret-0123", plain, b'{"id":"x"}', now=1700000200))
        self.assertFalse(darkroom.verify_standard_webhook("a-station-secret-0123", plain, b'{"id":"y"}', now=1700000200))
        self.assertFalse(darkroom.verify_standard_webhook("another-secret-0123", plain, b'{"id":"x"}', now=1700000200))
        self.assertFalse(darkroom.verify_standard_webhook("a-station-secret-0123", plain, b'{"id":"x"}', now=1700000400))
        self.assertFalse(darkroom.verify_standard_webhook("a-station-secret-0123", {}, b'{"id":"x"}', now=1700000000))

    def test_rejections(self):
        verify = darkroom.verify_webhook_signature
        self.assertFalse(verify("other", self.HEADER, self.BODY, now=1700000000))
        self.assertFalse(verify(self.SECRET, self.HEADER, self.BODY + " ", now=1700000000))
        self.assertFalse(verify(self.SECRET, self.HEADER, self.BODY, now=1700000301))  # too old
        self.assertFalse(verify(self.SECRET, self.HEADER, self.BODY, now=1699999699))  # from the future
        self.assertTrue(verify(self.SECRET, self.HEADER, self.BODY, tolerance=1000, now=1700000900))
        self.assertFalse(verify(self.SECRET, None, self.BODY))
        self.assertFalse(verify(self.SECRET, "v1=" + "0" * 64, self.BODY))
        self.assertFalse(verify(self.SECRET, "t=1700000000,t=1700000000," + self.HEADER.split(",")[1], self.BODY))
        # Any v1 may match (rotation): a wrong one next to the right one passes.
        both = "t=1700000000,v1=%s,%s" % ("ab" * 32, self.HEADER.split(",")[1])
        self.assertTrue(verify(self.SECRET, both, self.BODY, now=1700000000))


class HelpersTest(unittest.TestCase):
    def test_backoff_is_full_jitter_over_a_capped_exponential(self):
        self.assertEqual(darkroom.backoff_delay(0, 0.25, 10, rand=lambda: 1.0), 0.25)
        self.assertEqual(darkroom.backoff_delay(3, 0.25, 10, rand=lambda: 1.0), 2.0)
        self.assertEqual(darkroom.backoff_delay(20, 0.25, 10, rand=lambda: 1.0), 10)
        self.assertEqual(darkroom.backoff_delay(5, 0.25, 10, rand=lambda: 0.0), 0)

    def test_retry_after(self):
        self.assertEqual(darkroom.parse_retry_after("3"), 3.0)
        self.assertIsNone(darkroom.parse_retry_after(None))
        self.assertIsNone(darkroom.parse_retry_after("soon"))
        later = darkroom.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480)
        self.assertAlmostEqual(later, 10, delta=0.001)

    def test_cli_ops(self):
        self.assertEqual(parse_op("resize:width=512,fit=inside"), {"op": "resize", "width": 512, "fit": "inside"})
        self.assertEqual(parse_op("grayscale"), {"op": "grayscale"})
        self.assertEqual(parse_op("blur:sigma=1.5"), {"op": "blur", "sigma": 1.5})

    def test_network_errors_are_retried_then_raised(self):
        retries = []
        client = Client("http://127.0.0.1:9", "k", attempts=3, base_delay=0.01,
                        on_retry=lambda *a: retries.append(a))
        with self.assertRaises(darkroom.DarkroomNetworkError) as ctx:
            client.status("edit_8ntv3369rr6e6hh0y4efv87d")
        self.assertEqual(ctx.exception.attempts, 3)
        self.assertEqual([r[1] for r in retries], [1, 2])


@e2e
class EndToEndTest(unittest.TestCase):
    def setUp(self):
        self.client = Client(URL, KEY)
        self.dir = tempfile.mkdtemp(prefix="darkroom-py-")

    def edit(self, **kw):
        ops = [{"op": "resize", "width": 320}, {"op": "format", "type": "webp"}]
        return self.client.submit("edit", image=fixture("flowers.jpeg"), params={"operations": ops}, **kw)

    def test_submit_wait_download(self):
        job = self.edit(wait=30)
        self.assertEqual(job["status"], "completed", job)
        self.assertEqual(job["result"]["contentType"], "image/webp")
        out = os.path.join(self.dir, "out.webp")
        got = self.client.download(job["id"], out)
        self.assertFalse(got.not_modified)
        with open(out, "rb") as f:
            data = f.read()
        self.assertEqual(image_size(data), ("webp", 320, 180))
        self.assertEqual((got.bytes, got.sha256), (job["result"]["bytes"], job["result"]["sha256"]))
        # The file already holds the result: a 304 leaves it alone.
        again = self.client.download(job["id"], out)
        self.assertTrue(again.not_modified)
        self.assertEqual(self.client.result(job["id"]), data)

    def test_submit_bytes_then_poll(self):
        with open(fixture("with-alpha.png"), "rb") as f:
            png = f.read()
        ops = [{"op": "resize", "width": 128}, {"op": "format", "type": "png"}]
        job = self.client.submit("edit", image=png, filename="with-alpha.png", params={"operations": ops}, priority="high")
        self.assertIn(job["status"], ("queued", "active", "completed"))
        seen = []
        done = self.client.wait(job["id"], timeout=30, on_update=seen.append)
        self.assertEqual(done["status"], "completed", done)
        self.assertEqual(seen[-1], done)
        self.assertEqual((done["result"]["width"], done["result"]["height"]), (128, 96))
        self.assertEqual(image_size(self.client.result(job["id"])), ("png", 128, 96))

    def test_idempotency(self):
        key = str(uuid.uuid4())
        first = self.edit(idempotency_key=key)
        second = self.edit(idempotency_key=key)
        self.assertEqual(first["id"], second["id"])
        self.assertFalse(first.get("deduplicated", False))
        self.assertTrue(second["deduplicated"])
        self.assertNotEqual(self.edit()["id"], first["id"])  # a fresh key per call by default

    def test_problem_becomes_darkroom_error(self):
        with self.assertRaises(DarkroomError) as ctx:
            self.client.submit("edit", image=fixture("check.svg"), params={"operations": []})
        err = ctx.exception
        self.assertEqual((err.status, err.code), (415, "unsupported_media_type"), err)
        self.assertTrue(err.request_id)
        with self.assertRaises(DarkroomError) as ctx:
            self.client.submit("edit", image=fixture("flowers.jpeg"), params={"operations": [{"op": "resize"}]})
        err = ctx.exception
        self.assertEqual(err.status, 400)
        self.assertEqual(err.code, "invalid_request")
        self.assertIn("params.operations.0.width", [e["path"] for e in err.errors])
        with self.assertRaises(DarkroomError) as ctx:
            Client(URL, "not-a-key", attempts=1).status("edit_8ntv3369rr6e6hh0y4efv87d")
        self.assertEqual(ctx.exception.status, 401)

    def test_cancel(self):
        job = self.client.submit("synthetic", params={"steps": 50, "stepMs": 100})
        answer = self.client.cancel(job["id"])
        self.assertTrue(answer["status"] == "cancelled" or answer.get("cancelRequested"), answer)
        final = self.client.wait(job["id"], timeout=30)
        self.assertEqual(final["status"], "cancelled")
        with self.assertRaises(DarkroomError) as ctx:
            self.client.cancel(job["id"])
        self.assertEqual(ctx.exception.status, 409)

    def test_wait_timeout(self):
        job = self.client.submit("synthetic", params={"steps": 50, "stepMs": 100})
        with self.assertRaises(DarkroomTimeoutError) as ctx:
            self.client.wait(job["id"], timeout=0.3)
        self.assertIsNotNone(ctx.exception.last)
        self.client.cancel(job["id"])

    def test_cli(self):
        out = os.path.join(self.dir, "cli.webp")
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
        args = [sys.executable, "-m", "darkroom", "submit", fixture("flowers.jpeg"),
                "--op", "resize:width=160", "--op", "format:type=webp", "--wait", "--timeout", "30", "-o", out]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        job = json.loads(done.stdout)
        with open(out, "rb") as f:
            self.assertEqual(image_size(f.read()), ("webp", 160, 90))
        done = subprocess.run([sys.executable, "-m", "darkroom", "status", job["id"]], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(json.loads(done.stdout)["status"], "completed")
        done = subprocess.run([sys.executable, "-m", "darkroom", "cancel", job["id"]], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 3)
        self.assertIn("409", done.stderr)

    def test_jobs_and_retry(self):
        job = self.client.submit("synthetic", params={"steps": 50, "stepMs": 100})
        self.client.cancel(job["id"])
        self.assertEqual(self.client.wait(job["id"], timeout=30)["status"], "cancelled")
        again = self.client.retry(job["id"])
        self.assertNotEqual(again["id"], job["id"])
        self.assertEqual(again["retryOf"], job["id"])
        self.assertIn(again["status"], ("queued", "active"))
        self.assertEqual(self.client.status(job["id"])["retriedBy"], again["id"])
        with self.assertRaises(DarkroomError) as ctx:
            self.client.retry(job["id"])
        self.assertEqual(ctx.exception.status, 409)
        # The station's list: newest first, filtered, paged with the cursor until it runs out.
        in_flight = [j["id"] for j in self.client.iter_jobs(status=["queued", "active"], pipeline="synthetic")]
        self.assertIn(again["id"], in_flight)
        self.assertNotIn(job["id"], in_flight)
        first = self.client.jobs(limit=1)
        self.assertEqual(len(first["jobs"]), 1)
        self.assertEqual(first["jobs"][0]["id"], again["id"])
        self.assertTrue(first["nextCursor"])
        second = self.client.jobs(limit=1, cursor=first["nextCursor"])
        self.assertEqual(second["jobs"][0]["id"], job["id"])
        self.client.cancel(again["id"])
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
        done = subprocess.run([sys.executable, "-m", "darkroom", "jobs", "--status", "cancelled", "--limit", "2"],
                              env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        listed = json.loads(done.stdout)
        self.assertEqual(len(listed), 2)
        self.assertTrue(all(j["status"] == "cancelled" for j in listed), listed)
        done = subprocess.run([sys.executable, "-m", "darkroom", "retry", again["id"]], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["retryOf"], again["id"])
        self.client.cancel(json.loads(done.stdout)["id"])

    @unittest.skipUnless(os.environ.get("DARKROOM_TEST_IMAGE_URL"), "needs DARKROOM_TEST_IMAGE_URL (an api allowing private input URLs)")
    def test_image_url(self):
        import http.server
        import functools
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=FIXTURES)
        handler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = "http://127.0.0.1:%d/flowers.jpeg" % server.server_address[1]
            ops = [{"op": "resize", "width": 320}, {"op": "format", "type": "webp"}]
            job = self.client.submit("edit", image_url=url, params={"operations": ops}, wait=30)
            self.assertEqual(job["status"], "completed", job)
            self.assertEqual(image_size(self.client.result(job["id"])), ("webp", 320, 180))
            with self.assertRaises(DarkroomError) as ctx:
                self.client.submit("edit", image_url=url + ".missing", params={"operations": ops})
            self.assertEqual(ctx.exception.status, 422)
            self.assertEqual([(e["path"], e["code"]) for e in ctx.exception.errors], [("imageUrl", "unreachable")])
        finally:
            server.shutdown()
            server.server_close()

    @unittest.skipUnless(LIMITED_KEY, "needs DARKROOM_TEST_LIMITED_KEY (a station with maxPending 1)")
    def test_429_is_retried_after_retry_after(self):
        limited = Client(URL, LIMITED_KEY)
        first = limited.submit("synthetic", params={"steps": 100, "stepMs": 100})
        with self.assertRaises(DarkroomError) as ctx:
            Client(URL, LIMITED_KEY, attempts=1).submit("synthetic", params={"steps": 1, "stepMs": 0})
        self.assertEqual((ctx.exception.status, ctx.exception.code), (429, "rate_limited"))
        self.assertGreaterEqual(ctx.exception.retry_after, 1)

        # With retries the client waits the Retry-After; meanwhile the station's slot frees.
        retries = []

        def on_retry(request, attempt, delay, error):
            retries.append((time.monotonic(), delay, error))
            threading.Thread(target=limited.cancel, args=(first["id"],)).start()

        started = time.monotonic()
        job = Client(URL, LIMITED_KEY, on_retry=on_retry).submit("synthetic", params={"steps": 1, "stepMs": 0})
        self.assertGreaterEqual(len(retries), 1)
        self.assertEqual(retries[0][2].status, 429)
        self.assertEqual(retries[0][1], retries[0][2].retry_after)  # Retry-After replaced the backoff
        self.assertGreaterEqual(time.monotonic() - started, retries[0][1])
        self.assertEqual(limited.wait(job["id"], timeout=30)["status"], "completed")


if __name__ == "__main__":
    unittest.main()
