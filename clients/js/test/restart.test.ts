/**
 * A node stopped (SIGTERM) and started again on the same port: the client follows it with
 * `Last-Event-ID` and loses and repeats nothing. The Redis broker keeps records, tokens and
 * replay buffers across the restart (the memory broker would lose them with the process).
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { MemoryDedupStore, SwitchboardClient } from "@switchboard/client";

import { mintToken, redisEnv, requireRedis, SwitchboardNode, uniqueUser, waitFor } from "./harness.js";
import { Recorder } from "./recorder.js";

test("a node stopped and started again on the same port: the client resumes, losing and repeating nothing", async (t) => {
  await requireRedis();
  const node = await SwitchboardNode.start({ env: redisEnv() });
  t.after(() => node.dispose());
  const user = uniqueUser("ivan");
  const client = new SwitchboardClient({
    url: node.url,
    getToken: () => mintToken(user, 3600),
    deviceId: "phone",
    store: new MemoryDedupStore(),
    // Acks wait long enough that the last notification before the stop is still unacked then.
    ackDelayMs: 1500,
  });
  const rec = new Recorder(client);
  t.after(() => client.close());
  await waitFor(() => rec.opens.length === 1, 10_000, () => rec.summary());

  const before = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(before), 10_000, () => rec.summary());
  await node.waitStatus(before, "acked");

  // Sent just before the stop: received, not acked yet when the node goes.
  const last = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(last), 10_000, () => rec.summary());
  assert.equal(await node.status(last), "delivered", "not acked before the stop");
  await node.stop();
  await waitFor(() => client.state !== "open", 5_000, () => rec.summary());

  await node.start();
  await waitFor(() => rec.opens.length === 2, 15_000, () => `the client back on the restarted node: ${rec.summary()}`);
  assert.deepEqual(rec.opens[1], { lastEventId: last }, "resumed after the last notification it received");
  const after = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(after), 10_000, () => rec.summary());

  assert.deepEqual(rec.ids(), [before, last, after], "each once, in order");
  assert.deepEqual(rec.duplicates, []);
  assert.equal(rec.resets, 0);
  for (const id of [before, last, after]) await node.waitStatus(id, "acked");
});
