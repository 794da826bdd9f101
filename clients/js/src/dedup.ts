/**
 * De-duplication across the stream and push: the ids already shown, in a store that the
 * stream's client and the app's push handler (a service worker, FCM's `onMessage`) share.
 */

/**
 * Where seen ids (and the stream's resume point) live. Implementations must make `mark` atomic
 * across everyone sharing the store: two callers marking the same id get `true` once.
 */
export interface DedupStore {
  /** Records `id` as seen; `true` when it was new (show it), `false` for a duplicate. */
  mark(id: string): Promise<boolean>;
  has(id: string): Promise<boolean>;
  /** The stream's resume point (an id), kept so that a reloaded page or restarted app resumes. */
  getCursor(key: string): Promise<string | undefined>;
  /** `undefined` forgets it (after `reset`). */
  setCursor(key: string, id: string | undefined): Promise<void>;
}

export interface DedupLimits {
  /** Most ids kept; the oldest go first. */
  maxIds?: number;
  /** How long an id is remembered. Keep it above the longest time a push can arrive late. */
  ttlMs?: number;
}

export const DEFAULT_MAX_IDS = 1000;
export const DEFAULT_TTL_MS = 24 * 3600 * 1000;

/** A store in this process's memory: for Node, tests, or a page that needs no persistence. */
export class MemoryDedupStore implements DedupStore {
  /** id → when it was seen; a Map iterates in insertion order, oldest first. */
  private readonly seen = new Map<string, number>();
  private readonly cursors = new Map<string, string>();
  private readonly maxIds: number;
  private readonly ttlMs: number;

  constructor(limits: DedupLimits = {}) {
    this.maxIds = limits.maxIds ?? DEFAULT_MAX_IDS;
    this.ttlMs = limits.ttlMs ?? DEFAULT_TTL_MS;
  }

  async mark(id: string): Promise<boolean> {
    this.prune(Date.now());
    if (this.seen.has(id)) return false;
    this.seen.set(id, Date.now());
    if (this.seen.size > this.maxIds) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return true;
  }

  async has(id: string): Promise<boolean> {
    this.prune(Date.now());
    return this.seen.has(id);
  }

  async getCursor(key: string): Promise<string | undefined> {
    return this.cursors.get(key);
  }

  async setCursor(key: string, id: string | undefined): Promise<void> {
    if (id === undefined) this.cursors.delete(key);
    else this.cursors.set(key, id);
  }

  private prune(now: number): void {
    for (const [id, at] of this.seen) {
      if (now - at < this.ttlMs) break;
      this.seen.delete(id);
    }
  }
}

/**
 * The Switchboard notification id a push message carries: FCM's `data.switchboard_id`, given
 * either the data map itself or a message holding it under `data` (a Web Push payload, FCM's
 * `RemoteMessage`-like objects).
 */
export function pushNotificationId(message: unknown): string | undefined {
  if (typeof message !== "object" || message === null) return undefined;
  const m = message as { switchboard_id?: unknown; data?: { switchboard_id?: unknown } };
  if (typeof m.switchboard_id === "string") return m.switchboard_id;
  if (typeof m.data?.switchboard_id === "string") return m.data.switchboard_id;
  return undefined;
}

/**
 * For the app's push handler: marks the push's notification id as seen and says whether to
 * show it (`false`: it already came over the stream, or in an earlier push). A message without
 * an id is not Switchboard's to judge: `true`.
 */
export async function isNewPush(message: unknown, store: DedupStore): Promise<boolean> {
  const id = pushNotificationId(message);
  return id === undefined ? true : store.mark(id);
}
