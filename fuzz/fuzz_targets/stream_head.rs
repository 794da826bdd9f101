//! The first bytes of a connection, as the server reads them (`server::opening::classify` over
//! reads that fill the buffer's spare room, in pieces chosen by the first input byte), and the
//! head parser of the direct stream path (`http::events_h1::parse_head`) over the whole input.
//! Checked: every opening is told before the head limit; what goes to hyper is exactly what
//! was read; a stream is only a plain `GET /v1/events` whose head ends within the limit; its
//! query and token extraction do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::http::events;
use switchboard::http::events_h1::{parse_head, ParsedHead, MAX_HEAD};
use switchboard::server::opening::{classify, Opening, FIRST_READ};

fuzz_target!(|data: &[u8]| {
    let Some((&pieces, input)) = data.split_first() else {
        return;
    };
    if let ParsedHead::Stream { uri, headers } = parse_head(input) {
        check_stream(input, &uri, &headers);
    }
    let mut buf = Vec::with_capacity(FIRST_READ);
    let mut at = 0;
    let mut state = u32::from(pieces);
    loop {
        if at == input.len() {
            // The peer closed before its opening was told: it was still under the limit.
            assert!(
                buf.len() < MAX_HEAD,
                "{} bytes read, still undecided",
                buf.len()
            );
            return;
        }
        // A read returns at most the spare room, and (for pieces != 0) less at times.
        let room = buf.capacity() - buf.len();
        assert!(
            room > 0,
            "a read with no room would look like a closed connection"
        );
        let mut n = room.min(input.len() - at);
        if pieces != 0 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            n = n.min(1 + (state >> 16) as usize % 700);
        }
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        let Some(opening) = classify(&mut buf) else {
            assert!(buf.len() < MAX_HEAD, "undecided at {} bytes", buf.len());
            continue;
        };
        match opening {
            Opening::Stream { uri, headers } => check_stream(&input[..at], &uri, &headers),
            Opening::Http1(read) | Opening::Http2(read) => {
                assert_eq!(
                    &read[..],
                    &input[..at],
                    "hyper gets every byte read, in order"
                );
                assert!(read.len() <= 2 * MAX_HEAD);
            }
        }
        return;
    }
});

/// A stream head: a plain `GET /v1/events`, complete within `MAX_HEAD`, none of the headers
/// that need hyper; the route's own extraction takes it without panicking.
fn check_stream(read: &[u8], uri: &http::Uri, headers: &http::HeaderMap) {
    // Empty lines before a request line are skipped (RFC 9112, 2.2), by httparse and hyper.
    let start = read
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(read.len());
    let read = &read[start..];
    assert!(
        read.starts_with(b"GET "),
        "{:?}",
        String::from_utf8_lossy(read)
    );
    let end = head_end(read).expect("a stream head is complete");
    assert!(
        end <= MAX_HEAD,
        "a {end}-byte head went to the stream path, not to a 431"
    );
    assert_eq!(uri.path(), "/v1/events");
    for name in ["origin", "upgrade", "transfer-encoding", "expect"] {
        assert!(!headers.contains_key(name), "{name} needs hyper");
    }
    if let Ok(q) = events::stream_query(uri) {
        let _ = events::client_token(headers, &q);
    }
}

/// Where the first head ends: after its first empty line (httparse allows LF alone).
fn head_end(read: &[u8]) -> Option<usize> {
    (0..read.len()).find_map(|i| {
        let rest = &read[i..];
        if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}
