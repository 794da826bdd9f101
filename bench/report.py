"""Turns the raw JSON of a bench/run.sh run into results.md (table + warnings) and chart.png.

Usage: python3 report.py <raw-dir> <results-dir> [--elapsed SECONDS]

Ratio column: how many times better Switchboard's figure is than the other one (> 1 means
Switchboard is ahead), whichever direction is better for that metric.
"""

import argparse
import json
import os
import sys


def load(raw, name):
    path = os.path.join(raw, f"{name}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def dig(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k) if isinstance(d, dict) else None
    return d


def num(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ms(us):
    return None if us is None else us / 1000.0


def pct(r):
    return None if r is None else r * 100.0


def lat_pair(p):
    if not p or p.get("p999") is None:
        return None
    return f"{p['p999'] / 1000:.2f} / {p['max'] / 1000:.2f}"


def lat_triple(p):
    if not p or p.get("p999") is None:
        return None
    return f"{p['p50'] / 1000:.2f} / {p['p999'] / 1000:.2f} / {p['max'] / 1000:.2f}"


def ratio(sb, other, better):
    if sb is None or other is None or better is None:
        return None
    if better == "higher":
        return sb / other if other else None
    return other / sb if sb else None


def load_targets(path):
    targets = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#") or "\t" not in line:
                    continue
                key, text = line.split("\t", 1)
                targets[key.strip()] = text.strip()
    except OSError:
        pass
    return targets


def rows(raw):
    """(key, workload, metric, sb, other, other_label, better, digits)."""
    g = lambda name, *k: dig(load(raw, name), *k)  # noqa: E731
    out = []
    add = lambda *r: out.append(r)  # noqa: E731

    add("W1.kib_per_stream", "W1 idle streams", "server RSS per idle stream, KiB",
        g("w1-switchboard", "kib_per_stream"), g("w1-nchan", "kib_per_stream"), "Nchan", "lower", 2)
    add("W1.pss_per_stream", "W1 idle streams", "server PSS per idle stream, KiB",
        g("w1-switchboard", "pss_kib_per_stream"), g("w1-nchan", "pss_kib_per_stream"), "Nchan", "lower", 2)

    add("W1.open_secs", "W1 idle streams", "seconds to open all streams (256 connects in flight)",
        g("w1-switchboard", "streams", "open_secs"), g("w1-nchan", "streams", "open_secs"), "Nchan", "lower", 2)

    add("W2.deliveries_per_sec", "W2 unicast", "deliveries/s (single POST, max rate)",
        g("w2-switchboard", "deliveries_per_sec"), g("w2-nchan", "deliveries_per_sec"), "Nchan", "higher", 0)
    add("W2.p99_ms", "W2 unicast", "delivery latency p99, ms",
        ms(g("w2-switchboard", "latency_us", "p99")), ms(g("w2-nchan", "latency_us", "p99")), "Nchan", "lower", 2)
    add("W2.p999_ms", "W2 unicast", "delivery latency p99.9 / max, ms",
        lat_pair(g("w2-switchboard", "latency_us")), lat_pair(g("w2-nchan", "latency_us")), "Nchan", None, 0)
    add("W2.delivered_pct", "W2 unicast", "% delivered",
        pct(g("w2-switchboard", "delivered_ratio")), pct(g("w2-nchan", "delivered_ratio")), "Nchan", None, 2)

    add("W3.deliveries_per_sec", "W3 unicast batch", "deliveries/s (batch of 100; Nchan: single POST)",
        g("w3-switchboard", "deliveries_per_sec"), g("w2-nchan", "deliveries_per_sec"), "Nchan (W2)", "higher", 0)
    add("W3.p99_ms", "W3 unicast batch", "delivery latency p99, ms",
        ms(g("w3-switchboard", "latency_us", "p99")), ms(g("w2-nchan", "latency_us", "p99")), "Nchan (W2)", "lower", 2)
    add("W3.delivered_pct", "W3 unicast batch", "% delivered",
        pct(g("w3-switchboard", "delivered_ratio")), pct(g("w2-nchan", "delivered_ratio")), "Nchan (W2)", None, 2)

    add("W4.deliveries_per_sec", "W4 2 nodes + Redis", "notifications/s delivered",
        g("w4-switchboard", "deliveries_per_sec"), g("w4-nchan", "deliveries_per_sec"), "Nchan+Redis", "higher", 0)
    add("W4.p50_ms", "W4 2 nodes + Redis", "delivery latency p50, ms",
        ms(g("w4-switchboard", "latency_us", "p50")), ms(g("w4-nchan", "latency_us", "p50")), "Nchan+Redis", "lower", 2)
    add("W4.p99_ms", "W4 2 nodes + Redis", "delivery latency p99, ms",
        ms(g("w4-switchboard", "latency_us", "p99")), ms(g("w4-nchan", "latency_us", "p99")), "Nchan+Redis", "lower", 2)
    add("W4.redis_calls", "W4 2 nodes + Redis", "Redis commands per notification",
        g("w4-switchboard", "redis", "calls_per_notification"), g("w4-nchan", "redis", "calls_per_notification"),
        "Nchan+Redis", "lower", 2)
    add("W4.delivered_pct", "W4 2 nodes + Redis", "% delivered",
        pct(g("w4-switchboard", "delivered_ratio")), pct(g("w4-nchan", "delivered_ratio")), "Nchan+Redis", None, 2)

    add("W5.deliveries_per_sec", "W5 broadcast", "deliveries/s (max rate, one topic)",
        g("w5-max-switchboard", "deliveries_per_sec"), g("w5-max-nchan", "deliveries_per_sec"), "Nchan", "higher", 0)
    add("W5.max_delivered_pct", "W5 broadcast", "% delivered at max rate",
        pct(g("w5-max-switchboard", "delivered_ratio")), pct(g("w5-max-nchan", "delivered_ratio")), "Nchan", None, 2)
    add("W5.to_last_p99_ms", "W5 broadcast", "publish → last subscriber p99 at 1/s, ms",
        ms(g("w5-1hz-switchboard", "publish_to_last_us", "p99")), ms(g("w5-1hz-nchan", "publish_to_last_us", "p99")),
        "Nchan", "lower", 1)
    add("W5.to_last_p50_ms", "W5 broadcast", "publish → last subscriber p50 at 1/s, ms",
        ms(g("w5-1hz-switchboard", "publish_to_last_us", "p50")), ms(g("w5-1hz-nchan", "publish_to_last_us", "p50")),
        "Nchan", "lower", 1)

    add("W6.sends_per_sec", "W6 FCM", "FCM sends/s at fcm-mock (vs firebase-admin send_each)",
        g("w6-switchboard", "fcm_sends_per_sec"), g("w6-admin-sdk", "messages_per_sec"), "firebase-admin", "higher", 0)
    samples = g("w6-switchboard", "samples") or []
    if samples:
        mib = lambda kib: f"{kib / 1024:.1f}"  # noqa: E731
        first, mid, last = samples[0], samples[len(samples) // 2], samples[-1]
        peak = max(s["rss_kib"] for s in samples)
        text = (f"{mib(first['rss_kib'])} → {mib(mid['rss_kib'])} ({mid['t']:.0f} s) → "
                f"{mib(last['rss_kib'])} ({last['t']:.0f} s), max {mib(peak)}")
    else:
        text = None
    add("W6.rss_mib", "W6 FCM", "router RSS over the notify window, MiB", text, None, "", None, 0)

    add("W6W.sends_per_sec", "W6 Web Push", "Web Push sends/s at webpush-mock, decrypted there (vs pywebpush, one loop)",
        g("w6w-switchboard", "fcm_sends_per_sec"), g("w6w-pywebpush", "messages_per_sec"), "pywebpush", "higher", 0)
    add("W6W.encryptions_per_sec", "W6 Web Push", "RFC 8291 encryptions/s, one thread, no network",
        g("w6w-encrypt", "encryptions_per_sec"), g("w6w-pywebpush", "encryptions_per_sec"), "pywebpush", "higher", 0)
    add("W6W.vapid_per_sec", "W6 Web Push", "VAPID ES256 signatures/s, one thread (one per push service per token life)",
        g("w6w-encrypt", "vapid_signatures_per_sec"), None, "", None, 0)

    poll = g("w7-poll-switchboard", "server_cpu_secs_per_min")
    push = g("w7-push-switchboard", "server_cpu_secs_per_min")
    add("W7.poll_cpu", "W7 poll vs push", "server CPU-s/min, 10K clients polling GET /v1/inbox (If-None-Match) every 3 s",
        poll, None, "", None, 2)
    add("W7.push_cpu", "W7 poll vs push", "server CPU-s/min, 10K streams, same notifications (1/user/min)",
        push, None, "", None, 2)
    add("W7.push_over_poll_cpu", "W7 poll vs push", "push CPU ÷ polling CPU",
        (push / poll) if poll and push else None, None, "", None, 3)
    quiet = g("w7-quiet-switchboard", "server_cpu_secs_per_min")
    add("W7.quiet_cpu", "W7 poll vs push",
        "server CPU-s/min, the same notifications with no client (the producer's side, in both figures above)",
        quiet, None, "", None, 2)
    add("W7.delivery_ratio", "W7 poll vs push",
        "push ÷ polling, the producer's side taken out: (push − no client) ÷ (polling − no client)",
        ((push - quiet) / (poll - quiet)) if poll and push and quiet is not None and poll > quiet else None,
        None, "", None, 3)
    poll_lat = g("w7-poll-switchboard", "latency_us")
    push_lat = g("w7-push-switchboard", "latency_us")
    add("W7.poll_latency_ms", "W7 poll vs push", "polling latency (notify → the poll that saw it) p50 / p99.9 / max, ms",
        lat_triple(poll_lat), None, "", None, 0)
    add("W7.push_latency_ms", "W7 poll vs push", "push latency p50 / p99.9 / max, ms",
        lat_triple(push_lat), None, "", None, 0)
    add("W7.push_over_poll_latency", "W7 poll vs push", "push p50 latency ÷ polling p50 latency",
        (push_lat["p50"] / poll_lat["p50"]) if poll_lat and push_lat and poll_lat.get("p50") else None,
        None, "", None, 4)
    add("W7.bytes_per_min", "W7 poll vs push", "client bytes on the wire per minute, polling / push, MB",
        (f"{g('w7-poll-switchboard', 'client_bytes_per_min') / 1e6:.2f} / "
         f"{g('w7-push-switchboard', 'client_bytes_per_min') / 1e6:.2f}")
        if g("w7-poll-switchboard", "client_bytes_per_min") is not None
        and g("w7-push-switchboard", "client_bytes_per_min") is not None else None,
        None, "", None, 0)
    add("W7.fcm_sends_per_min", "W7 mixed", "FCM sends/min, 60 % online, one device each: Switchboard vs push-everything",
        g("w7-mixed-switchboard", "fcm_sends_per_min"), g("w7-mixed-switchboard", "push_everything_fcm_sends_per_min"),
        "push-everything", "lower", 0)
    out.extend(edge_rows(raw))
    return out


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def edge_rows(raw):
    """Limits and abuse (E1-E3) and the hot path against a baseline binary (B)."""
    g = lambda name, *k: dig(load(raw, name), *k)  # noqa: E731
    out = []
    add = lambda *r: out.append(r)  # noqa: E731

    sb, nc = load(raw, "e1-switchboard"), load(raw, "e1-nchan")
    if sb or nc:
        n = dig(sb, "streams") or dig(nc, "streams")
        add("E1.back_secs", "E1 reconnect storm", f"seconds from SIGTERM until all {n:,} streams are back",
            dig(sb, "back_secs_after_sigterm"), dig(nc, "back_secs_after_sigterm"), "Nchan", "lower", 2)
        add("E1.back_after_listening", "E1 reconnect storm", "seconds from listening again until all are back",
            dig(sb, "back_secs_after_listening"), dig(nc, "back_secs_after_listening"), "Nchan", "lower", 2)

        def spread(d):
            p = dig(d, "reopen_ms_after_sigterm")
            if not p:
                return None
            first = dig(d, "first_back_secs_after_sigterm")
            return f"{first * 1000:.0f} / {p['p50']} / {p['p99']} / {p['max']}"
        add("E1.spread", "E1 reconnect storm", "reconnects after SIGTERM: first / p50 / p99 / last, ms",
            spread(sb), spread(nc), "Nchan", None, 0)

        def cpu(d):
            c, cores = dig(d, "new_server_cpu_secs_until_all_back"), dig(d, "new_server_cores_busy_until_all_back")
            return None if c is None else f"{c:.2f} CPU-s ({cores:.2f} cores busy)"
        add("E1.cpu", "E1 reconnect storm", "restarted server from its start until all are back",
            cpu(sb), cpu(nc), "Nchan", None, 0)

        def retry(d):
            r = dig(d, "retry_given_ms")
            if not r or not r.get("count"):
                return f"none sent: client default {dig(d, 'default_retry_ms')}"
            return f"{r['count']:,} stream openings, p50 {r['p50']} / max {r['max']}"
        add("E1.retry", "E1 reconnect storm", "`retry:` given (ms), honoured by every client",
            retry(sb) if sb else None, retry(nc) if nc else None, "Nchan", None, 0)

        def check(d):
            if not d:
                return None
            if d.get("ids_checked"):
                return (f"{d['ids_checked']:,} checked by id: {d['lost_before'] + d['lost_after']} lost, "
                        f"{d['received_twice_before'] + d['received_twice_after']} twice, "
                        f"{(d.get('control_events') or {}).get('reset', 0)} `reset`; "
                        f"{d['acks_ok']:,} acks answered 204")
            b, a = d.get("before") or {}, d.get("after") or {}
            return f"{b.get('delivered', 0) + a.get('delivered', 0):,} of " \
                   f"{b.get('sse_routed', 0) + a.get('sse_routed', 0):,} delivered (no ids to check)"
        add("E1.lost", "E1 reconnect storm", "notifications before + after the restart",
            check(sb), check(nc), "Nchan", None, 0)

    e2 = load(raw, "e2-switchboard")
    if e2:
        phases = e2.get("phases") or []
        quiet = [p for p in phases if p.get("phase") == "quiet"]
        flood = [p for p in phases if p.get("phase") == "flood"]
        p99 = lambda ph: ms(dig(ph, "outcome", "latency_us", "p99"))  # noqa: E731
        q99, f99 = max(p99(p) for p in quiet), max(p99(p) for p in flood)
        add("E2.p99_ms", "E2 flood", "delivery latency p99 with the flood (worst phase), ms",
            f99, q99, "no flood, same run", "lower", 2)
        add("E2.p99_pairs", "E2 flood", "p99 per phase, without → with the flood, ms",
            ", ".join(f"{p99(a):.2f} → {p99(b):.2f}" for a, b in zip(quiet, flood)), None, "", None, 0)
        delivered = sum(dig(p, "outcome", "delivered") or 0 for p in flood)
        routed = sum(dig(p, "outcome", "sse_routed") or 0 for p in flood)
        add("E2.delivered_pct", "E2 flood", f"% delivered under the flood ({routed:,} notifications)",
            pct(delivered / routed) if routed else None, None, "", None, 2)
        fl = [p.get("flood") or {} for p in flood]
        add("E2.held", "E2 flood", "flood connections held (mean / min), reopened",
            "; ".join(f"{f.get('held_mean', 0):,} / {f.get('held_min', 0):,}, {f.get('opened', 0):,} opened" for f in fl),
            None, "", None, 0)
        closed = {}
        for f in fl:
            for k, v in (f.get("closed_by_server") or {}).items():
                closed[k] = closed.get(k, 0) + v
        add("E2.closed", "E2 flood", "flood connections the server closed",
            ", ".join(f"{v:,} {k}" for k, v in sorted(closed.items())) or "none", None, "", None, 0)
        mib = lambda k: None if k is None else f"{k / 1024:.1f}"  # noqa: E731
        add("E2.rss", "E2 flood", "node RSS, MiB: without (max) → with the flood (max)",
            f"{mib(max(p.get('server_rss_kib_max') or 0 for p in quiet))} → "
            f"{mib(max(p.get('server_rss_kib_max') or 0 for p in flood))}", None, "", None, 0)
        add("E2.cpu", "E2 flood", "node cores busy: without → with the flood",
            ", ".join(f"{a.get('server_cores_busy')} → {b.get('server_cores_busy')}" for a, b in zip(quiet, flood)),
            None, "", None, 0)

    e3 = load(raw, "e3-switchboard")
    if e3:
        phases = e3.get("phases") or []
        normal = [p for p in phases if p.get("phase") == "normal"]
        noisy = [p for p in phases if p.get("phase") == "noisy"]
        d99 = lambda ph: ms(dig(ph, "producer", "latency_us", "p99"))  # noqa: E731
        r99 = lambda ph: ms(dig(ph, "producer", "requests", "latency_us", "p99"))  # noqa: E731
        add("E3.p99_ms", "E3 noisy producer", "other producer's delivery p99 beside it (worst phase), ms",
            max(d99(p) for p in noisy), max(d99(p) for p in normal), "alone, same run", "lower", 2)
        add("E3.req_p99_ms", "E3 noisy producer", "other producer's request p99 beside it (worst phase), ms",
            max(r99(p) for p in noisy), max(r99(p) for p in normal), "alone, same run", "lower", 2)
        add("E3.pairs", "E3 noisy producer", "delivery p99 per phase, alone → beside it, ms",
            ", ".join(f"{d99(a):.2f} → {d99(b):.2f}" for a, b in zip(normal, noisy)), None, "", None, 0)
        other429 = sum(int(dig(p, "producer", "requests", "by_status", "429") or 0) for p in phases)
        delivered = sum(dig(p, "producer", "delivered") or 0 for p in phases)
        routed = sum(dig(p, "producer", "sse_routed") or 0 for p in phases)
        add("E3.other", "E3 noisy producer", "other producer: 429s, % delivered",
            f"{other429}, {pct(delivered / routed) if routed else 0:.2f} %", None, "", None, 0)

        def loud(ph):
            n = ph.get("noisy_producer") or {}
            req = n.get("requests") or {}
            refused = int(dig(req, "by_status", "429") or 0)
            total = (req.get("ok") or 0) + sum(int(v) for v in (req.get("by_status") or {}).values())
            return (f"{n.get('requests_per_sec', 0):,.0f} req/s, {n.get('accepted_per_sec', 0):,.0f}/s accepted, "
                    f"{refused:,} × 429 ({refused / total * 100 if total else 0:.1f} %), "
                    f"{req.get('with_retry_after', 0):,} with Retry-After")
        add("E3.noisy", "E3 noisy producer", "noisy producer (over its limit)",
            "; ".join(loud(p) for p in noisy), None, "", None, 0)

    names = sorted(f[:-5] for f in os.listdir(raw) if f.startswith("b-w") and f.endswith(".json"))
    if names:
        def runs(w, which):
            return [load(raw, n) for n in names if n.startswith(f"b-{w}-{which}-")]
        cur1, base1 = runs("w1", "current"), runs("w1", "baseline")
        cur2, base2 = runs("w2", "current"), runs("w2", "baseline")
        add("B.w1_kib", "W1/W2 vs baseline", "W1 RSS per idle stream, KiB (mean of rounds)",
            mean([d.get("kib_per_stream") for d in cur1]), mean([d.get("kib_per_stream") for d in base1]),
            "baseline", "lower", 3)
        add("B.w2_rate", "W1/W2 vs baseline", "W2 deliveries/s (mean of rounds)",
            mean([d.get("deliveries_per_sec") for d in cur2]), mean([d.get("deliveries_per_sec") for d in base2]),
            "baseline", "higher", 0)
        add("B.w2_p99", "W1/W2 vs baseline", "W2 delivery latency p99, ms (mean of rounds)",
            ms(mean([dig(d, "latency_us", "p99") for d in cur2])), ms(mean([dig(d, "latency_us", "p99") for d in base2])),
            "baseline", "lower", 2)
        per = lambda d: (d.get("server_cpu_secs_window") or 0) * 1e6 / d["delivered"] if d.get("delivered") else None  # noqa: E731
        add("B.w2_cpu_us", "W1/W2 vs baseline", "W2 server CPU per delivery, µs (mean of rounds)",
            mean([per(d) for d in cur2]), mean([per(d) for d in base2]), "baseline", "lower", 2)
        add("B.w2_rounds", "W1/W2 vs baseline", "W2 deliveries/s per round (in run order)",
            ", ".join(f"{n.split('-')[2]} {load(raw, n).get('deliveries_per_sec', 0):,.0f}"
                      for n in sorted((n for n in names if n.startswith("b-w2-")),
                                      key=lambda n: os.path.getmtime(os.path.join(raw, f"{n}.json")))),
            None, "", None, 0)
        add("B.w2_delivered", "W1/W2 vs baseline", "W2 % delivered (current / baseline, worst round)",
            pct(min(d.get("delivered_ratio") or 0 for d in cur2)) if cur2 else None,
            pct(min(d.get("delivered_ratio") or 0 for d in base2)) if base2 else None, "baseline", None, 2)
    return out


def warnings(raw):
    """Anything a reader should know: failed streams, drops, errors, incomplete deliveries."""
    notes = []
    for fname in sorted(os.listdir(raw)):
        if not fname.endswith(".json") or fname == "run.json":
            continue
        name = fname[:-5]
        d = load(raw, name)
        if not d:
            continue
        s = d.get("streams")
        s = s if isinstance(s, dict) else {}
        if s.get("listen_overflows_while_opening"):
            notes.append(f"{name}: the kernel dropped {s['listen_overflows_while_opening']} connection attempts "
                         "on a full listen queue while the streams opened (each such client waits for a 1 s "
                         "SYN retransmit)")
        if s.get("failed"):
            notes.append(f"{name}: streams that never opened: {s['failed']}")
        if s.get("closed_during_run"):
            notes.append(f"{name}: {s['closed_during_run']} streams closed by the server during the run")
        if s.get("control_events"):
            notes.append(f"{name}: control events on streams: {s['control_events']}")
        if s.get("unstamped_events"):
            notes.append(f"{name}: {s['unstamped_events']} data events without the load generator's stamp")
        errs = d.get("http_errors") or d.get("errors") or d.get("failures")
        if errs:
            by = dig(d, "requests", "by_status") or d.get("errors") or {}
            tr = dig(d, "requests", "transport_errors")
            notes.append(f"{name}: {errs} request errors (by status {by}, transport {tr})")
        r = d.get("delivered_ratio")
        if r is not None and r < 0.9999:
            notes.append(f"{name}: only {r * 100:.2f}% delivered")
        if d.get("broadcasts_incomplete"):
            notes.append(f"{name}: {d['broadcasts_incomplete']} broadcasts did not reach every stream")
    return notes


def write_markdown(raw, results, table, targets, elapsed):
    run = load(raw, "run") or {}
    lines = ["# Switchboard vs Nchan — benchmark results", ""]
    lines.append(
        f"Run {run.get('date', '?')} at commit `{run.get('commit', '?')}`"
        f"{' (router sources modified)' if run.get('dirty') else ''}, {run.get('cores', '?')} cores, "
        f"nginx {run.get('nginx', '?')} + Nchan with worker_processes {run.get('nchan_workers', '?')}; "
        f"publish windows {run.get('duration', '?')} s (W7: {run.get('w7_duration', '?')} s), "
        f"{run.get('connections', '?')} publisher connections; load generator on the same machine "
        f"(load average at start: {run.get('loadavg', '?')})."
        + (f" The whole run took {elapsed // 60} min {elapsed % 60} s." if elapsed else "")
    )
    lines.append("")
    lines.append("Ratio = how many times better Switchboard's figure is (> 1: Switchboard ahead). "
                 "Raw JSON and logs: `bench/results/raw/`.")
    lines.append("")
    lines.append("| workload | metric | Switchboard | Nchan / baseline | ratio | target |")
    lines.append("|---|---|---:|---:|---:|---|")
    for key, workload, metric, sb, other, label, better, digits in table:
        sb_txt = sb if isinstance(sb, str) else num(sb, digits)
        other_txt = other if isinstance(other, str) else num(other, digits)
        if label and other is not None and label not in ("Nchan",):
            other_txt = f"{other_txt} ({label})"
        r = ratio(sb, other, better) if not isinstance(sb, str) and not isinstance(other, str) else None
        lines.append(f"| {workload} | {metric} | {sb_txt} | {other_txt} | "
                     f"{'—' if r is None else f'{r:.2f}×'} | {targets.get(key, '—')} |")
    lines.append("")
    notes = warnings(raw)
    lines.append("## Warnings from this run")
    lines.append("")
    lines.extend(f"- {n}" for n in notes) if notes else lines.append("- none")
    lines.append("")
    lines.append("## How each figure is measured")
    lines.append("")
    lines.extend([
        "- Servers start fresh for every workload. Switchboard: release build, memory broker (W4: Redis), "
        "SQLite store, `RUST_LOG=warn`, heartbeat 15 s. Nchan: `bench/nchan/nginx.conf` "
        "(`nginx-redis.conf` for W4), access log off, heartbeat 15 s.",
        "- Latency = receive time − the publisher's send time carried in the payload (CLOCK_REALTIME, same machine).",
        "- deliveries/s = deliveries (counted until every accepted notification arrived, or 5 s after the last "
        "send) ÷ the publish window. % delivered = deliveries ÷ notifications the server accepted.",
        "- Memory: VmRSS (and PSS) of the server's processes (nginx: master + workers) before the streams "
        "opened and after they were held open, divided by the streams open.",
        "- CPU: utime + stime of the server's processes over the publish window, per minute of wall time.",
        "- W4: Redis `INFO commandstats` delta over the window and drain ÷ accepted notifications "
        "(Redis counts the commands Nchan's Lua scripts run inside EVALSHA too).",
        "- W7: each user gets one notification a minute at a random moment. Polling: every user "
        "sends `GET /v1/inbox?after=<last>` with its JWT and `If-None-Match` every 3 s on a keep-alive "
        "connection; latency = the poll that brought it − the publish stamp. Push: one stream per user. "
        "Client bytes = request + response bytes (polling) or stream body bytes (push), publisher excluded. "
        "Mixed: 60 % of users on streams, every user one device; fcm-mock counts the sends.",
        "- Both servers and the load generator share the machine's cores: most max-rate figures are "
        "bounded by CPU, so `loadgen_cpu_secs` and `server_cpu_secs_window` are in the raw JSON.",
        "- W6: fcm-mock's `accepted` counter over the notify window; the admin SDK sends the same number of "
        "messages to a fresh fcm-mock with `messaging.send_each` in batches of 500.",
        "- W6 Web Push: webpush-mock's `accepted` counter (each message VAPID-checked and decrypted "
        "before it counts) over the notify window; pywebpush sends `BENCH_WEBPUSH_SDK_MESSAGES` "
        "messages one after another (`webpush()` on one requests session, a VAPID token signed per "
        "call as the library does) to a fresh mock. Encryptions: `examples/webpush_encrypt.rs` and "
        "pywebpush's `WebPusher.encode`, same payload size class.",
    ])
    lines.append("")
    with open(os.path.join(results, "results.md"), "w") as f:
        f.write("\n".join(lines))


def write_chart(results, table):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing, no chart", file=sys.stderr)
        return
    bars = []
    for key, workload, metric, sb, other, label, better, digits in table:
        if isinstance(sb, str):
            continue
        r = (1 / sb) if key == "W7.push_over_poll_cpu" and sb else ratio(sb, other, better)
        if r is not None and r > 0:
            bars.append((f"{workload}: {metric}", r))
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(bars) + 1.5))
    names = [b[0] for b in bars][::-1]
    values = [b[1] for b in bars][::-1]
    colors = ["#2e7d32" if v >= 1 else "#c62828" for v in values]
    ax.barh(names, values, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("times better than Nchan / baseline (> 1 = Switchboard ahead; log scale)")
    ax.set_title("Switchboard vs Nchan — same machine, same run")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}×", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(results, "chart.png"), dpi=110)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("raw")
    parser.add_argument("results")
    parser.add_argument("--elapsed", type=int, default=0)
    args = parser.parse_args()
    table = rows(args.raw)
    targets = load_targets(os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets.tsv"))
    write_markdown(args.raw, args.results, table, targets, args.elapsed)
    write_chart(args.results, table)
    print(open(os.path.join(args.results, "results.md")).read())


if __name__ == "__main__":
    main()
