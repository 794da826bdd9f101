/** What the client needs from a way of holding one stream open: the `Transport` contract. */

import type { SseEvent } from "./sse.js";

/** One attempt to open the stream. */
export interface StreamRequest {
  /** `…/v1/events?device_id=…&topics=…&ack=true`, without credentials. */
  url: string;
  token: string;
  /** Replay what came after this id. */
  lastEventId?: string;
}

/** How a stream attempt ended (reported once; never after the client closed it). */
export type StreamEnd =
  /** The server answered something other than a stream. */
  | {
      kind: "refused";
      status: number;
      code?: string;
      message?: string;
      /** `Retry-After`, when the transport can see it (a browser sees it only if CORS exposes it). */
      retryAfterMs?: number;
    }
  /** The connection failed or ended; `opened` says whether the stream had started. */
  | { kind: "failed"; opened: boolean; error?: unknown };

export interface StreamHandlers {
  /** The server answered 200 with a stream. */
  open(): void;
  event(event: SseEvent): void;
  /** The server's `retry:` (the base of the client's backoff). */
  retry(ms: number): void;
  closed(end: StreamEnd): void;
}

export interface StreamHandle {
  /** Ends the stream; no handler is called afterwards. */
  close(): void;
}

/** Opens one stream and reports on it; it never reconnects by itself (the client does). */
export interface Transport {
  open(request: StreamRequest, handlers: StreamHandlers): StreamHandle;
}
