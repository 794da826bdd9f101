//! Incremental decoding of an SSE response body: HTTP/1.1 chunked transfer-encoding (Switchboard
//! answers chunked, Nchan may too) and the `event:`/`data:` line protocol on top of it. Both keep
//! only a few bytes of state per stream, so 15 000 of them stay cheap.

/// A body framing violation: the stream is unusable after it.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad chunked encoding: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the next chunk size.
    Size,
    /// A chunk extension (or whitespace) up to the end of the size line.
    Extension,
    /// Inside a chunk: `remaining` bytes of payload left.
    Data,
    /// The CRLF closing a chunk's payload.
    DataEnd,
    /// Trailer lines after the last chunk; `true` while the current line is still empty.
    Trailer(bool),
    /// The body ended with the zero-size chunk.
    Done,
}

/// Decodes `Transfer-Encoding: chunked` as bytes arrive, whatever the read boundaries.
#[derive(Debug)]
pub struct Dechunker {
    state: ChunkState,
    /// Payload bytes left in the current chunk, or the size being parsed.
    remaining: u64,
    /// Whether the size line had at least one digit.
    digits: bool,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker {
            state: ChunkState::Size,
            remaining: 0,
            digits: false,
        }
    }
}

impl Dechunker {
    /// True once the terminating zero-size chunk has been read: the server ended the stream.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Appends the payload carried by `input` to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
        while let Some((&b, rest)) = input.split_first() {
            match self.state {
                ChunkState::Size => {
                    input = rest;
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                            self.remaining = self
                                .remaining
                                .checked_mul(16)
                                .and_then(|v| v.checked_add(digit))
                                .ok_or(ChunkError("chunk size overflows"))?;
                            self.digits = true;
                        }
                        b';' | b' ' | b'\t' | b'\r' => self.state = ChunkState::Extension,
                        b'\n' => self.end_size_line()?,
                        _ => return Err(ChunkError("unexpected byte in chunk size")),
                    }
                }
                ChunkState::Extension => {
                    input = rest;
                    if b == b'\n' {
                        self.end_size_line()?;
                    }
                }
                ChunkState::Data => {
                    let n = input.len().min(self.remaining as usize);
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    input = rest;
                    match b {
                        b'\r' => {}
                        b'\n' => self.state = ChunkState::Size,
                        _ => return Err(ChunkError("chunk payload longer than its size")),
                    }
                }
                ChunkState::Trailer(empty) => {
                    input = rest;
                    self.state = match b {
                        b'\n' if empty => ChunkState::Done,
                        b'\n' => ChunkState::Trailer(true),
                        b'\r' => ChunkState::Trailer(empty),
                        _ => ChunkState::Trailer(false),
                    };
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn end_size_line(&mut self) -> Result<(), ChunkError> {
        if !self.digits {
            return Err(ChunkError("chunk size line without digits"));
        }
        self.digits = false;
        self.state = if self.remaining == 0 {
            ChunkState::Trailer(true)
        } else {
            ChunkState::Data
        };
        Ok(())
    }
}

/// One dispatched SSE event.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; `message` when the server sent none (Nchan).
    pub name: &'a [u8],
    /// The `data:` lines, joined with `\n`.
    pub data: &'a [u8],
    /// The event's own `id:` field, if it had one (a reconnect sends the last one back).
    pub id: Option<&'a [u8]>,
}

/// The SSE line protocol (`event:`, `data:`, `id:`, `retry:`, `:` comments), fed in pieces.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    name: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    id: Vec<u8>,
    has_id: bool,
    /// Comment lines seen (heartbeats are `: ping`).
    pub comments: u64,
    /// The last `retry:` value (ms) the server sent, if any.
    pub retry_ms: Option<u64>,
}

impl SseParser {
    /// Parses `input`, calling `on_event` for every event completed by a blank line.
    pub fn feed(&mut self, input: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        let mut rest = input;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (piece, after) = (&rest[..nl], &rest[nl + 1..]);
            rest = after;
            if self.partial.is_empty() {
                self.line(piece, &mut on_event);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(piece);
                self.line(&line, &mut on_event);
                line.clear();
                self.partial = line;
            }
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                let name: &[u8] = if self.name.is_empty() {
                    b"message"
                } else {
                    &self.name
                };
                on_event(Event {
                    name,
                    data: &self.data,
                    id: self.has_id.then_some(&self.id[..]),
                });
            }
            self.name.clear();
            self.data.clear();
            self.has_data = false;
            self.id.clear();
            self.has_id = false;
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            b"id" => {
                self.id.clear();
                self.id.extend_from_slice(value);
                self.has_id = true;
            }
            b"retry" => {
                if let Some(ms) = digits(value).filter(|_| value.iter().all(u8::is_ascii_digit)) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
    }
}

