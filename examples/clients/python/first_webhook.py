"""The README's first webhook, through a client generated from Posthorn's /openapi.json by
openapi-python-client: subscribe a receiver, publish an event, see it arrive signed (checked with
the Standard Webhooks library) and the delivery succeed, then retry it and see it again.

    pip install openapi-python-client standardwebhooks
    openapi-python-client generate --url "$POSTHORN_URL/openapi.json" --output-path posthorn-client
    pip install ./posthorn-client
    python3 first_webhook.py "$POSTHORN_URL" "$POSTHORN_TOKEN"

The server must admit a receiver on loopback (`serve --dev`). CI runs it (.ci/clients.sh).
"""
import http.server
import sys
import threading
import time

from posthorn_client import AuthenticatedClient
from posthorn_client.api.deliveries import list_subscription_deliveries, retry_delivery
from posthorn_client.api.events import publish_events
from posthorn_client.api.subscriptions import create_subscription
from posthorn_client.models import (
    Accepted,
    DeliveryStatus,
    PublishRequest,
    PublishRequestData,
    SubscriptionSpec,
    SubscriptionSpecConfig,
    SubscriptionSpecService,
    SubscriptionView,
)
from standardwebhooks.webhooks import Webhook

base, token = sys.argv[1], sys.argv[2]
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/hook"

client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)
sub = create_subscription.sync(
    client=client,
    body=SubscriptionSpec(
        name="First hook (Python client)",
        service=SubscriptionSpecService.HTTP,
        config=SubscriptionSpecConfig.from_dict({"url": url}),
        events=["new_feed_entry"],
    ),
)
assert isinstance(sub, SubscriptionView), sub
assert sub.secret and sub.secret.startswith("whsec_"), sub

accepted = publish_events.sync(
    client=client,
    body=PublishRequest(
        name="new_feed_entry",
        data=PublishRequestData.from_dict({"feed": {"title": "Cannes Festival"}}),
    ),
)
assert isinstance(accepted, Accepted) and accepted.deliveries == 1, accepted

deadline = time.monotonic() + 20
while not received and time.monotonic() < deadline:
    time.sleep(0.05)
assert received, "the webhook never arrived"
headers, body = received[0]
payload = Webhook(sub.secret).verify(body, headers)
assert payload["id"] == accepted.id and payload["data"]["feed"]["title"] == "Cannes Festival", payload

status = None
while time.monotonic() < deadline:
    page = list_subscription_deliveries.sync(sub.id, client=client)
    status = page.items[0].status if page.items else None
    if status == DeliveryStatus.SUCCEEDED:
        break
    time.sleep(0.1)
assert status == DeliveryStatus.SUCCEEDED, status

# Retry it: one more attempt now, the same webhook-id.
delivery = page.items[0]
retry_delivery.sync(delivery.id, client=client)
while len(received) < 2 and time.monotonic() < deadline + 20:
    time.sleep(0.05)
assert len(received) == 2, "the retry never arrived"
assert received[1][0]["webhook-id"] == headers["webhook-id"], received[1][0]
Webhook(sub.secret).verify(received[1][1], received[1][0])
print(f"python client: {accepted.id} delivered to {url} and retried, signatures verified, delivery {status.value}")
