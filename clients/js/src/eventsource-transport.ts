/**
 * A transport over a WHATWG `EventSource`: the browser's own, or the `eventsource` npm package
 * under Node. EventSource cannot send headers, so the token and the resume point travel as
 * `?access_token=` and `?last_event_id=` (the server accepts both). It cannot show `retry:`
 * either, nor (the browser's) the status of a refusal; prefer {@link fetchTransport} where
 * `fetch` streams, and use this where it does not.
 */

import type { StreamEnd, StreamHandle, StreamHandlers, StreamRequest, Transport } from "./transport.js";

/** What the client uses of an EventSource. */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: MessageEvent & { code?: number; message?: string }) => void): void;
  close(): void;
}

export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** The event types the server sends (EventSource only reports the ones listened to). */
const EVENT_TYPES = ["notification", "broadcast", "reset", "reauth", "shutdown"] as const;

export function eventSourceTransport(EventSourceClass: EventSourceConstructor): Transport {
  return {
    open: (request, handlers) => openStream(EventSourceClass, request, handlers),
  };
}

function openStream(EventSourceClass: EventSourceConstructor, request: StreamRequest, handlers: StreamHandlers): StreamHandle {
  const url = new URL(request.url);
  url.searchParams.set("access_token", request.token);
  if (request.lastEventId) url.searchParams.set("last_event_id", request.lastEventId);
  const source = new EventSourceClass(url.toString());
  let done = false;
  let opened = false;

  const finish = (end: StreamEnd | null): void => {
    if (done) return;
    done = true;
    // EventSource would reconnect by itself, with its own Last-Event-ID and without backoff.
    source.close();
    if (end) handlers.closed(end);
  };

  source.addEventListener("open", () => {
    opened = true;
    if (!done) handlers.open();
  });
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (e) => {
      if (done) return;
      handlers.event({ type, data: typeof e.data === "string" ? e.data : "", id: e.lastEventId || undefined });
    });
  }
  source.addEventListener("error", (e) => {
    // The `eventsource` package reports the refusal's status as `code`; a browser says nothing.
    if (!opened && typeof e.code === "number" && e.code !== 200) {
      finish({ kind: "refused", status: e.code, message: e.message ?? `HTTP ${e.code}` });
    } else {
      finish({ kind: "failed", opened, error: e.message });
    }
  });
  return { close: () => finish(null) };
}
