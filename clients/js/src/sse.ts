/** The Server-Sent Events wire format: a parser fed text chunks as they arrive. */

/** One dispatched event. */
export interface SseEvent {
  /** `event:` (or `message` when the event named none). */
  type: string;
  /** The `data:` lines joined by `\n`. */
  data: string;
  /** The `id:` this event carried itself (not one inherited from an earlier event). */
  id?: string;
}

export interface SseSink {
  event(event: SseEvent): void;
  /** A `retry:` field: the server's reconnection time in milliseconds. */
  retry(ms: number): void;
}

/**
 * Splits a stream of text into events as the WHATWG EventSource does (lines end with CRLF, LF
 * or CR; `:` starts a comment; a blank line dispatches). Unlike EventSource it also dispatches
 * an event that names a type but carries no data, and reports each event's own `id`.
 */
export class SseParser {
  private partial = "";
  /** The previous chunk ended with CR: a LF starting the next one belongs to that line end. */
  private pendingCr = false;
  private type = "";
  private data: string[] = [];
  private id: string | undefined;

  constructor(private readonly sink: SseSink) {}

  push(chunk: string): void {
    let start = 0;
    if (this.pendingCr && chunk.charCodeAt(0) === 10) start = 1;
    this.pendingCr = false;
    for (let i = start; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.partial + chunk.slice(start, i));
      this.partial = "";
      if (c === 13) {
        if (i + 1 === chunk.length) this.pendingCr = true;
        else if (chunk.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.partial += chunk.slice(start);
  }

  private line(line: string): void {
    if (line === "") return this.dispatch();
    if (line.charCodeAt(0) === 58 /* ':' */) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* ' ' */) value = value.slice(1);
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.sink.retry(Number(value));
        break;
    }
  }

  private dispatch(): void {
    if (this.data.length > 0 || this.type !== "") {
      const event: SseEvent = { type: this.type || "message", data: this.data.join("\n") };
      if (this.id !== undefined) event.id = this.id;
      this.sink.event(event);
    }
    this.type = "";
    this.data = [];
    this.id = undefined;
  }
}
