/**
 * Confirming receipt: ids are collected and sent as `POST /v1/ack {"ids":[…]}`, at most 1000
 * per request (the server's limit), after a short delay or as soon as a batch is full. One
 * request is in flight at a time, so batches are confirmed in the order they were received.
 */

import { backoffDelay } from "./backoff.js";
import { SwitchboardError } from "./http.js";

/** The server's limit on ids per `POST /v1/ack`. */
export const MAX_ACK_BATCH = 1000;

export interface AckBatcherOptions {
  /** Sends one batch; throws a {@link SwitchboardError} when it fails. */
  send(ids: string[]): Promise<void>;
  /** After a batch was confirmed (in order). */
  onAcked(ids: string[]): void;
  onError(error: SwitchboardError, retryInMs: number | undefined): void;
  /** Wait this long for more ids before sending. */
  delayMs: number;
  /** Send as soon as this many ids wait (at most {@link MAX_ACK_BATCH}). */
  batchSize: number;
  /**
   * Attempts per batch for retryable failures (network, 429, 5xx). The default, 8, spans 12–24 s
   * of backoff: past the server's 10 s ack timeout, after which an ack no longer matters.
   */
  maxAttempts?: number;
}

const RETRY_POLICY = { baseMs: 250, maxMs: 8_000 };

export class AckBatcher {
  private pending: string[] = [];
  private pump: Promise<void> | undefined;
  /** Ends the wait for more ids early (a full batch, a flush). */
  private wake: (() => void) | undefined;
  /** Send without waiting for more ids, until nothing is pending. */
  private urgent = false;
  /** Closing: a failed batch is dropped rather than retried, so `close()` does not hang. */
  private closing = false;
  private failures = 0;
  private readonly batchSize: number;
  private readonly maxAttempts: number;

  constructor(private readonly options: AckBatcherOptions) {
    this.batchSize = Math.max(1, Math.min(MAX_ACK_BATCH, options.batchSize));
    this.maxAttempts = options.maxAttempts ?? 8;
  }

  /** How many ids wait to be confirmed. */
  get size(): number {
    return this.pending.length;
  }

  add(id: string): void {
    if (this.closing) return;
    this.pending.push(id);
    if (this.pending.length >= this.batchSize) this.wake?.();
    this.start();
  }

  /** Sends what is pending without waiting for more (the node is draining, say). */
  flushNow(): void {
    this.urgent = true;
    this.wake?.();
    this.start();
  }

  /** Sends what is pending, one attempt per batch, and takes no more ids. */
  async close(): Promise<void> {
    this.closing = true;
    this.flushNow();
    await this.pump;
  }

  private start(): void {
    this.pump ??= this.run().finally(() => {
      this.pump = undefined;
      this.urgent = false;
      if (this.pending.length > 0) this.start();
    });
  }

  private async run(): Promise<void> {
    while (this.pending.length > 0) {
      if (!this.urgent && this.pending.length < this.batchSize) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.options.delayMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
      const retryInMs = await this.send(this.pending.slice(0, this.batchSize));
      if (retryInMs !== undefined) await new Promise((resolve) => setTimeout(resolve, retryInMs));
    }
  }

  /** One request; answers when to try this batch again, or `undefined` when it is settled. */
  private async send(batch: string[]): Promise<number | undefined> {
    try {
      await this.options.send(batch);
    } catch (cause) {
      const error = cause instanceof SwitchboardError ? cause : new SwitchboardError(String(cause), { cause });
      this.failures++;
      if (!error.retryable || this.closing || this.failures >= this.maxAttempts) {
        this.settle(batch);
        this.options.onError(error, undefined);
        return undefined;
      }
      const retryInMs = Math.max(backoffDelay(RETRY_POLICY, this.failures - 1), error.retryAfterMs ?? 0);
      this.options.onError(error, retryInMs);
      return retryInMs;
    }
    this.settle(batch);
    this.options.onAcked(batch);
    return undefined;
  }

  private settle(batch: string[]): void {
    this.failures = 0;
    this.pending.splice(0, batch.length);
  }
}
