// The test page: the SDK as an app would use it, from another origin than the API. It shows
// what arrives and keeps a record in `window.sb` for the test to read.
import { SwitchboardClient } from "/sdk/index.js";

const params = new URLSearchParams(location.search);
const api = params.get("api");
const user = params.get("user");
const sb = (window.sb = { shown: [], duplicates: [], opens: [], resets: 0, errors: [], states: [] });
const rows = document.getElementById("events");
const log = document.getElementById("log");
let count = 0;

function row(kind, id, data, cls = "") {
  const tr = document.createElement("tr");
  tr.className = cls;
  for (const text of [String(++count), kind, id, data]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  rows.append(tr);
}

const client = new SwitchboardClient({
  url: api,
  // The app's backend hands out tokens (here: the test's static server).
  getToken: async () => (await fetch(`/token?user=${encodeURIComponent(user)}`)).text(),
  deviceId: "browser",
  ackDelayMs: Number(params.get("ackDelayMs") ?? 200),
});
sb.store = client.store.constructor.name;
document.getElementById("origin").textContent = location.origin;
document.getElementById("api").textContent = api;
document.getElementById("store").textContent = sb.store;

client.on("notification", (n) => {
  sb.shown.push(n.id);
  row("notification", n.id, JSON.stringify(n.data ?? {}));
});
client.on("duplicate", ({ id }) => {
  sb.duplicates.push(id);
  row("duplicate (dropped)", id, "already shown", "duplicate");
});
client.on("open", (o) => {
  sb.opens.push(o);
  log.textContent += `open${o.lastEventId ? ` (Last-Event-ID ${o.lastEventId})` : ""}\n`;
});
client.on("reset", () => {
  sb.resets++;
  log.textContent += "reset: refetch state\n";
});
client.on("error", (e) => {
  sb.errors.push(`${e.kind} ${e.status ?? ""} ${e.message}`);
  log.textContent += `${e.kind}: ${e.message}${e.retryInMs !== undefined ? ` (retry in ${e.retryInMs} ms)` : ""}\n`;
});
client.on("state", (s) => {
  sb.states.push(s);
  const el = document.getElementById("state");
  el.textContent = s;
  el.className = `state ${s}`;
});
