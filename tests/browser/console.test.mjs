// The operator console in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against the real binary: logged in with #key=, it shows the 3 streams this
// test opens, sends a test notification from its form to one of those users, sees FCM sends
// avoided go up and its lookup say `delivered`; a wrong key and a producer key are refused.
// Writes test-output/console.png and test-output/console.log.
//
//   npm ci && npm test            # binaries: $SWITCHBOARD_BIN_DIR, else <repo>/target/debug
//
// Needs `cargo build --bin switchboard` first (.ci/run runs it after `cargo test`).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "..", "..");
const BIN_DIR = process.env.SWITCHBOARD_BIN_DIR ?? join(process.env.CARGO_TARGET_DIR ?? join(REPO, "target"), "debug");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = join(HERE, "test-output");
const JWT_SECRET = "console-browser-jwt-secret";
const PRODUCER_KEY = "console-browser-producer-key";
const OPERATOR_KEY = "console-browser-operator-key";
const WAIT_MS = 15_000;

/** An HS256 client token, as `switchboard token` makes it. */
function token(user) {
  const b64 = (v) => (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${head}.${b64(createHmac("sha256", JWT_SECRET).update(head).digest())}`;
}

/** The real binary on a free port, in a temporary directory; resolves once it listens. */
async function startNode(log) {
  const bin = join(BIN_DIR, "switchboard");
  assert.ok(existsSync(bin), `${bin} is missing: run \`cargo build --bin switchboard\` (or set SWITCHBOARD_BIN_DIR)`);
  const dir = mkdtempSync(join(tmpdir(), "switchboard-console-"));
  const child = spawn(bin, ["serve"], {
    cwd: dir,
    env: {
      ...process.env,
      SWITCHBOARD__SERVER__LISTEN: "127.0.0.1:0",
      SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECS: "2",
      SWITCHBOARD__AUTH__JWT_SECRET: JWT_SECRET,
      SWITCHBOARD__AUTH__PRODUCER_KEYS: `[${PRODUCER_KEY}]`,
      SWITCHBOARD__AUTH__OPERATOR_KEYS: `[${OPERATOR_KEY}]`,
      SWITCHBOARD__STORE__URL: `sqlite://${dir}/switchboard.db?mode=rwc`,
      RUST_LOG: "info",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`switchboard did not start:\n${buf}`)), 20_000);
    child.stderr.on("data", (d) => {
      buf += d;
      log.push(...String(d).trimEnd().split("\n").map((l) => `[switchboard] ${l}`));
      const m = /listening on (http:\/\/\S+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`switchboard exited (${code}):\n${buf}`)));
  });
  return {
    url,
    stop() {
      child.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A client's stream of `user`: reads events in the background, resolves once it is open. */
async function openStream(url, user) {
  const controller = new AbortController();
  const resp = await fetch(`${url}/v1/events?device_id=browser-test`, {
    headers: { Authorization: `Bearer ${token(user)}` },
    signal: controller.signal,
  });
  assert.equal(resp.status, 200, `stream of ${user}`);
  const events = [];
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let opened;
  const open = new Promise((resolve) => (opened = resolve));
  (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (block.startsWith("retry:")) opened();
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const id = /^id: (.*)$/m.exec(block)?.[1];
          if (event) events.push({ event, id });
        }
      }
    } catch {
      // aborted at the end of the test
    }
  })();
  await open;
  return { user, events, close: () => controller.abort() };
}

