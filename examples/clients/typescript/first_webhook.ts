// The README's first webhook, through a TypeScript client generated from Posthorn's /openapi.json
// (openapi-typescript's types, openapi-fetch's calls), type-checked by tsc in strict mode:
// subscribe a receiver, publish an event, see it arrive signed (checked with the Standard
// Webhooks library) and the delivery succeed, then retry it and see it again.
//
//     npm install
//     npx openapi-typescript "$POSTHORN_URL/openapi.json" -o schema.ts
//     npx tsc -p . && node first_webhook.js "$POSTHORN_URL" "$POSTHORN_TOKEN"
//
// The server must admit a receiver on loopback (`serve --dev`). CI runs it (.ci/clients.sh).
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import createClient from "openapi-fetch";
import { Webhook } from "standardwebhooks";
import type { paths } from "./schema.js";

const [base, token] = process.argv.slice(2);
const received: { headers: IncomingHttpHeaders; body: string }[] = [];
const server = createServer((req, res) => {
  let body = "";
  req.on("data", (c: Buffer) => (body += c.toString()));
  req.on("end", () => {
    received.push({ headers: req.headers, body });
    res.writeHead(204).end();
  });
});
await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;

const client = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${token}` } });
const sub = await client.POST("/v1/subscriptions", {
  body: { name: "First hook (TypeScript client)", service: "http", config: { url }, events: ["new_feed_entry"] },
});
if (!sub.data) throw new Error(`subscribe: ${JSON.stringify(sub.error)}`);
const secret: string = sub.data.secret ?? "";
if (!secret.startsWith("whsec_")) throw new Error("no signing secret");

const published = await client.POST("/v1/events", {
  body: { name: "new_feed_entry", data: { feed: { title: "Cannes Festival" } } },
});
if (!published.data || !("id" in published.data)) throw new Error(`publish: ${JSON.stringify(published.error)}`);
const eventId: string = published.data.id;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const deadline = Date.now() + 20_000;
while (!received.length && Date.now() < deadline) await sleep(50);
if (!received.length) throw new Error("the webhook never arrived");
const { headers, body } = received[0];
const flat: Record<string, string> = {};
for (const [k, v] of Object.entries(headers)) if (typeof v === "string") flat[k] = v;
const payload = new Webhook(secret).verify(body, flat) as { id: string; data: { feed: { title: string } } };
if (payload.id !== eventId || payload.data.feed.title !== "Cannes Festival") throw new Error(JSON.stringify(payload));

let status: string | undefined;
while (Date.now() < deadline) {
  const page = await client.GET("/v1/subscriptions/{id}/deliveries", { params: { path: { id: sub.data.id } } });
  status = page.data?.items[0]?.status;
  if (status === "succeeded") break;
  await sleep(100);
}
if (status !== "succeeded") throw new Error(`delivery ${status}`);

// Retry it: one more attempt now, the same webhook-id.
const deliveries = await client.GET("/v1/subscriptions/{id}/deliveries", { params: { path: { id: sub.data.id } } });
const deliveryId = deliveries.data?.items[0]?.id;
if (!deliveryId) throw new Error("no delivery listed");
const retried = await client.POST("/v1/deliveries/{id}/retry", { params: { path: { id: deliveryId } } });
if (!retried.data) throw new Error(`retry: ${JSON.stringify(retried.error)}`);
const later = Date.now() + 20_000;
while (received.length < 2 && Date.now() < later) await sleep(50);
if (received.length < 2) throw new Error("the retry never arrived");
if (received[1].headers["webhook-id"] !== headers["webhook-id"]) throw new Error("a new webhook-id on retry");
const again: Record<string, string> = {};
for (const [k, v] of Object.entries(received[1].headers)) if (typeof v === "string") again[k] = v;
new Webhook(secret).verify(received[1].body, again);
console.log(`typescript client: ${eventId} delivered to ${url} and retried, signatures verified, delivery ${status}`);
server.close();
