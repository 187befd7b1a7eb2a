//! The relay's copy-without-decoding scanner next to a relay that decodes and re-encodes
//! every frame with tungstenite's codec, for the fuzz target `ws_relay` and the unit tests
//! that run the same property on generated frame sequences: for any bytes, split into
//! reads anywhere, both pass on the same bytes, owe the same pongs and stop the same way.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use super::scan::{Event, Scanner};

/// How a relay's reading of one direction ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The input ran out (possibly inside a frame).
    More,
    Close(Option<(u16, String)>),
    TooBig,
    Violation,
}

/// What one direction's relay passed on, the pongs it owes, and how it stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct Relayed {
    pub out: Vec<u8>,
    pub pings: Vec<Vec<u8>>,
    pub end: End,
}

/// Compares the two relays on `input` read in pieces cut at `cuts`.
pub fn check(input: &[u8], cuts: &[usize], from_client: bool, max: usize) -> Result<(), String> {
    let copied = by_scanner(input, cuts, from_client, max)?;
    let decoded = by_decoding(input, from_client, max);
    if copied == decoded {
        return Ok(());
    }
    Err(format!(
        "relays disagree (from_client={from_client}, max={max}, cuts={cuts:?})\n input  {input:02x?}\n copied {copied:02x?}\n decoded {decoded:02x?}"
    ))
}

/// The scanner, fed piece by piece as a socket would feed it.
pub fn by_scanner(
    input: &[u8],
    cuts: &[usize],
    from_client: bool,
    max: usize,
) -> Result<Relayed, String> {
    let mut scanner = Scanner::new(from_client, max);
    let mut out = Vec::new();
    let mut pings = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut start = 0;
    for end in bounds {
        let mut piece = input.get(start..end).unwrap_or_default();
        start = end;
        // Ask for a boundary whenever a frame is half copied, as the relay does with a pong.
        scanner.wake_at_boundary = !scanner.at_boundary();
        while !piece.is_empty() {
            let (used, event) = scanner.scan(piece, &mut out);
            piece = piece.get(used..).unwrap_or_default();
            let end = match event {
                None => break,
                Some(Event::Ping(p)) => {
                    pings.push(p.as_slice().to_vec());
                    continue;
                }
                Some(Event::Boundary) if scanner.at_boundary() => continue,
                Some(Event::Boundary) => return Err("woke inside a frame".into()),
                Some(Event::Close(f)) => {
                    End::Close(f.map(|f| (f.code.into(), f.reason.to_string())))
                }
                Some(Event::TooBig) => End::TooBig,
                Some(Event::Violation(_)) => End::Violation,
            };
            return Ok(Relayed { out, pings, end });
        }
    }
    Ok(Relayed {
        out,
        pings,
        end: End::More,
    })
}

/// Whole frames, decoded (unmasked) and encoded again with the same key by tungstenite.
/// An unfinished data frame whose header passed is passed on as far as it goes, as any
/// relay that does not hold whole frames must.
pub fn by_decoding(input: &[u8], from_client: bool, max: usize) -> Relayed {
    let mut r = Relayed {
        out: Vec::new(),
        pings: Vec::new(),
        end: End::More,
    };
    let mut message: Option<u64> = None;
    let mut pos = 0;
    loop {
        let rest = input.get(pos..).unwrap_or_default();
        let mut cursor = Cursor::new(rest);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Err(_) => return r.ending(End::Violation),
            Ok(None) => return r,
            Ok(Some(parsed)) => parsed,
        };
        if let Err(end) = verdict(&header, len, from_client, max, message) {
            return r.ending(end);
        }
        let body = rest.get(cursor.position() as usize..).unwrap_or_default();
        let Some(payload) = body.get(..len as usize) else {
            if let OpCode::Data(_) = header.opcode {
                let _ = header.format(len, &mut r.out);
                r.out.extend_from_slice(body);
            }
            return r;
        };
        pos = input.len() - body.len() + payload.len();
        let plain = unmask(payload, header.mask);
        match header.opcode {
            OpCode::Control(
                tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Close,
            ) => return r.ending(close_of(&plain)),
            OpCode::Control(_) => {
                if header.opcode == OpCode::Control(ping()) {
                    r.pings.push(plain.clone());
                }
            }
            OpCode::Data(_) if header.is_final => message = None,
            OpCode::Data(_) => message = Some(message.unwrap_or(0) + len),
        }
        let _ = Frame::from_payload(header, plain.into()).format(&mut r.out);
    }
}

impl Relayed {
    fn ending(mut self, end: End) -> Relayed {
        self.end = end;
        self
    }
}

fn ping() -> tokio_tungstenite::tungstenite::protocol::frame::coding::Control {
    tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Ping
}

/// The header checks, written from RFC 6455 §5 in tungstenite's order.
fn verdict(
    h: &FrameHeader,
    len: u64,
    from_client: bool,
    max: usize,
    message: Option<u64>,
) -> Result<(), End> {
    if len > max as u64 {
        return Err(End::TooBig);
    }
    if h.mask.is_some() != from_client || h.rsv1 || h.rsv2 || h.rsv3 {
        return Err(End::Violation);
    }
    match (h.opcode, message) {
        (OpCode::Control(_), _) if !h.is_final || len > 125 => Err(End::Violation),
        (OpCode::Control(_), _) => Ok(()),
        (OpCode::Data(Data::Continue), None) => Err(End::Violation),
        (OpCode::Data(Data::Continue), Some(n)) if n + len > max as u64 => Err(End::TooBig),
        (OpCode::Data(Data::Continue), Some(_)) => Ok(()),
        (OpCode::Data(_), Some(_)) => Err(End::Violation),
        (OpCode::Data(_), None) => Ok(()),
    }
}

fn unmask(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let key = mask.unwrap_or([0; 4]);
    payload
        .iter()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect()
}

fn close_of(plain: &[u8]) -> End {
    match plain {
        [] => End::Close(None),
        [_] => End::Violation,
        [a, b, reason @ ..] => match std::str::from_utf8(reason) {
            Err(_) => End::Violation,
            Ok(reason) => {
                let code = CloseCode::from(u16::from_be_bytes([*a, *b]));
                End::Close(Some(if code.is_allowed() {
                    (code.into(), reason.to_string())
                } else {
                    (1002, "Protocol violation".to_string())
                }))
            }
        },
    }
}
