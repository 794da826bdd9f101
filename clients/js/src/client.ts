/**
 * The client: holds one stream open for a device, reconnects with `Last-Event-ID` and backoff,
 * keeps its token fresh, acks what it received, drops what it already saw, and tells the app.
 */

import { AckBatcher } from "./acks.js";
import { backoffDelay } from "./backoff.js";
import { isNewPush, MemoryDedupStore, type DedupStore } from "./dedup.js";
import { IndexedDbDedupStore } from "./dedup-idb.js";
import { registerDevice, unregisterDevice, type DeviceRecord, type DeviceRegistration } from "./devices.js";
import { Emitter } from "./emitter.js";
import { fetchTransport } from "./fetch-transport.js";
import { call, SwitchboardError, type ApiContext } from "./http.js";
import type { SseEvent } from "./sse.js";
import { TokenSource, type TokenGetter } from "./token.js";
import type { StreamEnd, StreamHandle, Transport } from "./transport.js";
import type { Broadcast, ClientError, ClientEvents, ConnectionState, Notification } from "./types.js";

export interface ClientOptions {
  /** Where Switchboard (or its load balancer) answers, e.g. `https://push.example.com`. */
  url: string;
  /** Returns a client JWT; called at start, before each token's `exp`, on `reauth` and on 401. */
  getToken: TokenGetter;
  /** This device's id (`[A-Za-z0-9._:-]{1,128}`): a new stream of the same device replaces the old one. */
  deviceId?: string;
  topics?: string[];
  /** Confirm receipt with `POST /v1/ack` (default `true`); unacked notifications go to push. */
  ack?: boolean;
  /** Seen ids and the resume point. Default: IndexedDB where there is one, else memory. */
  store?: DedupStore;
  /** Resume from this id (default: the store's saved resume point for this user and device). */
  lastEventId?: string;
  /** How to hold the stream. Default: `fetchTransport()` (see also `eventSourceTransport`). */
  transport?: Transport;
  /** For acks and devices, and the default transport. */
  fetch?: typeof fetch;
  /** Wait this long for more ids before sending an ack (default 200 ms). */
  ackDelayMs?: number;
  /** Send an ack as soon as this many ids wait (default 100, at most 1000). */
  ackBatchSize?: number;
  /** The backoff's base until the server's `retry:` arrives (default 1000 ms). */
  retryMs?: number;
  /** The longest wait between two attempts (default 30 s). */
  maxBackoffMs?: number;
}

/** A stream that stayed open this long was healthy: the next failure backs off from the base. */
const STABLE_MS = 10_000;

export class SwitchboardClient extends Emitter<ClientEvents> {
  /** The de-dup store (share it with the push handler, or call {@link handlePush}). */
  readonly store: DedupStore;
  private readonly options: ClientOptions;
  private readonly tokens: TokenSource;
  private readonly api: ApiContext;
  private readonly acks: AckBatcher | undefined;
  private readonly transport: Transport;
  private readonly streamUrl: string;
  private currentState: ConnectionState = "connecting";
  /** The id of the last notification received: where a reconnect resumes. */
  private lastId: string | undefined;
  private resumeLoaded = false;
  private conn: StreamHandle | undefined;
  /** Counts attempts; callbacks of an older attempt are ignored. */
  private generation = 0;
  private failures = 0;
  private unauthorized = 0;
  private refreshTokenNext = false;
  private retryBase: number;
  private openedAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Events are handled one after another (the store is asynchronous), in stream order. */
  private queue: Promise<void> = Promise.resolve();

