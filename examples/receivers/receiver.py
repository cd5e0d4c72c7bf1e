#!/usr/bin/env python3
"""A webhook receiver that verifies Posthorn's signatures (Standard Webhooks), with only the
standard library. Usage:

    POSTHORN_WEBHOOK_SECRET=whsec_... python3 receiver.py [PORT]

It answers 204 to a webhook whose signature and timestamp check out (and prints it), and 401 to
anything else. The signature is `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))
under the secret's decoded bytes; during a rotation several are sent, space-separated.
"""
import base64, hashlib, hmac, http.server, json, os, sys, time

SECRET = base64.b64decode(os.environ["POSTHORN_WEBHOOK_SECRET"].removeprefix("whsec_"))
TOLERANCE_S = 5 * 60


def verified(headers, body: bytes) -> bool:
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False  # a replay, or a clock far off
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    for candidate in headers.get("webhook-signature", "").split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not verified(self.headers, body):
            self.send_response(401)
            self.end_headers()
            print("rejected: bad or stale signature", flush=True)
            return
        print(self.headers["posthorn-event"], self.headers["webhook-id"], "attempt",
              self.headers["posthorn-attempt"], json.dumps(json.loads(body), indent=2), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
print(f"listening on http://127.0.0.1:{port}/hook", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
