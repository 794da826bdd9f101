/**
 * Test harness: the real `switchboard` binary (built by cargo) on a free port in its own temp
 * directory, fcm-mock over real HTTP, HS256 tokens, and typed producer calls.
 * Binaries: $SWITCHBOARD_BIN_DIR, else <repo>/target/debug (`npm test` builds them first).
 * Set TEST_LOG=1 to see the router's log.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const JWT_SECRET = "sdk-test-jwt-secret";
export const PRODUCER_KEY = "sdk-test-producer-key";
export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const BIN_DIR = process.env.SWITCHBOARD_BIN_DIR ?? join(process.env.CARGO_TARGET_DIR ?? join(REPO_ROOT, "target"), "debug");

export function binary(name: "switchboard" | "fcm-mock"): string {
  const path = join(BIN_DIR, name);
  if (!existsSync(path)) {
    throw new Error(
      `${path} is missing: run \`cargo build -p switchboard -p fcm-mock --bins\` at the repository root ` +
        "(npm test does), or set SWITCHBOARD_BIN_DIR",
    );
  }
  return path;
}

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "switchboard-sdk-"));
}

/** Mints a client token as the server's `token` command does (HS256, `sub`, `exp`). */
export function mintToken(user: string, ttlSecs: number, secret = JWT_SECRET, extra: Record<string, unknown> = {}): string {
  const b64 = (value: object | Buffer) =>
    (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000) + ttlSecs, ...extra })}`;
  return `${head}.${b64(createHmac("sha256", secret).update(head).digest())}`;
}

export function uniqueUser(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Fails with how to start Redis when nothing answers PING on 127.0.0.1:6379. */
export async function requireRedis(): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    const socket = connect(6379, "127.0.0.1");
    socket.setTimeout(2000);
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      resolve(d.toString().startsWith("+PONG"));
      socket.destroy();
    });
    socket.on("error", () => resolve(false));
    socket.on("timeout", () => {
      resolve(false);
      socket.destroy();
    });
  });
  if (!ok) {
    throw new Error(
      "Redis must answer on 127.0.0.1:6379: " +
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    );
  }
}

/** The environment of a node using Redis under a namespace of its own (records outlive a restart). */
export function redisEnv(): Record<string, string> {
  return {
    SWITCHBOARD__BROKER__KIND: "redis",
    SWITCHBOARD__BROKER__REDIS_URL: "redis://127.0.0.1:6379",
    SWITCHBOARD__BROKER__NAMESPACE: `sdk-${randomUUID().slice(0, 12)}`,
  };
}

export interface NodeOptions {
  /** Extra SWITCHBOARD__* variables. */
  env?: Record<string, string>;
}

/** One `switchboard serve` process; `stop()` then `start()` brings it back on the same port. */
export class SwitchboardNode {
  readonly dir = tempDir();
  url = "";
  logs: string[] = [];
  private child: ChildProcess | undefined;
  private port = 0;

  constructor(private readonly options: NodeOptions = {}) {}

  static async start(options: NodeOptions = {}): Promise<SwitchboardNode> {
    const node = new SwitchboardNode(options);
    await node.start();
    return node;
  }

  async start(): Promise<void> {
    const child = spawn(binary("switchboard"), ["serve"], {
      cwd: this.dir,
      stdio: ["ignore", "ignore", "pipe"],
      env: {
        ...process.env,
        RUST_LOG: "info,switchboard=debug",
        SWITCHBOARD__SERVER__LISTEN: `127.0.0.1:${this.port}`,
        SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECS: "3",
        SWITCHBOARD__AUTH__JWT_SECRET: JWT_SECRET,
        SWITCHBOARD__AUTH__PRODUCER_KEYS: `[${PRODUCER_KEY}]`,
        SWITCHBOARD__STORE__URL: `sqlite://${this.dir}/switchboard.db?mode=rwc`,
        // The client backs off from the server's retry: keep restarts quick.
        SWITCHBOARD__SSE__RETRY_MS: "200",
        ...this.options.env,
      },
    });
    children.add(child);
    this.child = child;
    this.url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`switchboard did not start in 30 s:\n${this.logs.join("\n")}`)), 30_000);
      let partial = "";
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          this.logs.push(line);
          if (process.env.TEST_LOG) console.error(`[switchboard] ${line}`);
          const found = /listening on (http:\/\/\S+)/.exec(line);
          if (found) {
            clearTimeout(timer);
            resolve(found[1]!);
          }
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`switchboard exited with ${code}:\n${this.logs.join("\n")}`));
      });
    });
    this.port = Number(new URL(this.url).port);
  }

  /** SIGTERM (streams get `event: shutdown`), and waits for the exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(killer);
    children.delete(child);
    this.child = undefined;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async notify(userId: string, body: Record<string, unknown> = {}): Promise<{ id: string; route: string }> {
    const request = { user_id: userId, data: { n: "1" }, ...body };
    return (await this.producer("POST", "/v1/notify", request)) as { id: string; route: string };
  }

  async broadcast(topic: string, data: Record<string, unknown>): Promise<{ id: string }> {
    return (await this.producer("POST", "/v1/broadcast", { topic, data })) as { id: string };
  }

  async status(id: string): Promise<string> {
    return ((await this.producer("GET", `/v1/notifications/${id}`)) as { status: string }).status;
  }

  /** Polls the notification's record until it says `status`. */
  async waitStatus(id: string, status: string, withinMs = 10_000): Promise<void> {
    let last = "";
    const reached = async () => (last = await this.status(id)) === status;
    await waitFor(reached, withinMs, () => `notification ${id} to be ${status} (it is ${last})`);
  }

  async metrics(): Promise<string> {
    const response = await fetch(`${this.url}/metrics`);
    return response.text();
  }

  private async producer(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${PRODUCER_KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return JSON.parse(text);
  }
}

