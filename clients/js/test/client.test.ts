/**
 * The client's reactions, driven through a scripted transport (our own `Transport` contract):
 * what it does on reauth, shutdown, refusals and drops. The same paths run against the real
 * node in the other files; here each is isolated and timed.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import {
  MemoryDedupStore,
  SwitchboardClient,
  type StreamHandlers,
  type StreamRequest,
  type Transport,
} from "@switchboard/client";

import { mintToken, waitFor } from "./harness.js";
import { Recorder } from "./recorder.js";

class ScriptedTransport implements Transport {
  readonly requests: Array<StreamRequest & { at: number }> = [];
  handlers: StreamHandlers | undefined;
  closes = 0;

  open(request: StreamRequest, handlers: StreamHandlers) {
    this.requests.push({ ...request, at: Date.now() });
    this.handlers = handlers;
    return { close: () => void this.closes++ };
  }

  notification(id: string): void {
    this.handlers!.event({ type: "notification", id, data: JSON.stringify({ id, data: {}, sent_at: Date.now() }) });
  }
}

function setup(options: { retryMs?: number } = {}) {
  const transport = new ScriptedTransport();
  const tokens: string[] = [];
  const client = new SwitchboardClient({
    url: "http://127.0.0.1:9",
    getToken: () => {
      tokens.push(mintToken("u1", 3600, undefined, { jti: randomUUID() }));
      return tokens[tokens.length - 1]!;
    },
    ack: false,
    store: new MemoryDedupStore(),
    transport,
    retryMs: options.retryMs ?? 100,
  });
  return { client, transport, tokens, rec: new Recorder(client) };
}

async function requests(transport: ScriptedTransport, n: number): Promise<void> {
  await waitFor(() => transport.requests.length >= n, 5_000, () => `${n} stream requests, got ${transport.requests.length}`);
}

test("on reauth the client closes the stream, fetches a fresh token and resumes at once", async (t) => {
  const { client, transport, tokens, rec } = setup();
  t.after(() => client.close());
  await requests(transport, 1);
  transport.handlers!.open();
  transport.notification("n1");
  transport.handlers!.event({ type: "reauth", data: "{}" });
  const reauthAt = Date.now();

  await requests(transport, 2);
  const second = transport.requests[1]!;
  assert.equal(rec.reauths, 1);
  assert.equal(transport.closes, 1, "the old stream closed");
  assert.equal(tokens.length, 2, "a fresh token");
  assert.equal(second.token, tokens[1]);
  assert.equal(second.lastEventId, "n1");
  assert.ok(second.at - reauthAt < 100, `at once (${second.at - reauthAt} ms)`);
});

test("on shutdown the client reconnects at once with the same token and its Last-Event-ID", async (t) => {
  const { client, transport, tokens } = setup({ retryMs: 5_000 });
  t.after(() => client.close());
  await requests(transport, 1);
  transport.handlers!.open();
  transport.notification("n7");
  transport.handlers!.event({ type: "shutdown", data: "{}" });
  const shutdownAt = Date.now();

  await requests(transport, 2);
  assert.ok(transport.requests[1]!.at - shutdownAt < 100, "no backoff");
  assert.equal(transport.requests[1]!.lastEventId, "n7");
  assert.equal(tokens.length, 1);
});

test("a 429 waits for Retry-After, longer than the backoff would", async (t) => {
  const { client, transport, rec } = setup({ retryMs: 50 });
  t.after(() => client.close());
  await requests(transport, 1);
  const refusedAt = Date.now();
  transport.handlers!.closed({ kind: "refused", status: 429, code: "too_many_streams", retryAfterMs: 400 });

  await requests(transport, 2);
  assert.ok(transport.requests[1]!.at - refusedAt >= 390, `waited ${transport.requests[1]!.at - refusedAt} ms`);
  assert.equal(rec.errors[0]?.code, "too_many_streams");
  assert.equal(rec.errors[0]?.retryInMs, 400);
  assert.deepEqual(rec.states, ["waiting", "connecting"]);
});

test("failed attempts back off exponentially from the server's retry", async (t) => {
  const { client, transport, rec } = setup({ retryMs: 10_000 });
  t.after(() => client.close());
  await requests(transport, 1);
  transport.handlers!.retry(40); // the server's `retry:` replaces the configured base
  for (let i = 1; i <= 4; i++) {
    transport.handlers!.closed({ kind: "failed", opened: false, error: "ECONNREFUSED" });
    await requests(transport, i + 1);
  }
  const waits = rec.errors.map((e) => e.retryInMs ?? -1);
  assert.equal(waits.length, 4);
  waits.forEach((wait, i) => {
    const nominal = 40 * 2 ** i;
    assert.ok(wait >= nominal / 2 && wait <= nominal, `attempt ${i}: ${wait} ms within [${nominal / 2}, ${nominal}]`);
  });
});

test("a duplicate over the stream is reported, not emitted as a notification", async (t) => {
  const { client, transport, rec } = setup();
  t.after(() => client.close());
  await requests(transport, 1);
  transport.handlers!.open();
  assert.equal(await client.handlePush({ data: { switchboard_id: "p1" } }), true);
  transport.notification("p1");
  transport.notification("p2");
  transport.notification("p2");
  await waitFor(() => rec.notifications.length + rec.duplicates.length === 3, 2_000, () => rec.summary());
  assert.deepEqual(rec.ids(), ["p2"]);
  assert.deepEqual(rec.duplicates, ["p1", "p2"]);
});

test("after close() nothing is emitted and no stream is reopened", async () => {
  const { client, transport, rec } = setup({ retryMs: 20 });
  await requests(transport, 1);
  const handlers = transport.handlers!;
  await client.close();
  handlers.closed({ kind: "failed", opened: false });
  handlers.event({ type: "notification", id: "late", data: '{"id":"late","sent_at":0}' });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(transport.requests.length, 1);
  assert.deepEqual(rec.ids(), []);
  assert.equal(client.state, "closed");
});
