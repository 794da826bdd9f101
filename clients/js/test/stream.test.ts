/** The client against a real node (memory broker): delivery, acks, de-dup, reset, tokens. */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { MemoryDedupStore, SwitchboardClient, isNewPush, type ClientOptions } from "@switchboard/client";

import { FcmMock, mintToken, SwitchboardNode, uniqueUser, waitFor, sleep } from "./harness.js";
import { Recorder } from "./recorder.js";

function client(
  node: SwitchboardNode,
  user: string,
  options: Partial<ClientOptions> = {},
): { client: SwitchboardClient; rec: Recorder } {
  const c = new SwitchboardClient({
    url: node.url,
    getToken: () => mintToken(user, 3600),
    deviceId: "phone",
    store: new MemoryDedupStore(),
    ...options,
  });
  return { client: c, rec: new Recorder(c) };
}

async function opened(rec: Recorder, count = 1): Promise<void> {
  await waitFor(() => rec.opens.length >= count, 10_000, () => `${count} open event(s): ${rec.summary()}`);
}

test("notifications arrive once each, in order, and are acked", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("alice");
  const { client: c, rec } = client(node, user);
  t.after(() => c.close());
  await opened(rec);

  const sent: string[] = [];
  for (let i = 0; i < 3; i++) {
    const answer = await node.notify(user, { data: { n: String(i) }, notification: { title: `#${i}` } });
    assert.equal(answer.route, "sse");
    sent.push(answer.id);
  }

  await waitFor(() => rec.notifications.length >= 3, 10_000, () => `3 notifications: ${rec.summary()}`);
  assert.deepEqual(rec.ids(), sent);
  assert.deepEqual(rec.notifications[1]?.data, { n: "1" });
  assert.equal(rec.notifications[2]?.notification?.title, "#2");
  for (const id of sent) await node.waitStatus(id, "acked");
  assert.equal(c.lastEventId, sent[2]);
  assert.deepEqual(rec.duplicates, []);
});

test("acks go out in batches of at most ackBatchSize ids", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("batch");
  const ackBodies: string[][] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    if (String(input).endsWith("/v1/ack")) ackBodies.push((JSON.parse(String(init?.body)) as { ids: string[] }).ids);
    return fetch(input, init);
  };
  const { client: c, rec } = client(node, user, { fetch: recordingFetch, ackBatchSize: 20, ackDelayMs: 500 });
  t.after(() => c.close());
  await opened(rec);

  const response = await fetch(`${node.url}/v1/notify/batch`, {
    method: "POST",
    headers: { Authorization: "Bearer sdk-test-producer-key", "Content-Type": "application/json" },
    body: JSON.stringify({ notifications: Array.from({ length: 50 }, (_, i) => ({ user_id: user, data: { i: String(i) } })) }),
  });
  const sent = ((await response.json()) as { results: Array<{ id: string }> }).results.map((r) => r.id);

  await waitFor(() => ackBodies.flat().length >= 50, 10_000, () => `50 acked ids, got ${ackBodies.flat().length}`);
  assert.deepEqual(ackBodies.flat(), sent, "every id acked once, in order");
  assert.ok(ackBodies.every((ids) => ids.length <= 20), `batches: ${ackBodies.map((b) => b.length)}`);
  assert.ok(ackBodies.length <= 5, `50 ids in at most 5 requests, got ${ackBodies.length}`);
  for (const id of [sent[0]!, sent[49]!]) await node.waitStatus(id, "acked");
});

test("a notification already marked from push is dropped when the stream replays it", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("bob");
  // The user's tablet (no acks) keeps them online, so notifications go over SSE and into the
  // user's replay buffer.
  const tablet = client(node, user, { deviceId: "tablet", ack: false });
  t.after(() => tablet.client.close());
  await opened(tablet.rec);
  const first = (await node.notify(user)).id;
  const second = (await node.notify(user)).id;
  await waitFor(() => tablet.rec.notifications.length >= 2, 10_000, () => tablet.rec.summary());

  // The phone's push handler got `second` through FCM (data.switchboard_id) and showed it.
  const store = new MemoryDedupStore();
  assert.equal(await isNewPush({ data: { switchboard_id: second, title: "x" } }, store), true);
  // The phone's stream then resumes after `first`: the replay carries `second` again.
  const phone = client(node, user, { store, lastEventId: first });
  t.after(() => phone.client.close());
  await opened(phone.rec);
  const third = (await node.notify(user)).id;

  await waitFor(() => phone.rec.notifications.length >= 1, 10_000, () => phone.rec.summary());
  await waitFor(() => phone.rec.duplicates.length >= 1, 10_000, () => phone.rec.summary());
  assert.deepEqual(phone.rec.opens[0], { lastEventId: first });
  assert.deepEqual(phone.rec.duplicates, [second], "the replayed copy is dropped");
  assert.deepEqual(phone.rec.ids(), [third], "only the new one is shown");
  assert.equal(await phone.client.handlePush({ data: { switchboard_id: third } }), false, "and a later push of it is dropped too");
});

