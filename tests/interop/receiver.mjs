// A department's receiver written against the Standard Webhooks reference
// library, for tests/integration/test_interop.c.
//
//   node receiver.mjs PORT_FILE OUT_FILE SECRET [WHISTLE_URL_FILE]
//
// Listens on 127.0.0.1 on a free port and writes that port to PORT_FILE.
// Each request is verified with Webhook.verify on the raw body: a verified
// message is appended to OUT_FILE as one JSON line {"ok": true, "id",
// "payload"} and answered 204; a refused one is appended as {"ok": false,
// "id", "error"} and answered 401. With WHISTLE_URL_FILE (a file holding
// whistle's base URL, read when needed: whistle starts after us), a verified
// ticket.whistled is answered the other way too: the receiver fires
// "report" on the ticket with a request signed by Webhook.sign.
import { appendFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";

const [portFile, outFile, secret, whistleFile] = process.argv.slice(2);
const wh = new Webhook(secret);

function record(entry) {
  appendFileSync(outFile, JSON.stringify(entry) + "\n");
}

async function report(ticketId) {
  const body = JSON.stringify({ event: "report", note: "interop: standardwebhooks" });
  const id = `in_${randomUUID()}`;
  const now = new Date();
  const whistle = readFileSync(whistleFile, "utf8").trim();
  const res = await fetch(`${whistle}/v1/tickets/${encodeURIComponent(ticketId)}/events`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": wh.sign(id, now, body),
    },
    body,
  });
  record({ callback: ticketId, status: res.status, body: await res.text() });
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    const id = req.headers["webhook-id"] ?? null;
    let payload;
    try {
      payload = wh.verify(raw, req.headers);
    } catch (e) {
      record({ ok: false, id, error: String(e.message ?? e) });
      res.writeHead(401).end();
      return;
    }
    record({ ok: true, id, payload });
    res.writeHead(204).end();
    if (whistleFile && payload?.type === "ticket.whistled")
      report(payload.data.ticket.id).catch((e) => record({ callback: null, error: String(e) }));
  });
});

server.listen(0, "127.0.0.1", () => {
  writeFileSync(portFile + ".tmp", String(server.address().port));
  // Renamed into place so that the test never reads a half-written file.
  renameSync(portFile + ".tmp", portFile);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
