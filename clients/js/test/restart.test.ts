/**
 * A node stopped (SIGTERM) and started again on the same port: the client follows it with
 * `Last-Event-ID` and loses and repeats nothing, including what the user's other device got
 * while this one was still away (the replay). The Redis broker keeps records, tokens and
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
  // Holds the phone's stream requests while closed: the phone comes back after the tablet.
  let gate = Promise.resolve();
  let openGate = () => {};
  const gatedFetch: typeof fetch = async (input, init) => {
    if (String(input).includes("/v1/events")) await gate;
    return fetch(input, init);
  };
  const client = new SwitchboardClient({
    url: node.url,
    getToken: () => mintToken(user, 3600),
    deviceId: "phone",
    store: new MemoryDedupStore(),
    fetch: gatedFetch,
    // Acks wait long enough that the last notification before the stop is still unacked then.
    ackDelayMs: 3000,
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
  gate = new Promise((resolve) => (openGate = resolve));
  await node.stop();
  await waitFor(() => client.state !== "open", 5_000, () => rec.summary());

  await node.start();
  // The user's tablet (no acks) is back first and gets `missed`; it stays in the replay buffer.
  const tablet = new SwitchboardClient({
    url: node.url,
    getToken: () => mintToken(user, 3600),
    deviceId: "tablet",
    ack: false,
    store: new MemoryDedupStore(),
  });
  const tabletRec = new Recorder(tablet);
  t.after(() => tablet.close());
  await waitFor(() => tabletRec.opens.length === 1, 10_000, () => tabletRec.summary());
  const missed = (await node.notify(user)).id;
  await waitFor(() => tabletRec.ids().includes(missed), 10_000, () => tabletRec.summary());

  openGate();
  await waitFor(() => rec.opens.length === 2, 15_000, () => `the client back on the restarted node: ${rec.summary()}`);
  assert.deepEqual(rec.opens[1], { lastEventId: last }, "resumed after the last notification it received");
  await waitFor(() => rec.ids().includes(missed), 10_000, () => `the replay of what it missed: ${rec.summary()}`);
  const after = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(after), 10_000, () => rec.summary());

  assert.deepEqual(rec.ids(), [before, last, missed, after], "each once, in order");
  assert.deepEqual(rec.duplicates, []);
  assert.equal(rec.resets, 0);
  for (const id of [before, last, missed, after]) await node.waitStatus(id, "acked");
});