  /** Starts connecting at once; events are emitted asynchronously, so attach listeners now. */
  constructor(options: ClientOptions) {
    super();
    this.options = options;
    const baseUrl = options.url.replace(/\/+$/, "");
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.store = options.store ?? defaultStore();
    this.tokens = new TokenSource(options.getToken, (cause) =>
      this.emitError({ kind: "token", message: `refreshing the token failed: ${String(cause)}`, fatal: false, cause }),
    );
    this.api = {
      baseUrl,
      fetch: doFetch,
      token: () => this.tokens.current(),
      freshToken: () => this.tokens.fresh(),
    };
    this.transport = options.transport ?? fetchTransport({ fetch: doFetch });
    this.retryBase = options.retryMs ?? 1000;
    const query = new URLSearchParams();
    if (options.deviceId) query.set("device_id", options.deviceId);
    if (options.topics?.length) query.set("topics", options.topics.join(","));
    if (options.ack !== false) {
      query.set("ack", "true");
      this.acks = new AckBatcher({
        send: async (ids) => void (await call(this.api, "POST", "/v1/ack", { ids })),
        onAcked: (ids) => this.saveCursor(ids[ids.length - 1]),
        onError: (error, retryInMs) => this.emitError(errorFrom("ack", error, retryInMs)),
        delayMs: options.ackDelayMs ?? 200,
        batchSize: options.ackBatchSize ?? 100,
      });
    }
    this.streamUrl = `${baseUrl}/v1/events?${query}`;
    void this.attempt();
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** Where the next stream resumes (the last notification received). */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  /**
   * For the app's push handler (FCM `onMessage`, a Web Push event): marks the push's
   * `switchboard_id` as seen; `true` means show it, `false` that it was already shown.
   */
  handlePush(message: unknown): Promise<boolean> {
    return isNewPush(message, this.store);
  }

  /** Registers this device's push token (so the user gets pushes while no stream is open). */
  registerDevice(registration: DeviceRegistration, deviceId = this.options.deviceId): Promise<DeviceRecord> {
    return registerDevice(this.api, requireDevice(deviceId), registration);
  }

  unregisterDevice(deviceId = this.options.deviceId): Promise<boolean> {
    return unregisterDevice(this.api, requireDevice(deviceId));
  }

  /** Closes the stream, sends the acks still pending, and stops every timer. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.conn?.close();
    this.conn = undefined;
    this.currentState = "closed";
    this.emit("state", "closed");
    await this.queue;
    await this.acks?.close();
    this.tokens.close();
  }

  private async attempt(): Promise<void> {
    const generation = ++this.generation;
    this.setState("connecting");
    let token: string;
    try {
      token = this.refreshTokenNext ? await this.tokens.fresh() : await this.tokens.current();
      this.refreshTokenNext = false;
    } catch (cause) {
      if (this.stale(generation)) return;
      return this.retryLater({ kind: "token", message: `the token getter failed: ${String(cause)}`, cause });
    }
    // What already arrived moves the resume point: let it.
    await this.queue;
    if (!this.resumeLoaded) await this.loadResumePoint();
    if (this.stale(generation)) return;
    const lastEventId = this.lastId;
    this.conn = this.transport.open(
      { url: this.streamUrl, token, lastEventId },
      {
        open: () => {
          if (!this.stale(generation)) this.opened(lastEventId);
        },
        event: (event) => {
          if (!this.stale(generation)) this.enqueue(() => this.handle(event, generation));
        },
        retry: (ms) => {
          this.retryBase = ms;
        },
        closed: (end) => {
          if (!this.stale(generation)) this.ended(end);
        },
      },
    );
  }

  private stale(generation: number): boolean {
    return this.closed || generation !== this.generation;
  }

  private opened(lastEventId: string | undefined): void {
    this.openedAt = Date.now();
    this.unauthorized = 0;
    this.setState("open");
    this.emit("open", lastEventId === undefined ? {} : { lastEventId });
  }

  private ended(end: StreamEnd): void {
    this.conn = undefined;
    if (end.kind === "failed") {
      if (end.opened && Date.now() - this.openedAt >= STABLE_MS) this.failures = 0;
      // A transport that cannot see statuses (a browser's EventSource) cannot tell a 401 either:
      // from the second refusal in a row, fetch a fresh token in case that was the reason.
      if (!end.opened && this.failures >= 1) this.refreshTokenNext = true;
      const why = end.opened ? "the stream ended" : "cannot open the stream";
      const detail = end.error === undefined ? "" : `: ${String(end.error)}`;
      return this.retryLater({ kind: "network", message: why + detail, cause: end.error });
    }
    const error = { kind: "http" as const, status: end.status, code: end.code, message: end.message ?? `HTTP ${end.status}` };
    if (end.status === 401) {
      // Expired or revoked: a fresh token at once; if a fresh one is refused too, back off.
      this.refreshTokenNext = true;
      if (++this.unauthorized === 1) {
        this.emitError({ ...error, fatal: false, retryInMs: 0 });
        return this.reconnect(0);
      }
      return this.retryLater(error);
    }
    if (end.status === 408 || end.status === 429 || end.status >= 500) return this.retryLater(error, end.retryAfterMs);
    // 400 (bad device id or topic), 403 (topic not allowed), 404: retrying cannot fix these.
    this.emitError({ ...error, fatal: true });
    void this.close();
  }

  private async handle(event: SseEvent, generation: number): Promise<void> {
    switch (event.type) {
      case "notification":
        return this.received(event);
      case "broadcast": {
        const broadcast = parse<Broadcast>(event.data);
        if (broadcast) this.emit("broadcast", broadcast);
        else this.emitError({ kind: "protocol", message: "a broadcast that is not JSON", fatal: false });
        return;
      }
      case "reset":
        // The server could not replay from our id: nothing to resume from until the next one.
        this.lastId = undefined;
        this.saveCursor(undefined);
        this.emit("reset", {});
        return;
      case "reauth":
        this.emit("reauth", {});
        if (generation !== this.generation) return;
        this.refreshTokenNext = true;
        return this.reconnect(0);
      case "shutdown":
        // The node is draining: confirm what we have, and go (through the same URL) elsewhere.
        this.acks?.flushNow();
        if (generation !== this.generation) return;
        this.failures = 0;
        return this.reconnect(0);
    }
  }

  private async received(event: SseEvent): Promise<void> {
    const notification = parse<Notification>(event.data);
    const id = typeof notification?.id === "string" ? notification.id : event.id;
    if (!notification || !id) {
      this.emitError({ kind: "protocol", message: "a notification without JSON or id", fatal: false });
      return;
    }
    this.lastId = id;
    let isNew = true;
    try {
      isNew = await this.store.mark(id);
    } catch (cause) {
      // Showing a notification twice beats losing it.
      this.emitError({ kind: "store", message: `the de-dup store failed: ${String(cause)}`, fatal: false, cause });
    }
    if (this.closed) return;
    if (isNew) this.emit("notification", notification);
    else this.emit("duplicate", { id, notification });
    // Duplicates are acked too: the server waits for the ack whichever channel showed it.
    if (this.acks) this.acks.add(id);
    else this.saveCursor(id);
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((cause: unknown) => {
      this.emitError({ kind: "listener", message: String(cause), fatal: false, cause });
    });
  }

  private retryLater(error: Omit<ClientError, "fatal" | "retryInMs">, atLeastMs = 0): void {
    const delay = Math.max(
      atLeastMs,
      backoffDelay({ baseMs: this.retryBase, maxMs: this.options.maxBackoffMs ?? 30_000 }, this.failures++),
    );
    this.emitError({ ...error, fatal: false, retryInMs: delay });
    this.reconnect(delay);
  }

  private reconnect(delayMs: number): void {
    this.conn?.close();
    this.conn = undefined;
    clearTimeout(this.timer);
    if (this.closed) return;
    if (delayMs <= 0) {
      void this.attempt();
      return;
    }
    this.generation++; // callbacks of the closed stream are stale from now on
    this.setState("waiting");
    this.timer = setTimeout(() => void this.attempt(), delayMs);
  }

  private async loadResumePoint(): Promise<void> {
    this.resumeLoaded = true;
    if (this.options.lastEventId !== undefined) {
      this.lastId = this.options.lastEventId;
      return;
    }
    const key = this.cursorKey();
    if (key === undefined) return;
    try {
      this.lastId = await this.store.getCursor(key);
    } catch (cause) {
      // Start live: what was missed went to push, or will show up in the app's own state.
      this.emitError({ kind: "store", message: `reading the resume point failed: ${String(cause)}`, fatal: false, cause });
    }
  }

  /**
   * Remembers where a later session resumes: the last acked id (with acks), so that one shown
   * but not acked yet is replayed, and dropped as a duplicate but acked then.
   */
  private saveCursor(id: string | undefined): void {
    const key = this.cursorKey();
    if (key === undefined) return;
    this.store.setCursor(key, id).catch((cause: unknown) => {
      this.emitError({ kind: "store", message: `saving the resume point failed: ${String(cause)}`, fatal: false, cause });
    });
  }

  private cursorKey(): string | undefined {
    const user = this.tokens.subject;
    return user === undefined ? undefined : `${this.streamUrl.split("?")[0]}|${user}|${this.options.deviceId ?? ""}`;
  }

  private setState(state: ConnectionState): void {
    if (this.closed || state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private emitError(error: ClientError): void {
    this.emit("error", error);
  }

  protected override listenerFailed(type: keyof ClientEvents, cause: unknown): void {
    if (type === "error") console.error(cause);
    else this.emitError({ kind: "listener", message: `a ${String(type)} listener threw: ${String(cause)}`, fatal: false, cause });
  }
}

/** IndexedDB where the platform has it (browsers, service workers), else memory. */
export function defaultStore(): DedupStore {
  return typeof indexedDB === "undefined" ? new MemoryDedupStore() : new IndexedDbDedupStore();
}

function parse<T>(data: string): T | undefined {
  try {
    return JSON.parse(data) as T;
  } catch {
    return undefined;
  }
}

function errorFrom(kind: ClientError["kind"], error: SwitchboardError, retryInMs: number | undefined): ClientError {
  const out: ClientError = { kind, message: error.message, fatal: false, cause: error };
  if (error.status !== undefined) out.status = error.status;
  if (error.code !== undefined) out.code = error.code;
  if (retryInMs !== undefined) out.retryInMs = retryInMs;
  return out;
}

function requireDevice(deviceId: string | undefined): string {
  if (!deviceId) throw new SwitchboardError("no device id: pass one, or set deviceId in the client's options");
  return deviceId;
}
