/**
 * The browser's de-dup store: IndexedDB, which a page and its service worker (same origin)
 * share. `mark` reads and writes in one readwrite transaction, and IndexedDB runs readwrite
 * transactions on a store one at a time across every context of the origin, so a push handled
 * by the service worker and the same notification arriving over the page's stream are shown once.
 */

import { DEFAULT_MAX_IDS, DEFAULT_TTL_MS, type DedupLimits, type DedupStore } from "./dedup.js";

export interface IndexedDbDedupOptions extends DedupLimits {
  /** The database's name; the page and its service worker must use the same one. */
  dbName?: string;
  /** Defaults to the global `indexedDB`. */
  factory?: IDBFactory;
}

const SEEN = "seen";
const CURSORS = "cursors";
/** Prune (TTL, then cap) once every this many marks, not on each. */
const PRUNE_EVERY = 64;

interface SeenRecord {
  id: string;
  at: number;
}

export class IndexedDbDedupStore implements DedupStore {
  private readonly dbName: string;
  private readonly factory: IDBFactory;
  private readonly maxIds: number;
  private readonly ttlMs: number;
  private db: Promise<IDBDatabase> | undefined;
  private marksSincePrune = PRUNE_EVERY;

  constructor(options: IndexedDbDedupOptions = {}) {
    this.dbName = options.dbName ?? "switchboard";
    this.factory = options.factory ?? indexedDB;
    this.maxIds = options.maxIds ?? DEFAULT_MAX_IDS;
    this.ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  }

  async mark(id: string): Promise<boolean> {
    const db = await this.open();
    if (++this.marksSincePrune >= PRUNE_EVERY) {
      this.marksSincePrune = 0;
      await this.prune(db);
    }
    const now = Date.now();
    return run<boolean>(db, [SEEN], "readwrite", (tx, answer) => {
      const seen = tx.objectStore(SEEN);
      seen.get(id).onsuccess = (e) => {
        const found = (e.target as IDBRequest<SeenRecord | undefined>).result;
        if (found && now - found.at < this.ttlMs) return answer(false);
        seen.put({ id, at: now } satisfies SeenRecord);
        answer(true);
      };
    });
  }

  async has(id: string): Promise<boolean> {
    const db = await this.open();
    return run<boolean>(db, [SEEN], "readonly", (tx, answer) => {
      tx.objectStore(SEEN).get(id).onsuccess = (e) => {
        const found = (e.target as IDBRequest<SeenRecord | undefined>).result;
        answer(found !== undefined && Date.now() - found.at < this.ttlMs);
      };
    });
  }

  async getCursor(key: string): Promise<string | undefined> {
    const db = await this.open();
    return run<string | undefined>(db, [CURSORS], "readonly", (tx, answer) => {
      tx.objectStore(CURSORS).get(key).onsuccess = (e) => {
        const value = (e.target as IDBRequest<unknown>).result;
        answer(typeof value === "string" ? value : undefined);
      };
    });
  }

  async setCursor(key: string, id: string | undefined): Promise<void> {
    const db = await this.open();
    await run<void>(db, [CURSORS], "readwrite", (tx, answer) => {
      const cursors = tx.objectStore(CURSORS);
      if (id === undefined) cursors.delete(key);
      else cursors.put(id, key);
      answer(undefined);
    });
  }

  /** Closes the database (another context may then upgrade it). */
  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    if (db) (await db).close();
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const request = this.factory.open(this.dbName, 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        db.createObjectStore(SEEN, { keyPath: "id" }).createIndex("at", "at");
        db.createObjectStore(CURSORS);
      };
      request.onsuccess = () => {
        const db = request.result;
        // A newer version opened elsewhere (another tab, the service worker): let it upgrade.
        db.onversionchange = () => {
          db.close();
          this.db = undefined;
        };
        resolve(db);
      };
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error(`IndexedDB ${this.dbName} is blocked by another connection`));
    }).catch((error: unknown) => {
      this.db = undefined;
      throw error;
    });
    return this.db;
  }

  /** Drops ids past their TTL, then the oldest beyond the cap. */
  private prune(db: IDBDatabase): Promise<void> {
    const cutoff = Date.now() - this.ttlMs;
    return run<void>(db, [SEEN], "readwrite", (tx, answer) => {
      const seen = tx.objectStore(SEEN);
      const byAge = seen.index("at");
      byAge.openCursor(IDBKeyRange.upperBound(cutoff)).onsuccess = (e) => {
        const cursor = (e.target as IDBRequest<IDBCursorWithValue | null>).result;
        if (cursor) {
          cursor.delete();
          return cursor.continue();
        }
        seen.count().onsuccess = (c) => {
          let excess = (c.target as IDBRequest<number>).result - this.maxIds;
          if (excess <= 0) return answer(undefined);
          byAge.openCursor().onsuccess = (o) => {
            const oldest = (o.target as IDBRequest<IDBCursorWithValue | null>).result;
            if (!oldest || excess-- <= 0) return answer(undefined);
            oldest.delete();
            oldest.continue();
          };
        };
      };
    });
  }
}

/**
 * Runs `body` in one transaction and resolves with what it answered once the transaction has
 * committed (so a `true` from `mark` is durable before the notification is shown).
 */
function run<T>(
  db: IDBDatabase,
  stores: string[],
  mode: IDBTransactionMode,
  body: (tx: IDBTransaction, answer: (value: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const tx = db.transaction(stores, mode);
    let value: T;
    tx.oncomplete = () => resolve(value);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    body(tx, (v) => {
      value = v;
    });
  });
}
