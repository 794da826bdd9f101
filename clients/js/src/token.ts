/**
 * The client's token: fetched from the app's getter, kept while it is good, and fetched afresh
 * before its `exp` (read from the JWT's payload, never verified: the server does that).
 */

/** Returns a client JWT (typically from the app's own backend). */
export type TokenGetter = () => string | Promise<string>;

/** The claims the client reads from a JWT without verifying it. */
export interface TokenClaims {
  sub?: string;
  /** Expiry, unix seconds. */
  exp?: number;
}

/** Decodes a JWT's payload (no verification); `undefined` when it is not a JWT. */
export function jwtClaims(token: string): TokenClaims | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const out: TokenClaims = {};
    if (typeof claims.sub === "string") out.sub = claims.sub;
    if (typeof claims.exp === "number") out.exp = claims.exp;
    return out;
  } catch {
    return undefined;
  }
}

/**
 * How long before `exp` to fetch the next token: a fifth of the token's life, between 1 s and
 * 60 s (a one-hour token is renewed a minute early; a ten-second one two seconds early).
 */
export function refreshMarginMs(lifetimeMs: number): number {
  return Math.min(60_000, Math.max(1_000, lifetimeMs / 5));
}

/** A failed scheduled refresh is retried after 2 s, doubling up to a minute. */
const REFRESH_RETRY_MS = 2_000;
const REFRESH_RETRY_MAX_MS = 60_000;

export class TokenSource {
  private token: string | undefined;
  private claims: TokenClaims | undefined;
  /** When to fetch the next one (ms); undefined: the token has no `exp`, keep it until a 401. */
  private refreshAt: number | undefined;
  private inflight: Promise<string> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private refreshFailures = 0;
  private closed = false;

  constructor(
    private readonly getter: TokenGetter,
    private readonly onRefreshError: (error: unknown) => void,
  ) {}

  /** The user the token speaks for (`sub`), once a token was fetched. */
  get subject(): string | undefined {
    return this.claims?.sub;
  }

  /** A token that is not about to expire: the cached one, or a fresh one. */
  current(): Promise<string> {
    if (this.token !== undefined && (this.refreshAt === undefined || Date.now() < this.refreshAt)) {
      return Promise.resolve(this.token);
    }
    return this.fresh();
  }

  /** Calls the getter (once for concurrent callers) and schedules the next refresh. */
  fresh(): Promise<string> {
    this.inflight ??= this.fetch().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private async fetch(): Promise<string> {
    const fetchedAt = Date.now();
    const token = await this.getter();
    if (typeof token !== "string" || token === "") throw new Error("the token getter returned no token");
    this.token = token;
    this.claims = jwtClaims(token);
    const exp = this.claims?.exp;
    this.refreshAt = exp === undefined ? undefined : exp * 1000 - refreshMarginMs(exp * 1000 - fetchedAt);
    this.schedule();
    return token;
  }

  /** Fetches the next token ahead of time, so acks and reconnects never wait for one. */
  private schedule(delayMs?: number): void {
    clearTimeout(this.timer);
    if (this.closed || this.refreshAt === undefined) return;
    // At least a second apart, even if the getter hands out tokens that are already expiring.
    const delay = Math.max(1_000, delayMs ?? this.refreshAt - Date.now());
    this.timer = setTimeout(() => {
      this.fresh().then(
        () => {
          this.refreshFailures = 0;
        },
        (error: unknown) => {
          this.onRefreshError(error);
          this.schedule(Math.min(REFRESH_RETRY_MAX_MS, REFRESH_RETRY_MS * 2 ** this.refreshFailures++));
        },
      );
    }, delay);
  }
}
