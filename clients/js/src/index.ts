/**
 * @switchboard/client: a device's connection to Switchboard. One Server-Sent Events stream
 * with acks, replay from `Last-Event-ID`, token refresh, backoff with jitter, and
 * de-duplication across the stream and push (FCM's `data.switchboard_id`).
 *
 * No runtime dependency: it uses `fetch` (browsers, service workers, Node ≥ 18) and, in
 * browsers, IndexedDB for the ids it has seen.
 */

export { SwitchboardClient, defaultStore, type ClientOptions } from "./client.js";
export type {
  Broadcast,
  ClientError,
  ClientEvents,
  ConnectionState,
  DuplicateEvent,
  ErrorKind,
  Notification,
  NotificationContent,
  OpenEvent,
  ReauthEvent,
  ResetEvent,
} from "./types.js";
export {
  isNewPush,
  pushNotificationId,
  MemoryDedupStore,
  DEFAULT_MAX_IDS,
  DEFAULT_TTL_MS,
  type DedupLimits,
  type DedupStore,
} from "./dedup.js";
export { IndexedDbDedupStore, type IndexedDbDedupOptions } from "./dedup-idb.js";
export { registerDevice, unregisterDevice, type DeviceRecord, type DeviceRegistration } from "./devices.js";
export { SwitchboardError, type ApiContext } from "./http.js";
export { fetchTransport, DEFAULT_IDLE_TIMEOUT_MS, type FetchTransportOptions } from "./fetch-transport.js";
export { eventSourceTransport, type EventSourceConstructor, type EventSourceLike } from "./eventsource-transport.js";
export type { StreamEnd, StreamHandle, StreamHandlers, StreamRequest, Transport } from "./transport.js";
export { SseParser, type SseEvent, type SseSink } from "./sse.js";
export { jwtClaims, refreshMarginMs, type TokenClaims, type TokenGetter } from "./token.js";
export { backoffDelay, type BackoffPolicy } from "./backoff.js";
export { AckBatcher, MAX_ACK_BATCH, type AckBatcherOptions } from "./acks.js";
export type { Listener } from "./emitter.js";
