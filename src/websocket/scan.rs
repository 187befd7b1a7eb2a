//! The frame-boundary scanner behind the relay: it reads one direction's byte stream as it
//! arrives, checks every frame header, and writes what goes on to the other side without
//! decoding payloads. Data payloads are copied as they are (a client's stay masked with its
//! own key); every header is written by us, in the minimal encoding, so the peer reads
//! exactly the frames we checked. Control frames (≤ 125 bytes) are held until whole: pings
//! and pongs then go on unchanged, and a close stops the scan so the relay can decide what
//! each side is told.
//!
//! Checked at the header, before any of the frame is passed on (RFC 6455 §5): the message
//! size against the limit, summed over a fragmented message (1009); no reserved bits (no
//! extension is ever negotiated, the relay strips them); known opcodes; control frames
//! short and unfragmented; continuations only inside a message and new messages only
//! outside one; client frames masked, upstream frames not. A 64-bit length with its top
//! bit set is larger than any limit, so it ends as too big. Text is not checked for UTF-8:
//! that is the receiving endpoint's job and needs no framing decision.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::frame::{self, Header, MAX_CONTROL_PAYLOAD, MAX_HEADER};

/// A control frame's payload, unmasked, kept inline (at most 125 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Control {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl Control {
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control({:?})", self.as_slice())
    }
}

/// What stopped a scan before the end of its input.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A ping was passed on; the sender is owed a pong with this payload.
    Ping(Control),
    /// The data frame being copied ended, and [`Scanner::wake_at_boundary`] was set.
    Boundary,
    /// A close frame, parsed as tungstenite does (a disallowed code reads as 1002). Nothing
    /// after it is read.
    Close(Option<CloseFrame>),
    /// A frame would take its message over the limit.
    TooBig,
    /// A frame breaks the protocol (the reason is for logs).
    Violation(&'static str),
}

#[derive(Clone, Copy)]
enum State {
    Header,
    /// Copying a data frame's payload: this much is still to come.
    Data(u64),
    /// Holding a control frame until all of its payload is here.
    Control(Header, Control),
}

/// One direction's scan state; see the module docs.
pub struct Scanner {
    from_client: bool,
    max_message: u64,
    head: [u8; MAX_HEADER],
    have: u8,
    state: State,
    /// Bytes so far of the fragmented data message in progress.
    message: Option<u64>,
    /// Stop with [`Event::Boundary`] when the data frame being copied ends.
    pub wake_at_boundary: bool,
    /// Payload bytes passed on (data and control) and messages passed on (whole data
    /// messages, pings and pongs), for the access log.
    pub payload_bytes: u64,
    pub messages: u64,
}

impl Scanner {
    pub fn new(from_client: bool, max_message_bytes: usize) -> Self {
        Self {
            from_client,
            max_message: max_message_bytes as u64,
            head: [0; MAX_HEADER],
            have: 0,
            state: State::Header,
            message: None,
            wake_at_boundary: false,
            payload_bytes: 0,
            messages: 0,
        }
    }

    /// Whether what was written so far ends with a whole frame (nothing half copied).
    pub fn at_boundary(&self) -> bool {
        !matches!(self.state, State::Data(_))
    }

    /// Payload bytes of the data frame being copied that have not arrived yet.
    pub fn frame_left(&self) -> u64 {
        match self.state {
            State::Data(left) => left,
            _ => 0,
        }
    }

