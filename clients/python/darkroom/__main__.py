"""``python -m darkroom``: submit an image, show or cancel a job, download a result.

    python -m darkroom submit photo.jpg --op resize:width=512 --op format:type=webp --wait -o out.webp
    python -m darkroom status edit_8ntv3369rr6e6hh0y4efv87d
    python -m darkroom cancel edit_8ntv3369rr6e6hh0y4efv87d
    python -m darkroom jobs --status queued,active
    python -m darkroom retry edit_8ntv3369rr6e6hh0y4efv87d

The api's address and the station's key come from --url/--key or DARKROOM_URL/DARKROOM_API_KEY.
Exit codes as the Node CLI's: 0 ok, 1 the job failed or was cancelled, 2 usage, 3 an API, network
or file error, 124 --timeout passed, 130 Ctrl-C (the job goes on).
"""

import argparse
import json
import sys

from . import Client, DarkroomError, DarkroomNetworkError, DarkroomTimeoutError


def parse_op(text):
    """``resize:width=512,fit=inside`` -> ``{"op": "resize", "width": 512, "fit": "inside"}``."""
    name, _, rest = text.partition(":")
    op = {"op": name.strip()}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = pair.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError("expected key=value in %r" % pair)
        try:
            op[key.strip()] = json.loads(value)
        except ValueError:
            op[key.strip()] = value
    return op


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m darkroom", description="Darkroom station client")
    parser.add_argument("--url", help="api address (default: DARKROOM_URL)")
    parser.add_argument("--key", help="station key (default: DARKROOM_API_KEY)")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="submit a job")
    s.add_argument("image", nargs="?", help="image file (omit for pipelines without one)")
    s.add_argument("--image-url", help="have the api fetch the image from this http(s) URL instead")
    s.add_argument("--pipeline", default="edit")
    s.add_argument("--op", action="append", type=parse_op, default=[], help="edit operation, e.g. resize:width=512")
    s.add_argument("--params", type=json.loads, help="params as JSON (instead of --op)")
    s.add_argument("--priority")
    s.add_argument("--webhook-url")
    s.add_argument("--idempotency-key")
    s.add_argument("--wait", action="store_true", help="wait until the job is final")
    s.add_argument("--timeout", type=float, help="seconds to wait at most")
    s.add_argument("-o", "--output", help="download the result here (implies --wait)")

    j = sub.add_parser("jobs", help="list the station's own jobs, newest first")
    j.add_argument("--status", help="one status or a comma-separated list (queued, active, completed, failed, cancelled)")
    j.add_argument("--pipeline")
    j.add_argument("--since", help="ISO 8601 time: jobs submitted at or after it")
    j.add_argument("--limit", type=int, default=20, help="how many jobs at most (default 20)")

    for name, text in (("status", "show a job"), ("cancel", "cancel a job"), ("retry", "queue a failed or cancelled job again")):
        c = sub.add_parser(name, help=text)
        c.add_argument("id")
    d = sub.add_parser("download", help="download a job's result")
    d.add_argument("id")
    d.add_argument("-o", "--output", required=True)

    args = parser.parse_args(argv)
    client = Client(args.url, args.key)
    try:
        if args.command == "submit":
            params = args.params
            if params is None and (args.op or args.pipeline == "edit"):
                params = {"operations": args.op}
            job = client.submit(args.pipeline, image=args.image, params=params, priority=args.priority,
                                webhook_url=args.webhook_url, idempotency_key=args.idempotency_key,
                                image_url=args.image_url)
            if args.wait or args.output:
                job = client.wait(job["id"], timeout=args.timeout)
            print(json.dumps(job, indent=2))
            if args.output:
                if job["status"] != "completed":
                    return 1
                result = client.download(job["id"], args.output)
                print("wrote %s (%d bytes)" % (result.path, result.bytes), file=sys.stderr)
            return 0 if job["status"] not in ("failed", "cancelled") else 1
        if args.command == "status":
            print(json.dumps(client.status(args.id), indent=2))
        elif args.command == "cancel":
            print(json.dumps(client.cancel(args.id), indent=2))
        elif args.command == "retry":
            print(json.dumps(client.retry(args.id), indent=2))
        elif args.command == "jobs":
            jobs = []
            for job in client.iter_jobs(status=args.status, pipeline=args.pipeline, since=args.since,
                                        page_size=min(100, max(1, args.limit))):
                if len(jobs) >= args.limit:
                    break
                jobs.append(job)
            print(json.dumps(jobs, indent=2))
        elif args.command == "download":
            result = client.download(args.id, args.output)
            print("%s %s (%d bytes)" % ("unchanged" if result.not_modified else "wrote", result.path, result.bytes),
                  file=sys.stderr)
        return 0
    except DarkroomTimeoutError as err:
        print("darkroom: %s" % err, file=sys.stderr)
        return 124
    except (DarkroomError, DarkroomNetworkError, OSError) as err:
        print("darkroom: %s" % err, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
