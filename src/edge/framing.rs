//! A second reading of HTTP/1.1 request framing, for the one ambiguity hyper forgives.
//!
//! hyper rejects obs-fold, invalid header bytes, differing `Content-Length`s and a
//! `Transfer-Encoding` that does not end in `chunked`. A request with both
//! `Content-Length` and `Transfer-Encoding` it accepts the RFC 9112 §6.3 way (the
//! transfer coding wins, the connection closes afterwards) and drops `Content-Length`
//! before our service sees the request. That is the classic smuggling shape, and a proxy
//! in front of other parsers should refuse it outright, so this module watches the bytes
//! a connection reads, finds each request head, and says for each whether it carried both.
//!
//! It follows message framing (fixed-length and chunked bodies) only to find the next
//! head. A head with no line that names a body or a switch (nearly every `GET`) needs no
//! parse for that: it has no body and no ambiguity, and whatever else is wrong with it is
//! hyper's to refuse. The others are parsed in full. It stays on for every request until
//! the connection really switches protocols:
//!
//! - a request asking to switch (`Upgrade:` or `CONNECT`) holds the bytes that follow it
//!   until its answer is known ([`Framing::answered`]); a `101` (or a `2xx` to `CONNECT`)
//!   turns the scanner off, anything else resumes scanning the held bytes as HTTP/1.1;
//! - the HTTP/2 preface turns it off (HTTP/2 has no such ambiguity);
//! - anything else it cannot follow (a head it must parse and cannot, one larger than
//!   [`MAX_HEAD`],
//!   framing it does not understand, more held bytes than [`MAX_HEAD`]) leaves it *lost*:
//!   every later request on the connection is flagged and refused. hyper refuses such
//!   bytes itself and closes, so in practice this only fails closed where the two parsers
//!   would disagree.

use std::collections::VecDeque;

/// Larger heads are hyper's to refuse (431) under any sane `limits.max_header_bytes`; past
/// this the scanner is lost. Also the most bytes held while a switch is decided.
pub const MAX_HEAD: usize = 1024 * 1024;
const MAX_HEADERS: usize = 128;

/// Per-connection scanner; [`Framing::feed`] takes every byte read, in order.
#[derive(Debug, Default)]
pub struct Framing {
    state: State,
    head: Vec<u8>,
    /// One entry per complete request head, oldest first: `true` = both lengths given.
    verdicts: VecDeque<bool>,
    /// Request heads parsed and answers reported so far: request `n` is answer `n`.
    heads: u64,
    answers: u64,
    /// The request that asked to switch protocols and has no answer yet; while it is
    /// set, bytes after its body wait in `held`.
    hold_for: Option<u64>,
    held: Vec<u8>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    /// Bytes of a fixed-length body still to come.
    Body(u64),
    Chunked(Chunk),
    /// The connection switched protocols (or speaks HTTP/2): nothing more to check.
    Off,
    /// The stream could not be followed: every later request is flagged.
    Lost,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading the hex size; `in_ext` after a `;`.
    Size {
        size: u64,
        in_ext: bool,
    },
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields after the last chunk; `line` counts the current line's bytes.
    Trailer {
        line: usize,
    },
}

