//! An event-stream parser written from the WHATWG HTML standard ("Server-sent events",
//! "Parsing an event stream" and "Interpreting an event stream"), independent of the node's
//! framing code and of `sse.rs`: lines end at CRLF, LF or CR; a blank line dispatches; a line
//! starting with `:` is a comment; the field name runs to the first `:`, and one space after it
//! is dropped; `data` lines are joined with LF; an `id` containing NUL is ignored; `retry` is
//! taken only when it is all ASCII digits; an event with no data is not dispatched; what follows
//! the last blank line is discarded. Used by the property tests and the `notification_sse`
//! fuzz target.
#![allow(dead_code)]

/// A dispatched event, as a browser's `EventSource` would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `message` when the event had no `event` field.
    pub event_type: String,
    pub data: String,
    /// The stream's last event id when this event was dispatched.
    pub last_event_id: String,
}

/// Everything a stream told its reader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// Every field line, in order, as (name, value): what a stray line would show up in.
    pub fields: Vec<(String, String)>,
    pub comments: Vec<String>,
    /// The last valid `retry` value.
    pub retry: Option<u64>,
    /// Blank lines that dispatched nothing (a block without data).
    pub empty_dispatches: usize,
    /// Bytes after the last line end, or lines after the last blank line: discarded by the
    /// standard, a truncated event for a framing check.
    pub unterminated: bool,
}

/// Parses a whole stream.
pub fn parse(stream: &str) -> Parsed {
    let stream = stream.strip_prefix('\u{feff}').unwrap_or(stream);
    let mut out = Parsed::default();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut id_buffer = String::new();
    let mut block_open = false;
    let (lines, rest) = split_lines(stream);
    for line in lines {
        if line.is_empty() {
            let last_event_id = id_buffer.clone();
            if data.is_empty() {
                out.empty_dispatches += 1;
            } else {
                if data.ends_with('\n') {
                    data.pop();
                }
                out.events.push(Event {
                    event_type: if event_type.is_empty() {
                        "message".to_string()
                    } else {
                        event_type.clone()
                    },
                    data: std::mem::take(&mut data),
                    last_event_id,
                });
            }
            data.clear();
            event_type.clear();
            block_open = false;
            continue;
        }
        block_open = true;
        if let Some(comment) = line.strip_prefix(':') {
            out.comments.push(comment.to_string());
            continue;
        }
        let (name, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        out.fields.push((name.to_string(), value.to_string()));
        match name {
            "event" => event_type = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry = value.parse().ok();
            }
            _ => {}
        }
    }
    out.unterminated = block_open || !rest.is_empty();
    out
}

/// The complete lines of `stream` (each ended by CRLF, LF or CR) and what follows the last.
fn split_lines(stream: &str) -> (Vec<&str>, &str) {
    let mut lines = Vec::new();
    let bytes = stream.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&stream[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&stream[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    (lines, &stream[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_examples_parse_as_it_says() {
        // "data: YHOO\ndata: +2\ndata: 10\n\n" is one message with three lines.
        let p = parse("data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].data, "YHOO\n+2\n10");
        assert_eq!(p.events[0].event_type, "message");
        // Comments, an id, a trailing event without its blank line (discarded).
        let p = parse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event");
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].last_event_id, "1");
        assert_eq!(p.events[1].last_event_id, "");
        assert!(p.unterminated);
        // Two events, the first with data "" and the second with data "\n".
        let p = parse("data\n\ndata\ndata\n\ndata:");
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].data, "");
        assert_eq!(p.events[1].data, "\n");
        // Lines end at CR, LF or CRLF alike.
        let p = parse("event: a\rdata: x\r\n\r\ndata: y\n\n");
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].event_type, "a");
        assert_eq!(p.events[1].event_type, "message");
        // An id with NUL is ignored; a retry that is not all digits too.
        let p = parse("id: a\0b\nretry: 12x\ndata: z\n\nretry: 30\n\n");
        assert_eq!(p.events[0].last_event_id, "");
        assert_eq!(p.retry, Some(30));
        assert_eq!(p.empty_dispatches, 1);
    }
}
