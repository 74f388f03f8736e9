"""A local webhook receiver for trying deliveries by hand (README, "Webhooks locally"): prints each POST and checks
its signatures with the secret given: X-Freepik-Signature (seed 000's verify_webhook), Standard Webhooks
(webhook-id / webhook-timestamp / webhook-signature), and, for shotgun bodies (seed 002), the body's own `signature`.

    python scripts/webhook_receiver.py --port 9000 --secret whsec_...
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify_webhook(payload: bytes, signature: str, secret: str) -> bool:
    """Seed 000's verifier."""
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


def verify_standard(body: bytes, headers: dict[str, str], secret: str) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(candidate.partition(",")[2], expected)
               for candidate in headers.get("webhook-signature", "").split(" "))


def verify_body_signature(payload: dict, secret: str) -> bool:
    """Seed 002's `signature` field: over the body without it, as compact JSON with sorted keys."""
    unsigned = json.dumps({k: v for k, v in payload.items() if k != "signature"}, separators=(",", ":"),
                          sort_keys=True).encode()
    return verify_webhook(unsigned, payload.get("signature", ""), secret)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True, help="the webhook secret the job was signed with")
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            payload = json.loads(body or b"{}")
            checks = {"X-Freepik-Signature": verify_webhook(body, headers.get("x-freepik-signature", ""), args.secret),
                      "Standard Webhooks": verify_standard(body, headers, args.secret)}
            if "signature" in payload:
                checks["body signature"] = verify_body_signature(payload, args.secret)
            print(json.dumps(payload, indent=2))
            print("  " + ", ".join(f"{name}: {'valid' if ok else 'INVALID'}" for name, ok in checks.items()),
                  flush=True)
            self.send_response(200 if all(checks.values()) else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    print(f"listening on http://{args.host}:{args.port}/", flush=True)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
