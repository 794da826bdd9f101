/**
 * The default transport: `fetch` with a streamed body, in browsers, workers and Node ≥ 18
 * alike. It sends the token and `Last-Event-ID` as headers (never in the URL, where logs keep
 * them), sees every status and `retry:`, and notices a silent connection by its missing pings.
 */

import { errorOf } from "./http.js";
import { SseParser } from "./sse.js";
import type { StreamEnd, StreamHandle, StreamHandlers, StreamRequest, Transport } from "./transport.js";

export interface FetchTransportOptions {
  fetch?: typeof fetch;
  /**
   * A stream that brings nothing (not even the server's `: ping`) for this long is taken as
   * dead and reopened. Keep it above twice the server's `sse.heartbeat_secs` (15 s by default).
   */
  idleTimeoutMs?: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 45_000;

export function fetchTransport(options: FetchTransportOptions = {}): Transport {
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  return {
    open(request, handlers) {
      const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
      return openStream(doFetch, idleTimeoutMs, request, handlers);
    },
  };
}

function openStream(
  doFetch: typeof fetch,
  idleTimeoutMs: number,
  request: StreamRequest,
  handlers: StreamHandlers,
): StreamHandle {
  const abort = new AbortController();
  let done = false;
  let opened = false;
  let lastActivity = Date.now();
  const watchdog = setInterval(() => {
    if (Date.now() - lastActivity > idleTimeoutMs) {
      finish({ kind: "failed", opened, error: new Error(`no data for ${idleTimeoutMs} ms`) });
    }
  }, Math.max(250, Math.floor(idleTimeoutMs / 4)));

  function finish(end: StreamEnd | null): void {
    if (done) return;
    done = true;
    clearInterval(watchdog);
    abort.abort();
    if (end) handlers.closed(end);
  }

  const headers: Record<string, string> = {
    Accept: "text/event-stream",
    Authorization: `Bearer ${request.token}`,
  };
  if (request.lastEventId) headers["Last-Event-ID"] = request.lastEventId;

  (async () => {
    const response = await doFetch(request.url, { headers, signal: abort.signal, cache: "no-store" });
    if (done) return;
    const type = response.headers.get("content-type") ?? "";
    if (response.status === 200 && (!response.body || !type.startsWith("text/event-stream"))) {
      // A proxy's or captive portal's page, not the router: try again later.
      await response.body?.cancel();
      const error = new Error(`HTTP 200 with ${type || "no content type"}, not an event stream`);
      return finish({ kind: "failed", opened: false, error });
    }
    if (response.status !== 200 || !response.body) {
      const error = await errorOf(response);
      const end: StreamEnd = { kind: "refused", status: response.status, message: error.message };
      if (error.code !== undefined) end.code = error.code;
      if (error.retryAfterMs !== undefined) end.retryAfterMs = error.retryAfterMs;
      return finish(end);
    }
    opened = true;
    lastActivity = Date.now();
    handlers.open();
    const parser = new SseParser({
      event: (e) => {
        if (!done) handlers.event(e);
      },
      retry: (ms) => {
        if (!done) handlers.retry(ms);
      },
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done: ended, value } = await reader.read();
      if (done) return;
      if (ended) break;
      lastActivity = Date.now();
      parser.push(decoder.decode(value, { stream: true }));
    }
    finish({ kind: "failed", opened: true });
  })().catch((error: unknown) => finish({ kind: "failed", opened, error }));

  return { close: () => finish(null) };
}
