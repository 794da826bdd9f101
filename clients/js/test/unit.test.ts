/** The client's parts on their own: SSE parsing, tokens, backoff, the memory store, acks. */

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AckBatcher,
  backoffDelay,
  isNewPush,
  jwtClaims,
  MemoryDedupStore,
  pushNotificationId,
  refreshMarginMs,
  SseParser,
  SwitchboardError,
  type SseEvent,
} from "@switchboard/client";

import { mintToken, sleep, waitFor } from "./harness.js";

function parse(chunks: string[]): { events: SseEvent[]; retries: number[] } {
  const events: SseEvent[] = [];
  const retries: number[] = [];
  const parser = new SseParser({ event: (e) => events.push(e), retry: (ms) => retries.push(ms) });
  for (const chunk of chunks) parser.push(chunk);
  return { events, retries };
}

test("the SSE parser handles fields split across chunks and every line ending", () => {
  const { events, retries } = parse([
    "retry: 3000\n\n: ping\n\nid: a1\nevent: notif",
    'ication\ndata: {"id":"a1"}\r',
    "\n\r\nevent: reset\rdata: {}\r\r",
    "data: line one\ndata: line two\n\nevent: shutdown\n\n",
  ]);
  assert.deepEqual(retries, [3000]);
  assert.deepEqual(events, [
    { type: "notification", data: '{"id":"a1"}', id: "a1" },
    { type: "reset", data: "{}" },
    { type: "message", data: "line one\nline two" },
    { type: "shutdown", data: "" },
  ]);
});

test("the SSE parser holds an event back until its blank line", () => {
  assert.deepEqual(parse(["id: x\nevent: notification\ndata: {}\n"]).events, []);
});

test("a JWT's sub and exp are read without verifying it", () => {
  const token = mintToken("u1", 60, "any-secret");
  const claims = jwtClaims(token);
  assert.equal(claims?.sub, "u1");
  assert.ok(Math.abs((claims?.exp ?? 0) - (Date.now() / 1000 + 60)) < 2);
  assert.equal(jwtClaims("not a jwt"), undefined);
  assert.equal(jwtClaims("a.!!!.c"), undefined);
});

test("tokens are renewed a fifth of their life early, between 1 s and 60 s", () => {
  assert.equal(refreshMarginMs(3_600_000), 60_000);
  assert.equal(refreshMarginMs(10_000), 2_000);
  assert.equal(refreshMarginMs(2_000), 1_000);
});

test("backoff doubles from the base up to the cap, within the upper half of each step", () => {
  const policy = { baseMs: 200, maxMs: 5_000 };
  assert.equal(backoffDelay(policy, 0, () => 0), 100);
  assert.equal(backoffDelay(policy, 0, () => 1), 200);
  assert.equal(backoffDelay(policy, 3, () => 1), 1_600);
  assert.equal(backoffDelay(policy, 10, () => 1), 5_000);
  assert.equal(backoffDelay(policy, 10, () => 0), 2_500);
});

test("the memory store marks an id once, evicts the oldest at its cap and forgets after its TTL", async () => {
  const store = new MemoryDedupStore({ maxIds: 2, ttlMs: 50 });
  assert.equal(await store.mark("a"), true);
  assert.equal(await store.mark("a"), false);
  await store.mark("b");
  await store.mark("c");
  assert.equal(await store.has("a"), false, "evicted at the cap");
  assert.equal(await store.has("c"), true);
  await sleep(60);
  assert.equal(await store.mark("c"), true, "forgotten after the TTL");
});

test("a push's switchboard_id is found in the data map or under data", async () => {
  assert.equal(pushNotificationId({ switchboard_id: "x" }), "x");
  assert.equal(pushNotificationId({ data: { switchboard_id: "y" } }), "y");
  assert.equal(pushNotificationId({ data: {} }), undefined);
  const store = new MemoryDedupStore();
  assert.equal(await isNewPush({ data: { switchboard_id: "y" } }, store), true);
  assert.equal(await isNewPush({ switchboard_id: "y" }, store), false);
  assert.equal(await isNewPush({ title: "not ours" }, store), true);
});

test("the ack batcher sends at most 1000 ids per request, in order", async () => {
  const sent: string[][] = [];
  const acked: string[][] = [];
  const batcher = new AckBatcher({
    send: async (ids) => void sent.push(ids),
    onAcked: (ids) => acked.push(ids),
    onError: (e) => assert.fail(e.message),
    delayMs: 10,
    batchSize: 5000,
  });
  const ids = Array.from({ length: 2500 }, (_, i) => `id-${i}`);
  for (const id of ids) batcher.add(id);
  await batcher.close();
  assert.deepEqual(sent.map((b) => b.length), [1000, 1000, 500]);
  assert.deepEqual(sent.flat(), ids);
  assert.deepEqual(acked, sent);
});

test("the ack batcher retries a failed batch and drops one the server refuses for good", async () => {
  let calls = 0;
  const errors: Array<number | undefined> = [];
  const acked: string[][] = [];
  const batcher = new AckBatcher({
    send: async (ids) => {
      calls++;
      if (calls === 1) throw new SwitchboardError("overloaded", { status: 503, retryAfterMs: 50 });
      if (ids.includes("bad")) throw new SwitchboardError("invalid", { status: 400 });
    },
    onAcked: (ids) => acked.push(ids),
    onError: (_e, retryInMs) => errors.push(retryInMs),
    delayMs: 5,
    batchSize: 10,
  });
  batcher.add("a");
  await waitFor(() => acked.length > 0, 2_000, () => "the retried batch");
  assert.deepEqual(acked, [["a"]], "retried after the 503");
  assert.ok((errors[0] ?? 0) >= 50, "honouring Retry-After");
  batcher.add("bad");
  await waitFor(() => errors.length === 2, 2_000, () => "the refusal");
  assert.equal(errors.length, 2);
  assert.equal(errors[1], undefined, "a 400 is not retried");
  assert.equal(batcher.size, 0);
  await batcher.close();
});
