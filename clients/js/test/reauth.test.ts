/**
 * `event: reauth`: when a stream's token expires the server says so and closes the stream; the
 * client fetches a fresh token and resumes with `Last-Event-ID`. This needs the server side of
 * reauth (from the edge-auth branch on); against a server without it, the test fails waiting
 * for the event.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { MemoryDedupStore, SwitchboardClient } from "@switchboard/client";

import { mintToken, SwitchboardNode, uniqueUser, waitFor } from "./harness.js";
import { Recorder } from "./recorder.js";

test("reauth: a stream whose token expired resumes with a fresh token and loses nothing", async (t) => {
  const node = await SwitchboardNode.start();
  t.after(() => node.dispose());
  const user = uniqueUser("judy");
  const fetchedAt = new Map<string, number>();
  const streamRequests: Array<{ at: number; token: string }> = [];
  const recordingFetch: typeof fetch = (input, init) => {
    if (String(input).includes("/v1/events")) {
      const auth = (init?.headers as Record<string, string>).Authorization ?? "";
      streamRequests.push({ at: Date.now(), token: auth.replace("Bearer ", "") });
    }
    return fetch(input, init);
  };
  const client = new SwitchboardClient({
    url: node.url,
    getToken: () => {
      const token = mintToken(user, 2, undefined, { jti: randomUUID() }); // distinct within a second
      fetchedAt.set(token, Date.now());
      return token;
    },
    deviceId: "phone",
    store: new MemoryDedupStore(),
    fetch: recordingFetch,
  });
  const rec = new Recorder(client);
  let reauthAt = 0;
  client.on("reauth", () => {
    reauthAt ||= Date.now();
  });
  t.after(() => client.close());
  await waitFor(() => rec.opens.length === 1, 10_000, () => rec.summary());
  const first = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(first), 10_000, () => rec.summary());

  // Two-second tokens; the server may allow some leeway past `exp` before it sends reauth.
  await waitFor(() => rec.reauths >= 1, 20_000, () => `event: reauth from the server: ${rec.summary()}`);
  await waitFor(() => rec.opens.length >= 2, 10_000, () => `a new stream after reauth: ${rec.summary()}`);
  const reconnect = streamRequests.find((r) => r.at >= reauthAt);
  assert.ok(reconnect, "a stream request after reauth");
  assert.ok((fetchedAt.get(reconnect.token) ?? 0) >= reauthAt, "with a token fetched on reauth");
  assert.equal(rec.opens[1]?.lastEventId, first, "resumed after the last notification");

  const second = (await node.notify(user)).id;
  await waitFor(() => rec.ids().includes(second), 10_000, () => rec.summary());
  assert.deepEqual(rec.ids(), [first, second]);
  assert.equal(rec.resets, 0);
  for (const id of [first, second]) await node.waitStatus(id, "acked");
});
