#!/usr/bin/env node
// A webhook receiver that verifies Posthorn's signatures (Standard Webhooks), with only Node's
// standard library. Usage:
//
//     POSTHORN_WEBHOOK_SECRET=whsec_... node receiver.js [PORT]
//
// It answers 204 to a webhook whose signature and timestamp check out (and prints it), and 401
// to anything else.
const crypto = require("node:crypto");
const http = require("node:http");

const secret = Buffer.from(process.env.POSTHORN_WEBHOOK_SECRET.replace(/^whsec_/, ""), "base64");
const TOLERANCE_S = 5 * 60;

function verified(headers, body) {
  const id = headers["webhook-id"] || "";
  const timestamp = headers["webhook-timestamp"] || "";
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_S) {
    return false; // a replay, or a clock far off
  }
  const expected = crypto
    .createHmac("sha256", secret)
    .update(Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]))
    .digest();
  return (headers["webhook-signature"] || "").split(" ").some((candidate) => {
    const [version, signature] = candidate.split(",");
    const given = Buffer.from(signature || "", "base64");
    return version === "v1" && given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

const port = Number(process.argv[2] || 9000);
http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (!verified(req.headers, body)) {
        console.log("rejected: bad or stale signature");
        res.writeHead(401).end();
        return;
      }
      console.log(req.headers["posthorn-event"], req.headers["webhook-id"], "attempt",
        req.headers["posthorn-attempt"], JSON.stringify(JSON.parse(body), null, 2));
      res.writeHead(204).end();
    });
  })
  .listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${port}/hook`));