    /// Scans `input`, appending what goes on to `out`. Returns how much of `input` was used
    /// and the event that stopped the scan early, if any. After a close, too big or a
    /// violation the scanner must not be fed again.
    pub fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        let mut pos = 0;
        while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
            let (used, event) = match self.state {
                State::Data(left) => self.copy_payload(rest, left, out),
                State::Control(header, held) => self.hold_control(rest, header, held, out),
                State::Header => self.read_header(rest, out),
            };
            pos += used;
            if event.is_some() {
                return (pos, event);
            }
        }
        (pos, None)
    }

    fn copy_payload(
        &mut self,
        rest: &[u8],
        left: u64,
        out: &mut Vec<u8>,
    ) -> (usize, Option<Event>) {
        let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.extend_from_slice(rest.get(..n).unwrap_or_default());
        let left = left - n as u64;
        if left > 0 {
            self.state = State::Data(left);
            return (n, None);
        }
        self.state = State::Header;
        let woke = std::mem::take(&mut self.wake_at_boundary);
        (n, woke.then_some(Event::Boundary))
    }

    fn read_header(&mut self, rest: &[u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        // The common case: the whole header is in this read.
        if self.have == 0 {
            if let Some((header, size)) = frame::parse(rest) {
                return (size, self.start_frame(header, out));
            }
        }
        let have = usize::from(self.have);
        let need = match (self.head.first(), self.head.get(1)) {
            (Some(_), Some(&second)) if have >= 2 => frame::header_len(second),
            _ => 2,
        };
        let n = rest.len().min(need - have);
        if let (Some(slot), Some(bytes)) = (self.head.get_mut(have..have + n), rest.get(..n)) {
            slot.copy_from_slice(bytes);
        }
        self.have += n as u8;
        let parsed = frame::parse(self.head.get(..usize::from(self.have)).unwrap_or_default());
        match parsed {
            Some((header, _)) => {
                self.have = 0;
                (n, self.start_frame(header, out))
            }
            None => (n, None),
        }
    }

    /// Checks a header and starts passing its frame on (a data frame at once, a control
    /// frame once whole).
    fn start_frame(&mut self, header: Header, out: &mut Vec<u8>) -> Option<Event> {
        if let Err(event) = self.check(&header) {
            return Some(event);
        }
        if header.is_control() {
            let held = Control {
                bytes: [0; MAX_CONTROL_PAYLOAD],
                len: 0,
            };
            self.state = State::Control(header, held);
            return self.control_if_whole(header, held, out);
        }
        let so_far = self.message.unwrap_or(0) + header.len;
        self.message = (!header.fin).then_some(so_far);
        self.messages += u64::from(header.fin);
        self.payload_bytes += header.len;
        write_header(&header, out);
        if header.len == 0 {
            self.state = State::Header;
            return std::mem::take(&mut self.wake_at_boundary).then_some(Event::Boundary);
        }
        self.state = State::Data(header.len);
        None
    }

    fn check(&self, h: &Header) -> Result<(), Event> {
        let violation = |why| Err(Event::Violation(why));
        // In tungstenite's order, so a frame ends a session the same way it did before.
        if matches!(h.opcode, 0x3..=0x7 | 0xB..=0xF) {
            return violation("unknown opcode");
        }
        if h.len > self.max_message {
            return Err(Event::TooBig);
        }
        if h.rsv != 0 {
            return violation("reserved bits set");
        }
        if h.mask.is_some() != self.from_client {
            return violation("wrong masking for the direction");
        }
        if h.is_control() {
            return match h.opcode {
                _ if !h.fin => violation("fragmented control frame"),
                _ if h.len > MAX_CONTROL_PAYLOAD as u64 => violation("control frame too long"),
                _ => Ok(()),
            };
        }
        match (h.opcode, self.message) {
            (frame::OP_CONTINUATION, None) => violation("continuation outside a message"),
            (frame::OP_CONTINUATION, Some(so_far)) if so_far + h.len > self.max_message => {
                Err(Event::TooBig)
            }
            (frame::OP_CONTINUATION, Some(_)) => Ok(()),
            (_, Some(_)) => violation("new message inside a fragmented one"),
            _ => Ok(()),
        }
    }

    fn hold_control(
        &mut self,
        rest: &[u8],
        header: Header,
        mut held: Control,
        out: &mut Vec<u8>,
    ) -> (usize, Option<Event>) {
        let have = usize::from(held.len);
        let n = rest.len().min(header.len as usize - have);
        if let (Some(slot), Some(bytes)) = (held.bytes.get_mut(have..have + n), rest.get(..n)) {
            slot.copy_from_slice(bytes);
        }
        held.len += n as u8;
        self.state = State::Control(header, held);
        (n, self.control_if_whole(header, held, out))
    }

    fn control_if_whole(
        &mut self,
        header: Header,
        held: Control,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        if u64::from(held.len) < header.len {
            return None;
        }
        self.state = State::Header;
        let mut plain = held;
        if let Some(key) = header.mask {
            frame::apply_mask(&mut plain.bytes[..usize::from(plain.len)], key, 0);
        }
        if header.opcode == frame::OP_CLOSE {
            return Some(close_event(plain.as_slice()));
        }
        write_header(&header, out);
        out.extend_from_slice(held.as_slice());
        self.messages += 1;
        self.payload_bytes += header.len;
        (header.opcode == frame::OP_PING).then_some(Event::Ping(plain))
    }
}

fn write_header(header: &Header, out: &mut Vec<u8>) {
    let mut head = [0u8; MAX_HEADER];
    let n = frame::encode(header, &mut head);
    out.extend_from_slice(head.get(..n).unwrap_or_default());
}

/// A close payload as tungstenite reads it (RFC 6455 §5.5.1, §7.4).
fn close_event(payload: &[u8]) -> Event {
    let (code, reason) = match payload {
        [] => return Event::Close(None),
        [_] => return Event::Violation("one-byte close payload"),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    let Ok(reason) = std::str::from_utf8(reason) else {
        return Event::Violation("close reason not UTF-8");
    };
    let code = CloseCode::from(code);
    let frame = if code.is_allowed() {
        CloseFrame {
            code,
            reason: reason.to_string().into(),
        }
    } else {
        CloseFrame {
            code: CloseCode::Protocol,
            reason: "Protocol violation".into(),
        }
    };
    Event::Close(Some(frame))
}

#[cfg(test)]
mod tests;
