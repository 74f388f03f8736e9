"""The Freepik seed's webhook verifier (000_2f2d43bf2ccb8639.txt, "Webhook Security"), verbatim and kept once: the
tests that receive real deliveries verify them with exactly the code the document gives its users."""

VERIFY_WEBHOOK = '''
import hmac
import hashlib

def verify_webhook(payload, signature, secret):
    expected = hmac.new(
        secret.encode(),
        payload,
        hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)
'''

_namespace: dict = {}
exec(VERIFY_WEBHOOK, _namespace)  # noqa: S102 - the document's own code, run as its users run it
verify_webhook = _namespace["verify_webhook"]
