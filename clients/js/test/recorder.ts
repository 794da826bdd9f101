/** Records what a client emits, for assertions. */

import type {
  Broadcast,
  ClientError,
  ConnectionState,
  Notification,
  OpenEvent,
  SwitchboardClient,
} from "@switchboard/client";

export class Recorder {
  readonly notifications: Notification[] = [];
  readonly broadcasts: Broadcast[] = [];
  readonly duplicates: string[] = [];
  readonly opens: OpenEvent[] = [];
  readonly errors: ClientError[] = [];
  readonly states: ConnectionState[] = [];
  resets = 0;
  reauths = 0;

  constructor(client: SwitchboardClient) {
    client.on("notification", (n) => this.notifications.push(n));
    client.on("broadcast", (b) => this.broadcasts.push(b));
    client.on("duplicate", (d) => this.duplicates.push(d.id));
    client.on("open", (o) => this.opens.push(o));
    client.on("error", (e) => this.errors.push(e));
    client.on("state", (s) => this.states.push(s));
    client.on("reset", () => this.resets++);
    client.on("reauth", () => this.reauths++);
  }

  ids(): string[] {
    return this.notifications.map((n) => n.id);
  }

  /** For failure messages. */
  summary(): string {
    return JSON.stringify({
      ids: this.ids(),
      duplicates: this.duplicates,
      opens: this.opens,
      resets: this.resets,
      reauths: this.reauths,
      states: this.states,
      errors: this.errors.map((e) => `${e.kind} ${e.status ?? ""} ${e.code ?? ""} ${e.message}`),
    });
  }
}