impl Framing {
    /// Takes the next bytes the connection read.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match self.state {
                State::Off | State::Lost => return,
                State::Head if self.hold_for.is_some() => return self.hold(bytes),
                State::Head => self.head_bytes(bytes),
                State::Body(left) => {
                    let take = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                    &bytes[take..]
                }
                State::Chunked(chunk) => self.chunk_bytes(chunk, bytes),
            };
        }
    }

    /// Whether the next request hyper hands us carried both `Content-Length` and
    /// `Transfer-Encoding`, or came after bytes the scanner could not follow.
    pub fn next_is_ambiguous(&mut self) -> bool {
        self.verdicts
            .pop_front()
            .unwrap_or(matches!(self.state, State::Lost))
    }

    /// Reports the answer to the next request, in order: `switched` when it was a `101`
    /// (or a `2xx` to `CONNECT`), after which the bytes are no longer HTTP.
    pub fn answered(&mut self, switched: bool) {
        let index = self.answers;
        self.answers += 1;
        if switched {
            self.off();
            return;
        }
        if self.hold_for == Some(index) {
            self.hold_for = None;
            let held = std::mem::take(&mut self.held);
            self.feed(&held);
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.held.len() + bytes.len() > MAX_HEAD {
            self.lose();
        } else {
            self.held.extend_from_slice(bytes);
        }
    }

    fn head_bytes<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if self.head.is_empty() {
            // The usual case, a whole head in one read: judged where it lies, not copied.
            return match head_end(bytes) {
                Some((end, plain)) if end <= MAX_HEAD => {
                    if self.judge(&bytes[..end], plain) {
                        &bytes[end..]
                    } else {
                        &[]
                    }
                }
                Some(_) => {
                    self.lose();
                    &[]
                }
                None => {
                    self.gather(bytes);
                    &[]
                }
            };
        }
        // Search only where the end of the head can newly be: the last 3 old bytes on.
        let search_from = self.head.len().saturating_sub(3);
        let before = self.head.len();
        self.head.extend_from_slice(bytes);
        let Some(end) = head_end(&self.head[search_from..]).map(|(e, _)| e + search_from) else {
            if self.head.len() > MAX_HEAD {
                self.lose();
            }
            return &[];
        };
        if end > MAX_HEAD {
            self.lose();
            return &[];
        }
        let head = std::mem::take(&mut self.head);
        if !self.judge(&head[..end], frames_nothing(&head[..end])) {
            return &[];
        }
        // Keeps the allocation for the next head that arrives in pieces.
        self.head = head;
        self.head.clear();
        &bytes[end.saturating_sub(before)..]
    }

    /// Keeps the start of a head that has not ended yet.
    fn gather(&mut self, bytes: &[u8]) {
        self.head.extend_from_slice(bytes);
        if self.head.len() > MAX_HEAD {
            self.lose();
        }
    }

    /// Judges one whole head (up to its blank line) and moves on to its body; `false` when
    /// the stream cannot be followed from here (it is then off or lost).
    fn judge(&mut self, head: &[u8], plain: bool) -> bool {
        match self.parse_head(head, plain) {
            Some(next) => self.state = next,
            None if head.starts_with(b"PRI * HTTP/2.0\r\n") => self.off(),
            None => self.lose(),
        }
        !self.is_off()
    }

    /// Parses one head; records its verdict and returns how its body is framed.
    /// `plain`: the head [frames nothing](frames_nothing).
    fn parse_head(&mut self, head: &[u8], plain: bool) -> Option<State> {
        if plain {
            // No body, no ambiguity and no switch, whatever else the head holds: hyper
            // judges the rest, and refuses and closes on anything it cannot parse.
            self.verdicts.push_back(false);
            self.heads += 1;
            return Some(State::Head);
        }
        self.parse_fully(head)
    }

    /// [`Framing::parse_head`] by a full parse of the head.
    fn parse_fully(&mut self, head: &[u8]) -> Option<State> {
        // Uninitialised: httparse writes only the fields it finds (no 4 KiB zeroing per head).
        let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        match request.parse_with_uninit_headers(head, &mut headers) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        let mut length: Option<u64> = None;
        let mut has_length = false;
        let mut coding: Option<&[u8]> = None;
        let mut switches = request.method == Some("CONNECT");
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                has_length = true;
                length = std::str::from_utf8(h.value).ok()?.trim().parse().ok();
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                coding = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                switches = true;
            }
        }
        self.verdicts.push_back(has_length && coding.is_some());
        if switches {
            // What follows is HTTP again only if the switch is refused: wait for the answer.
            self.hold_for = Some(self.heads);
        }
        self.heads += 1;
        Some(match coding {
            Some(value) if ends_chunked(value) => State::Chunked(Chunk::Size {
                size: 0,
                in_ext: false,
            }),
            // hyper refuses any other transfer coding.
            Some(_) => State::Lost,
            None if !has_length => State::Head,
            None => match length {
                Some(0) => State::Head,
                Some(n) => State::Body(n),
                None => State::Lost,
            },
        })
    }

    fn chunk_bytes<'a>(&mut self, chunk: Chunk, bytes: &'a [u8]) -> &'a [u8] {
        match chunk {
            Chunk::Data(left) => {
                let take = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                let left = left - take as u64;
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                return &bytes[take..];
            }
            Chunk::DataEnd => {
                self.state = match bytes[0] {
                    b'\r' => State::Chunked(Chunk::DataEnd),
                    b'\n' => State::Chunked(Chunk::Size {
                        size: 0,
                        in_ext: false,
                    }),
                    _ => State::Lost,
                };
            }
            Chunk::Size { size, in_ext } => {
                self.state = match (bytes[0], in_ext) {
                    (b'\n', _) if size == 0 => State::Chunked(Chunk::Trailer { line: 0 }),
                    (b'\n', _) => State::Chunked(Chunk::Data(size)),
                    (_, true) | (b'\r', _) => State::Chunked(chunk),
                    (b';', false) => State::Chunked(Chunk::Size { size, in_ext: true }),
                    (b' ' | b'\t', false) => State::Chunked(chunk),
                    (digit, false) => {
                        match (char::from(digit).to_digit(16), size.checked_mul(16)) {
                            (Some(d), Some(s)) => State::Chunked(Chunk::Size {
                                size: s + u64::from(d),
                                in_ext: false,
                            }),
                            _ => State::Lost,
                        }
                    }
                };
            }
            Chunk::Trailer { line } => {
                self.state = match bytes[0] {
                    b'\n' if line == 0 => State::Head,
                    b'\n' => State::Chunked(Chunk::Trailer { line: 0 }),
                    b'\r' => State::Chunked(chunk),
                    _ => State::Chunked(Chunk::Trailer { line: line + 1 }),
                };
            }
        }
        &bytes[1..]
    }

    /// Whether the scanner needs no more bytes (switched, HTTP/2, or lost).
    pub fn is_off(&self) -> bool {
        matches!(self.state, State::Off | State::Lost)
    }

    fn off(&mut self) {
        self.state = State::Off;
        self.head = Vec::new();
        self.held = Vec::new();
    }

    fn lose(&mut self) {
        self.state = State::Lost;
        self.head = Vec::new();
        self.held = Vec::new();
    }
}