/// What the load generator put into a payload: the publisher's send time (unix µs) and, for
/// broadcasts, a sequence number. Switchboard carries them as JSON strings inside `data`
/// (`"ts":"…","seq":"…"`); Nchan carries the raw body `<ts>` or `<ts> <seq>`.
pub fn stamp(data: &[u8]) -> (Option<u64>, Option<u64>) {
    if data.first().is_some_and(u8::is_ascii_digit) {
        let mut parts = data.split(|&b| b == b' ');
        let ts = parts.next().and_then(digits);
        let seq = parts.next().and_then(digits);
        return (ts, seq);
    }
    (
        json_field(data, b"\"ts\":\""),
        json_field(data, b"\"seq\":\""),
    )
}

fn json_field(data: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(data, key)?;
    digits(&data[at + key.len()..])
}

/// The decimal number at the start of `s`.
fn digits(s: &[u8]) -> Option<u64> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &s[..end] {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk_in_pieces(wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            d.feed(part, &mut out).unwrap();
        }
        (out, d.done())
    }

    #[test]
    fn dechunks_across_any_read_boundary() {
        let wire = b"5\r\nhello\r\nc;ext=1\r\n, wide world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in 1..wire.len() {
            let (out, done) = dechunk_in_pieces(wire, piece);
            assert_eq!(out, b"hello, wide world", "piece size {piece}");
            assert!(done);
        }
    }

    #[test]
    fn rejects_garbage_chunk_sizes() {
        let mut d = Dechunker::default();
        assert!(d.feed(b"zz\r\n", &mut Vec::new()).is_err());
        let mut d = Dechunker::default();
        assert!(d.feed(b"2\r\nabc\r\n", &mut Vec::new()).is_err());
    }

    fn events(wire: &[u8], piece: usize) -> (Vec<(String, String)>, u64) {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for part in wire.chunks(piece) {
            p.feed(part, |e| {
                got.push((
                    String::from_utf8_lossy(e.name).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            });
        }
        (got, p.comments)
    }

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let wire = b"retry: 3000\n\n: ping\n\nid: 1\nevent: notification\ndata: {\"a\":1}\n\n\
                     id: 7\r\ndata: 123\r\ndata: 456\r\n\r\ndata\n\n";
        for piece in 1..wire.len() {
            let (got, comments) = events(wire, piece);
            assert_eq!(
                got,
                vec![
                    ("notification".into(), "{\"a\":1}".into()),
                    ("message".into(), "123\n456".into()),
                    ("message".into(), "".into()),
                ],
                "piece size {piece}"
            );
            assert_eq!(comments, 1);
        }
    }

    #[test]
    fn keeps_ids_and_the_retry_time() {
        let wire =
            b"retry: 3412\n\nid: n-1\nevent: notification\ndata: x\n\ndata: y\n\nretry: 2x\n\n";
        for piece in 1..wire.len() {
            let mut p = SseParser::default();
            let mut ids = Vec::new();
            for part in wire.chunks(piece) {
                p.feed(part, |e| ids.push(e.id.map(|i| i.to_vec())));
            }
            assert_eq!(ids, vec![Some(b"n-1".to_vec()), None], "piece size {piece}");
            assert_eq!(p.retry_ms, Some(3412));
        }
    }

    #[test]
    fn reads_stamps_of_both_servers() {
        let sb = br#"{"id":"x","data":{"seq":"42","ts":"1700000000123456"},"sent_at":1}"#;
        assert_eq!(stamp(sb), (Some(1_700_000_000_123_456), Some(42)));
        assert_eq!(
            stamp(b"1700000000123456"),
            (Some(1_700_000_000_123_456), None)
        );
        assert_eq!(stamp(b"17 9"), (Some(17), Some(9)));
        assert_eq!(stamp(b"{}"), (None, None));
        assert_eq!(stamp(b""), (None, None));
    }
}
