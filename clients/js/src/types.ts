/** The shapes the client emits: what the stream carries and what happens to the connection. */

/** What the display part of a notification carries (as in FCM). */
export interface NotificationContent {
  title?: string;
  body?: string;
  image?: string;
}

/** An `event: notification` of the stream: one notification for this user. */
export interface Notification {
  /** The notification id; FCM messages carry the same id as `data.switchboard_id`. */
  id: string;
  /** String → string, as in FCM. */
  data?: Record<string, string>;
  notification?: NotificationContent;
  /** When the producer's request was accepted (unix milliseconds). */
  sent_at: number;
}

/** An `event: broadcast`: a message to every live subscriber of a topic (never sent by push). */
export interface Broadcast {
  id: string;
  topic: string;
  data: Record<string, unknown>;
  sent_at: number;
}

/**
 * `connecting`: opening a stream; `open`: the stream is up; `waiting`: backing off before the
 * next attempt; `closed`: `close()` was called, or the server refused for good (a fatal error).
 */
export type ConnectionState = "connecting" | "open" | "waiting" | "closed";

export interface OpenEvent {
  /** The Last-Event-ID this stream was opened with (the server replays what came after it). */
  lastEventId?: string;
}

/**
 * A notification dropped because its id was already seen (over the stream, from push, or by
 * another tab sharing the store). It is not to be shown again; a view may still use it.
 */
export interface DuplicateEvent {
  id: string;
  notification: Notification;
}

/** The server asked for a fresh token (the stream's token expired); the client reconnects. */
export type ReauthEvent = Record<string, never>;

/**
 * The server did not know the Last-Event-ID (too old, or from another deployment): what was
 * missed cannot be replayed, so the app should refetch its state from its own API.
 */
export type ResetEvent = Record<string, never>;

/** What failed: `http` (the server refused), `network`, `token` (the token getter threw), `ack`,
 * `store` (the de-dup store failed; the notification is shown rather than risk losing it),
 * `listener` (an event listener threw), `protocol` (an event the client could not parse). */
export type ErrorKind = "http" | "network" | "token" | "ack" | "store" | "listener" | "protocol";

export interface ClientError {
  kind: ErrorKind;
  message: string;
  /** HTTP status, when the server answered. */
  status?: number;
  /** The API's error code (`token_expired`, `too_many_streams`, …), when the server sent one. */
  code?: string;
  /** True when the client gave up: it is closed now (a 4xx that retrying cannot fix). */
  fatal: boolean;
  /** When the client tries again, if it does. */
  retryInMs?: number;
  cause?: unknown;
}

/** Every event a {@link SwitchboardClient} emits, by name. */
export interface ClientEvents {
  notification: Notification;
  broadcast: Broadcast;
  duplicate: DuplicateEvent;
  reset: ResetEvent;
  reauth: ReauthEvent;
  open: OpenEvent;
  error: ClientError;
  state: ConnectionState;
}
