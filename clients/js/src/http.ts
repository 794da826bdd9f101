/** Calls to Switchboard's client API with the client's token, and the errors they answer. */

/** A refusal from the API (`{"error":{"code","message"}}`) or a failure to reach it. */
export class SwitchboardError extends Error {
  /** HTTP status; absent when the server could not be reached. */
  readonly status: number | undefined;
  /** The API's error code (`token_expired`, `overloaded`, …). */
  readonly code: string | undefined;
  /** The server's `Retry-After`, when it sent one and the browser lets us read it. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, init: { status?: number; code?: string; retryAfterMs?: number; cause?: unknown } = {}) {
    super(message);
    this.name = "SwitchboardError";
    this.status = init.status;
    this.code = init.code;
    this.retryAfterMs = init.retryAfterMs;
    if (init.cause !== undefined) (this as { cause?: unknown }).cause = init.cause;
  }

  /** Whether trying again later may succeed (network, 408, 429, 5xx). */
  get retryable(): boolean {
    const s = this.status;
    return s === undefined || s === 408 || s === 429 || s >= 500;
  }
}

/** `Retry-After` in milliseconds (seconds or an HTTP date), if present and sane. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const value = headers.get("retry-after");
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The error a non-2xx response stands for, reading the API's error body if there is one. */
export async function errorOf(response: Response): Promise<SwitchboardError> {
  let code: string | undefined;
  let message = `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body?.error?.code === "string") code = body.error.code;
    if (typeof body?.error?.message === "string") message = body.error.message;
  } catch {
    // Not the API's JSON (a proxy's page): the status says enough.
  }
  return new SwitchboardError(message, {
    status: response.status,
    code,
    retryAfterMs: retryAfterMs(response.headers),
  });
}

/** What an API call needs: where, how, and the token (with a way to force a fresh one). */
export interface ApiContext {
  baseUrl: string;
  fetch: typeof fetch;
  token(): Promise<string>;
  freshToken(): Promise<string>;
}

/**
 * One authenticated call. A 401 fetches a fresh token and tries once more (the token may have
 * expired in flight, or been revoked); any other failure is thrown as a {@link SwitchboardError}.
 */
export async function call(ctx: ApiContext, method: string, path: string, body?: unknown): Promise<Response> {
  let response = await send(ctx, method, path, body, await ctx.token());
  if (response.status === 401) {
    await response.body?.cancel();
    response = await send(ctx, method, path, body, await ctx.freshToken());
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function send(ctx: ApiContext, method: string, path: string, body: unknown, token: string): Promise<Response> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    return await ctx.fetch(`${ctx.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (cause) {
    throw new SwitchboardError(`cannot reach ${ctx.baseUrl}: ${String(cause)}`, { cause });
  }
}