test("a push that raced the ack timeout is recognised as already shown", async (t) => {
  const mock = await FcmMock.start();
  t.after(() => mock.dispose());
  const node = await SwitchboardNode.start({ env: { ...mock.env(), SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS: "300" } });
  t.after(() => node.dispose());
  const user = uniqueUser("carol");
  // Acks later than the server waits: the notification also goes out through FCM.
  const { client: c, rec } = client(node, user, { ackDelayMs: 3000 });
  t.after(() => c.close());
  const device = await c.registerDevice({ fcm_token: `fcm-${user}`, platform: "android" });
  assert.equal(device.device_id, "phone");
  await opened(rec);

  const { id, route } = await node.notify(user);
  assert.equal(route, "sse");
  await waitFor(() => rec.notifications.length >= 1, 10_000, () => rec.summary());
  let push: Record<string, string> | undefined;
  await waitFor(
    async () => {
      push = (await mock.messages()).find((m) => m.message.data?.switchboard_id === id)?.message.data;
      return push !== undefined;
    },
    10_000,
    () => `FCM message for ${id}`,
  );

  assert.equal(await c.handlePush(push), false, "already shown from the stream");
  assert.deepEqual(rec.ids(), [id]);

  // A push the stream never carried is new.
  await c.close();
  const offline = await node.notify(user);
  assert.equal(offline.route, "fcm");
  const pushed = async () => (await mock.messages()).some((m) => m.message.data?.switchboard_id === offline.id);
  await waitFor(pushed, 10_000, () => "the offline push");
  assert.equal(await c.handlePush({ data: { switchboard_id: offline.id } }), true);
  assert.equal(await c.unregisterDevice(), true);
});

test("an unknown Last-Event-ID gets reset, and the client resumes from the next notification", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("dave");
  const store = new MemoryDedupStore();
  const { client: c, rec } = client(node, user, { lastEventId: randomUUID(), store });
  t.after(() => c.close());

  await waitFor(() => rec.resets === 1, 10_000, () => `a reset: ${rec.summary()}`);
  assert.equal(c.lastEventId, undefined, "nothing to resume from");
  const { id } = await node.notify(user);
  await waitFor(() => rec.notifications.length === 1, 10_000, () => rec.summary());
  assert.equal(c.lastEventId, id);
  await node.waitStatus(id, "acked");
});

test("a broadcast reaches the topic's subscribers and does not move the resume point", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("erin");
  const { client: c, rec } = client(node, user, { topics: ["news", "sport"] });
  t.after(() => c.close());
  await opened(rec);
  const { id } = await node.notify(user);
  await waitFor(() => rec.notifications.length === 1, 10_000, () => rec.summary());

  const broadcast = await node.broadcast("news", { headline: "hello" });
  await waitFor(() => rec.broadcasts.length === 1, 10_000, () => rec.summary());
  assert.equal(rec.broadcasts[0]?.id, broadcast.id);
  assert.deepEqual(rec.broadcasts[0]?.data, { headline: "hello" });
  // Broadcast ids are not in the replay buffer: resuming from one would get `reset`.
  assert.equal(c.lastEventId, id);
});

test("the token is fetched again before it expires, and acks never meet a 401", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("frank");
  let fetched = 0;
  const ackStatuses: number[] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (String(input).endsWith("/v1/ack")) ackStatuses.push(response.status);
    return response;
  };
  // Three-second tokens; the server accepts one up to 5 s past `exp`, so by 9 s the first is dead.
  const { client: c, rec } = client(node, user, {
    fetch: recordingFetch,
    getToken: () => {
      fetched++;
      return mintToken(user, 3);
    },
  });
  t.after(() => c.close());
  await opened(rec);
  await sleep(9_000);
  assert.ok(fetched >= 3, `refreshed ahead of exp: ${fetched} tokens in 9 s`);

  const { id } = await node.notify(user);
  await waitFor(() => rec.ids().includes(id), 15_000, () => rec.summary());
  await node.waitStatus(id, "acked");
  assert.ok(ackStatuses.length > 0 && ackStatuses.every((s) => s === 204), `ack answers: ${ackStatuses}`);
});

test("a refused token (401) makes the client fetch a fresh one and connect", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("gina");
  const tokens = [mintToken(user, 3600, "not-the-server-secret"), mintToken(user, 3600)];
  let fetched = 0;
  const { client: c, rec } = client(node, user, { getToken: () => tokens[Math.min(fetched++, 1)]! });
  t.after(() => c.close());

  await opened(rec);
  assert.equal(fetched, 2);
  assert.equal(rec.errors[0]?.status, 401);
  assert.equal(rec.errors[0]?.code, "invalid_token");
  assert.equal(rec.errors[0]?.fatal, false);
  const { id } = await node.notify(user);
  await waitFor(() => rec.ids().includes(id), 10_000, () => rec.summary());
});

test("a refusal that retrying cannot fix closes the client with a fatal error", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const { client: c, rec } = client(node, uniqueUser("hank"), { deviceId: "not/valid" });
  t.after(() => c.close());
  await waitFor(() => c.state === "closed", 10_000, () => rec.summary());
  assert.equal(rec.errors.length, 1);
  assert.equal(rec.errors[0]?.status, 400);
  assert.equal(rec.errors[0]?.fatal, true);
});