async function waitFor(check, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const last = await check();
    if (last.ok) return last;
    if (Date.now() > deadline) throw new Error(`${what}: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The text of the live figure named `name`. */
async function figure(page, name) {
  return page.locator(`[data-metric='${name}']`).first().textContent();
}

test("the console in Chromium: #key= login, 3 streams shown, a test notification delivered over a stream, wrong keys refused", async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  const log = [];
  const node = await startNode(log);
  t.after(() => node.stop());
  const users = [0, 1, 2].map((i) => `console-${i}-${randomUUID().slice(0, 8)}`);
  const streams = await Promise.all(users.map((u) => openStream(node.url, u)));
  t.after(() => streams.forEach((s) => s.close()));

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.on("console", (m) => log.push(`[page ${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[pageerror] ${e.message}`));
  const shown = {};
  try {
    // Logged in by the fragment, which the page then takes out of the address bar.
    await page.goto(`${node.url}/console#key=${encodeURIComponent(OPERATOR_KEY)}`);
    await waitFor(async () => {
      const v = await figure(page, "switchboard_sse_connections");
      return { ok: v === "3", v };
    }, "3 streams on the console");
    assert.equal(new URL(page.url()).hash, "", "the key is out of the address bar");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("switchboard.operatorKey")), OPERATOR_KEY);
    const avoidedBefore = Number(await figure(page, "fcm_sends_avoided"));

    // A test notification to the second user, from the form.
    await page.fill("#test-user", users[1]);
    await page.fill("#test-title", "browser test");
    await page.click("#test-form button");
    const id = (
      await waitFor(async () => {
        const v = await page.textContent("#test-id");
        return { ok: v !== "–", v };
      }, "the test notification's id")
    ).v;
    assert.equal(await page.textContent("#test-route"), "sse");
    await waitFor(async () => {
      const v = await page.textContent("#lookup-status");
      return { ok: v === "delivered", v };
    }, "the lookup saying delivered");
    const avoided = await waitFor(async () => {
      const v = Number(await figure(page, "fcm_sends_avoided"));
      return { ok: v > avoidedBefore, v };
    }, "FCM sends avoided going up");
    const received = streams[1].events.filter((e) => e.event === "notification").map((e) => e.id);
    assert.deepEqual(received, [id], "the second user's stream got it");
    assert.equal(streams[0].events.filter((e) => e.event === "notification").length, 0);
    await waitFor(async () => {
      const v = await figure(page, 'switchboard_notifications_total{route="sse"}');
      return { ok: v === "1", v };
    }, "one notification routed sse");
    assert.equal(avoided.v, avoidedBefore + 1);

    // Some traffic for the chart and the screenshot: producers' notifications to the three
    // users on streams, and to a user who has none (route none: FCM is off on this node).
    for (let i = 0; i < 40; i++) {
      const user = i % 4 === 3 ? "console-offline" : users[i % 3];
      const resp = await fetch(`${node.url}/v1/notify`, {
        method: "POST",
        headers: { Authorization: `Bearer ${PRODUCER_KEY}`, "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: user, data: { n: String(i) } }),
      });
      assert.equal(resp.status, 202);
      await new Promise((r) => setTimeout(r, 100 + (i % 7) * 30));
    }
    await waitFor(async () => {
      const v = await figure(page, 'switchboard_notifications_total{route="sse"}');
      return { ok: v === "31", v };
    }, "31 notifications routed sse");
    // A tick later, so the chart and per-second figures have caught up.
    await page.waitForTimeout(1500);
    for (const name of [
      "switchboard_sse_connections",
      "fcm_sends_avoided",
      "fcm_sends_avoided_share",
      'switchboard_notifications_total{route="sse"}',
      'switchboard_notifications_total{route="fcm"}',
      'switchboard_notifications_total{route="none"}',
      'switchboard_delivery_latency_seconds{quantile="0.5"}',
      'switchboard_delivery_latency_seconds{quantile="0.99"}',
      "switchboard_push_queue_depth",
      "switchboard_ack_timeouts_total",
      "disconnects_abnormal",
    ]) {
      shown[name] = await figure(page, name);
    }
    shown["lookup"] = await page.textContent("#lookup-status");
    shown["notification id"] = id;
    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, "console.png"), fullPage: true });

    // A wrong key, then a producer key: refused, the form back with the reason, no key kept.
    for (const [key, status] of [["not-the-key", "401"], [PRODUCER_KEY, "403"]]) {
      const other = await browser.newPage();
      await other.goto(`${node.url}/console#key=${encodeURIComponent(key)}`);
      const error = await waitFor(async () => {
        const v = await other.textContent("#login-error");
        return { ok: v.includes(`Refused (${status})`), v };
      }, `the ${status} refusal`);
      assert.equal(await other.isVisible("#login"), true);
      assert.equal(await other.isVisible("#board"), false);
      assert.equal(await other.evaluate(() => sessionStorage.getItem("switchboard.operatorKey")), null);
      shown[`refused ${status}`] = error.v;
      await other.close();
    }
  } finally {
    mkdirSync(OUTPUT, { recursive: true });
    writeFileSync(
      join(OUTPUT, "console.log"),
      [`figures shown: ${JSON.stringify(shown, null, 2)}`, ...log].join("\n") + "\n",
    );
  }
});