/// Whether `head` opens with its request line and no line begins with a name that frames a
/// body or switches protocols: `Content-Length`, `Transfer-Encoding` or `Upgrade` followed
/// by `:` or whitespace, or the `CONNECT` and `PRI` (HTTP/2 preface) methods followed by a
/// space, in any case.
///
/// Every field name and method hyper reads begins a line, so a head that passes has no
/// body and asks for no switch. Most heads pass; the few that do not (a body, an upgrade)
/// are parsed in full. Matching more than hyper would (a space before the colon, which it
/// refuses) only sends a head the long way.
///
/// A head that opens with an empty line may be nothing but empty lines: hyper skips them
/// before a request line, so they are no request of their own, and counting them as one
/// would hand the next request this one's verdict (an ambiguous request would pass under
/// it). It takes the long way, where it does not parse and the scanner fails closed.
fn frames_nothing(head: &[u8]) -> bool {
    head_end(head).is_some_and(|(_, plain)| plain)
}

/// Whether `line` begins with one of the names [`frames_nothing`] looks for.
fn names_framing(line: &[u8]) -> bool {
    // The first letter leaves one name to compare (`content-length` and `connect` part at
    // their fourth); most lines begin with none of them.
    let lower = |i: usize| line.get(i).map(u8::to_ascii_lowercase);
    let name: &[u8] = match lower(0) {
        Some(b'c') if lower(3) == Some(b't') => b"content-length",
        Some(b'c') => b"connect",
        Some(b't') => b"transfer-encoding",
        Some(b'u') => b"upgrade",
        Some(b'p') => b"pri",
        _ => return false,
    };
    line.get(..name.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(name))
        && matches!(line.get(name.len()), Some(b':' | b' ' | b'\t'))
}

/// The index just past the blank line that ends the head `bytes` begins with (`\r\n\r\n`
/// or `\n\n`), and whether the head [frames nothing](frames_nothing): one pass finds both.
fn head_end(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut named = matches!(bytes.first(), Some(b'\r' | b'\n')) || names_framing(bytes);
    // memchr: every byte of every request head passes through here.
    for i in memchr::memchr_iter(b'\n', bytes) {
        match bytes.get(i + 1..) {
            Some([b'\n', ..]) => return Some((i + 2, !named)),
            Some([b'\r', b'\n', ..]) => return Some((i + 3, !named)),
            Some(line) => named = named || names_framing(line),
            None => {}
        }
    }
    None
}

