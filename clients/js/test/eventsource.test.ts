/**
 * The `eventsource` npm package as the transport (what the browser's own EventSource does, in
 * Node): token and resume point as query parameters, and the client's own reconnects.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { EventSource } from "eventsource";
import { eventSourceTransport, MemoryDedupStore, SwitchboardClient } from "@switchboard/client";

import { mintToken, redisEnv, requireRedis, SwitchboardNode, uniqueUser, waitFor } from "./harness.js";
import { Recorder } from "./recorder.js";

test("over the eventsource package the client receives, acks, and resumes after a node restart", async (t) => {
  await requireRedis();
  const node = await SwitchboardNode.start({ env: redisEnv() });
  t.after(() => node.dispose());
  const user = uniqueUser("kim");
  const client = new SwitchboardClient({
    url: node.url,
    getToken: () => mintToken(user, 3600),
    deviceId: "laptop",
    store: new MemoryDedupStore(),
    transport: eventSourceTransport(EventSource),
    retryMs: 200,
  });
  const rec = new Recorder(client);
  t.after(() => client.close());
  await waitFor(() => rec.opens.length === 1, 10_000, () => rec.summary());

  const first = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(first), 10_000, () => rec.summary());
  await node.waitStatus(first, "acked");

  await node.stop();
  await node.start();
  await waitFor(() => rec.opens.length === 2, 15_000, () => rec.summary());
  assert.deepEqual(rec.opens[1], { lastEventId: first });
  const second = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(second), 10_000, () => rec.summary());
  await node.waitStatus(second, "acked");
  assert.deepEqual(rec.ids(), [first, second]);
  assert.equal(rec.resets, 0);
});

test("over the eventsource package a refused token is reported with its status and replaced", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("lee");
  let fetched = 0;
  const client = new SwitchboardClient({
    url: node.url,
    getToken: () => (fetched++ === 0 ? mintToken(user, 3600, "wrong-secret") : mintToken(user, 3600)),
    store: new MemoryDedupStore(),
    transport: eventSourceTransport(EventSource),
  });
  const rec = new Recorder(client);
  t.after(() => client.close());
  await waitFor(() => rec.opens.length === 1, 10_000, () => rec.summary());
  assert.equal(rec.errors[0]?.status, 401);
  assert.equal(fetched, 2);
});