/** fcm-mock on a port of its own, with a service-account key whose token_uri points at it. */
export class FcmMock {
  readonly dir = tempDir();
  readonly keyPath = join(this.dir, "service-account.json");
  url = "";
  private child: ChildProcess | undefined;

  static async start(): Promise<FcmMock> {
    const mock = new FcmMock();
    const port = await freePort();
    mock.url = `http://127.0.0.1:${port}`;
    await run(binary("fcm-mock"), ["gen-key", "--out", mock.keyPath, "--mock-url", mock.url]);
    const child = spawn(binary("fcm-mock"), ["--listen", `127.0.0.1:${port}`, "--service-account", mock.keyPath], {
      stdio: ["ignore", "ignore", process.env.TEST_LOG ? "inherit" : "ignore"],
    });
    children.add(child);
    mock.child = child;
    const answers = async () => (await fetch(`${mock.url}/_mock/stats`).catch(() => undefined))?.ok === true;
    await waitFor(answers, 10_000, () => "fcm-mock to answer");
    return mock;
  }

  /** The router's environment for sending to this mock. */
  env(): Record<string, string> {
    return { SWITCHBOARD__FCM__SERVICE_ACCOUNT: this.keyPath, SWITCHBOARD__FCM__ENDPOINT: this.url };
  }

  /** The messages it accepted (each with `message.data`). */
  async messages(): Promise<Array<{ message: { token?: string; data?: Record<string, string> } }>> {
    const response = await fetch(`${this.url}/_mock/messages`);
    return ((await response.json()) as { messages: Array<{ message: { data?: Record<string, string> } }> }).messages;
  }

  async dispose(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    if (child) children.delete(child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"] });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited with ${code}`))));
  });
}

/** Polls `check` every 25 ms until it holds; fails after `withinMs` saying what it waited for. */
export async function waitFor(check: () => boolean | Promise<boolean>, withinMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms waiting for ${what()}`);
    await sleep(25);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