fn ends_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(stream: &[u8], read_size: usize) -> Vec<bool> {
        let mut framing = Framing::default();
        for piece in stream.chunks(read_size) {
            framing.feed(piece);
        }
        framing.verdicts.into_iter().collect()
    }

    const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nHTTP/\r\n10\r\n1.1 200 OK\r\n\r\nxx\r\n0\r\nTrailer: t\r\n\r\n\
        GET /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
        0\r\n\r\n\
        GET /d HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn heads_are_found_through_fixed_and_chunked_bodies_at_any_read_size() {
        for read_size in [1, 2, 3, 7, 64, PIPELINE.len()] {
            assert_eq!(
                verdicts(PIPELINE, read_size),
                [false, false, true, false],
                "read size {read_size}"
            );
        }
    }

    #[test]
    fn http2_turns_it_off_and_what_it_cannot_follow_flags_every_later_request() {
        let mut h2 = Framing::default();
        h2.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert!(matches!(h2.state, State::Off));
        assert!(!h2.next_is_ambiguous());

        // A head that names its framing is parsed in full, and one that cannot be parsed
        // leaves the scanner lost.
        let mut garbage = Framing::default();
        garbage
            .feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nG(T / HTTP/1.1\r\nContent-Length: 1\r\n\r\n");
        assert!(garbage.is_off());
        assert!(!garbage.next_is_ambiguous(), "the first head parsed");
        assert!(garbage.next_is_ambiguous());
        assert!(garbage.next_is_ambiguous());

        let mut huge = Framing::default();
        huge.feed(&vec![b'a'; MAX_HEAD + 10]);
        assert!(matches!(huge.state, State::Lost));
        assert!(huge.next_is_ambiguous());
    }

    const SWITCH: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    const CONNECT: &[u8] = b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n";
    const AMBIGUOUS: &[u8] =
        b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn a_refused_switch_keeps_the_guard_on_for_what_follows() {
        for first in [SWITCH, CONNECT] {
            for read_size in [1, 7, 4096] {
                let mut framing = Framing::default();
                let stream = [first, AMBIGUOUS].concat();
                for piece in stream.chunks(read_size) {
                    framing.feed(piece);
                }
                assert!(!framing.next_is_ambiguous());
                framing.answered(false);
                assert!(framing.next_is_ambiguous(), "read size {read_size}");
                // And bytes arriving after the answer are scanned as before.
                framing.answered(false);
                framing.feed(AMBIGUOUS);
                assert!(framing.next_is_ambiguous());
            }
        }
    }

    #[test]
    fn a_real_switch_turns_it_off_and_holding_is_bounded() {
        let mut switched = Framing::default();
        switched.feed(SWITCH);
        switched.feed(AMBIGUOUS);
        assert!(!switched.next_is_ambiguous());
        switched.answered(true);
        assert!(switched.is_off());
        assert!(
            !switched.next_is_ambiguous(),
            "WebSocket frames are not requests"
        );

        let mut flood = Framing::default();
        flood.feed(SWITCH);
        flood.feed(&vec![b'a'; MAX_HEAD + 1]);
        assert!(matches!(flood.state, State::Lost));
        flood.answered(false);
        assert!(!flood.next_is_ambiguous());
        assert!(flood.next_is_ambiguous());
    }

    /// A head that names no framing and no switch is judged without a parse: bodiless and
    /// unambiguous, as the full parse finds it. Names that only begin like one of those, or
    /// appear inside a line, do not count; a near spelling that hyper would refuse does.
    #[test]
    fn a_head_that_frames_nothing_is_judged_without_a_parse() {
        let plain: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nCookie: a\r\nConnect-Id: 1\r\nContents: x\r\nPragma: y\r\n\r\n",
            b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\nUpgrade-Insecure-Requests: 1\nX: Content-Length: 5\n\n",
            b"GET / HTTP/1.1\r\nContent-Lengths: 5\r\nPriority: u=1\r\nConnection: close\r\n\r\n",
            b"DELETE /x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\r\n",
        ];
        for head in plain {
            assert!(frames_nothing(head), "{}", String::from_utf8_lossy(head));
            let mut parsed = Framing::default();
            let state = parsed.parse_fully(head);
            assert!(matches!(state, Some(State::Head)));
            assert_eq!(parsed.verdicts, [false]);
        }
        let named: [&[u8]; 12] = [
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nCookie: a\r\ncOnTeNt-LeNgTh: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: x\r\nuPgRaDe : h2c\r\n\r\n",
            b"connect x:443 HTTP/1.1\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length:5\r\n\r\n",
            b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
            b"GET / HTTP/1.1\nUpgrade:\twebsocket\n\n",
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\n",
        ];
        for head in named {
            assert!(!frames_nothing(head), "{}", String::from_utf8_lossy(head));
        }
    }

    /// Empty lines that hyper skips before a request are no head of their own: an
    /// ambiguous request after two of them is still flagged, at every read size.
    #[test]
    fn empty_lines_before_a_request_never_take_its_verdict() {
        let stream: &[u8] = b"\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\
            Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for read_size in [1, 2, 5, stream.len()] {
            let mut framing = Framing::default();
            for piece in stream.chunks(read_size) {
                framing.feed(piece);
            }
            assert!(framing.next_is_ambiguous(), "read size {read_size}");
        }
    }
}
