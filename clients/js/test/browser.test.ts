/**
 * The SDK in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), in a
 * page served from another origin than the API: it receives and acks, follows a node restart,
 * and after a reload drops the replayed copy of what it had shown (IndexedDB de-dup).
 * Writes test-output/browser.png and test-output/browser.log.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join, normalize } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium, type Page } from "playwright-core";

import { mintToken, redisEnv, requireRedis, SwitchboardNode, uniqueUser, waitFor } from "./harness.js";

const PACKAGE = fileURLToPath(new URL("../../", import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const OUTPUT = join(PACKAGE, "test-output");

interface PageRecord {
  shown: string[];
  duplicates: string[];
  opens: Array<{ lastEventId?: string }>;
  resets: number;
  errors: string[];
  states: string[];
  store: string;
}

/** The app's side: the test page, the built SDK under /sdk/, and a token endpoint. */
async function startPageServer(): Promise<{ server: Server; origin: string }> {
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://page");
    if (url.pathname === "/favicon.ico") {
      res.writeHead(204);
      return res.end();
    }
    if (url.pathname === "/token") {
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" });
      return res.end(mintToken(url.searchParams.get("user") ?? "", 3600));
    }
    const path = url.pathname.startsWith("/sdk/")
      ? join(PACKAGE, "dist", normalize(url.pathname.slice(5)))
      : join(PACKAGE, "test", "browser", url.pathname === "/" ? "index.html" : normalize(url.pathname));
    if (!path.startsWith(PACKAGE) || !existsSync(path)) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(readFileSync(path));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { server, origin: `http://127.0.0.1:${port}` };
}

async function record(page: Page): Promise<PageRecord> {
  return page.evaluate(() => (window as unknown as { sb: PageRecord }).sb);
}

/** The resume points the SDK keeps in the page's IndexedDB. */
async function cursors(page: Page): Promise<string[]> {
  return page.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const open = indexedDB.open("switchboard");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const all = open.result.transaction("cursors").objectStore("cursors").getAll();
          all.onsuccess = () => {
            open.result.close();
            resolve(all.result as string[]);
          };
        };
      }),
  );
}

async function waitPage(page: Page, check: (r: PageRecord) => boolean, what: string): Promise<PageRecord> {
  let last: PageRecord | undefined;
  await waitFor(async () => check((last = await record(page))), 15_000, () => `${what}: ${JSON.stringify(last)}`);
  return last!;
}

test("in Chromium, from another origin: received, acked, through a node restart and a reload, none lost or repeated", async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  await requireRedis();
  const { server, origin } = await startPageServer();
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const node = await SwitchboardNode.start({ env: { ...redisEnv(), SWITCHBOARD__SERVER__CORS_ORIGINS: `[${origin}]` } });
  t.after(() => node.dispose());
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
  const page = await browser.newPage({ viewport: { width: 900, height: 520 } });
  const console: string[] = [];
  page.on("console", (m) => console.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.push(`[pageerror] ${e.message}`));
  const user = uniqueUser("web");
  const pageUrl = (ackDelayMs?: number) =>
    `${origin}/?api=${encodeURIComponent(node.url)}&user=${user}${ackDelayMs ? `&ackDelayMs=${ackDelayMs}` : ""}`;
  const shown: string[] = [];

  try {
    // 1. Receive and ack, cross-origin, with the browser's own store.
    await page.goto(pageUrl());
    let r = await waitPage(page, (x) => x.opens.length === 1, "the stream to open");
    assert.equal(r.store, "IndexedDbDedupStore");
    const n1 = (await node.notify(user, { data: { step: "1" } })).id;
    const n2 = (await node.notify(user, { data: { step: "2" } })).id;
    await waitPage(page, (x) => x.shown.length === 2, "two notifications");
    for (const id of [n1, n2]) await node.waitStatus(id, "acked");

    // 2. The node stops (event: shutdown) and comes back on the same port: resumed after n2.
    await node.stop();
    await node.start();
    r = await waitPage(page, (x) => x.opens.length === 2, "the stream back on the restarted node");
    assert.deepEqual(r.opens[1], { lastEventId: n2 });
    const n3 = (await node.notify(user, { data: { step: "3" } })).id;
    r = await waitPage(page, (x) => x.shown.length === 3, "the notification after the restart");
    await node.waitStatus(n3, "acked");
    await waitFor(async () => (await cursors(page)).includes(n3), 5_000, () => "n3 kept as the resume point");
    assert.deepEqual(r.shown, [n1, n2, n3]);
    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, "browser-restart.png") });
    shown.push(...r.shown);

    // 3. The app loads again (resuming from IndexedDB), shows n4 and goes away before acking it.
    await page.goto(pageUrl(60_000));
    r = await waitPage(page, (x) => x.opens.length === 1, "the reloaded page's stream");
    assert.deepEqual(r.opens[0], { lastEventId: n3 }, "resumed from the last acked id kept in IndexedDB");
    const n4 = (await node.notify(user, { data: { step: "4" } })).id;
    r = await waitPage(page, (x) => x.shown.length === 1, "n4 on the reloaded page");
    shown.push(...r.shown);
    assert.equal(await node.status(n4), "delivered", "shown, not acked");

    // 4. Loaded once more: the replay brings n4 again; IndexedDB knows it; it is acked, not shown.
    await page.goto(pageUrl());
    r = await waitPage(page, (x) => x.duplicates.length === 1, "the replayed n4 dropped");
    assert.deepEqual(r.opens[0], { lastEventId: n3 });
    assert.deepEqual(r.duplicates, [n4]);
    await node.waitStatus(n4, "acked");
    const n5 = (await node.notify(user, { data: { step: "5" } })).id;
    r = await waitPage(page, (x) => x.shown.length === 1, "n5");
    await node.waitStatus(n5, "acked");
    shown.push(...r.shown);

    assert.deepEqual(shown, [n1, n2, n3, n4, n5], "every notification shown once, in order");
    assert.equal(r.resets, 0);
  } finally {
    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, "browser.png") }).catch(() => undefined);
    const final = await record(page).catch(() => undefined);
    writeFileSync(
      join(OUTPUT, "browser.log"),
      [`shown across page loads: ${JSON.stringify(shown)}`, `last page: ${JSON.stringify(final)}`, ...console].join("\n") + "\n",
    );
  }
});
