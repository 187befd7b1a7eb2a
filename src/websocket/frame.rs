//! RFC 6455 §5.2 frame headers: reading one from bytes and writing one back, always with
//! the minimal length encoding. The relay writes every header the other side reads, so
//! the framing a peer sees is exactly the framing gatehouse checked.

/// The longest header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER: usize = 14;
/// Control frames carry at most this much payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1–3 as the three bits below the FIN bit (0 unless an extension says otherwise).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// As written on the wire, before any check (a 64-bit length may have its top bit set).
    pub len: u64,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// How many header bytes the frame starting with `first_two` needs in all.
pub fn header_len(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// Reads a header from the start of `bytes`: `None` until all of it is there, else the
/// header and its size in bytes.
pub fn parse(bytes: &[u8]) -> Option<(Header, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let &second = rest.first()?;
    let size = header_len(second);
    let h = bytes.get(..size)?;
    let (len, at) = match second & 0x7f {
        126 => (be(h.get(2..4)?), 4),
        127 => (be(h.get(2..10)?), 10),
        n => (u64::from(n), 2),
    };
    let mask = match h.get(at..at + 4) {
        Some(&[a, b, c, d]) if second & 0x80 != 0 => Some([a, b, c, d]),
        _ => None,
    };
    let header = Header {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 0x7,
        opcode: first & 0x0f,
        mask,
        len,
    };
    Some((header, size))
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))
}

/// Writes `header` with the shortest length encoding; returns the bytes used.
pub fn encode(header: &Header, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = u8::from(header.fin) << 7 | (header.rsv & 0x7) << 4 | (header.opcode & 0x0f);
    let masked = if header.mask.is_some() { 0x80 } else { 0 };
    let mut at = match header.len {
        0..=125 => {
            out[1] = masked | header.len as u8;
            2
        }
        126..=0xffff => {
            out[1] = masked | 126;
            out[2..4].copy_from_slice(&(header.len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = masked | 127;
            out[2..10].copy_from_slice(&header.len.to_be_bytes());
            10
        }
    };
    if let Some(key) = header.mask {
        out[at..at + 4].copy_from_slice(&key);
        at += 4;
    }
    at
}

/// XORs `bytes` with the masking key, `offset` bytes into the payload (RFC 6455 §5.3).
pub fn apply_mask(bytes: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

/// A whole control frame from gatehouse itself (a pong, a close), masked when it goes to
/// the upstream, as a client's frames must be.
pub fn control(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = Header {
        fin: true,
        rsv: 0,
        opcode,
        mask,
        len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER];
    let n = encode(&header, &mut head);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(head.get(..n).unwrap_or_default());
    let start = frame.len();
    frame.extend_from_slice(payload);
    if let (Some(key), Some(body)) = (mask, frame.get_mut(start..)) {
        apply_mask(body, key, 0);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_lengths_come_back_minimal() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = Header {
                    fin: len % 2 == 0,
                    rsv: 0,
                    opcode: OP_BINARY,
                    mask,
                    len,
                };
                let mut out = [0u8; MAX_HEADER];
                let n = encode(&h, &mut out);
                assert_eq!(parse(&out[..n]), Some((h, n)));
                assert_eq!(parse(&out[..n - 1]), None);
            }
        }
        // A 16-bit length of 5 is read as 5 and written back in the short form.
        let (h, n) = parse(&[0x82, 126, 0, 5]).unwrap();
        assert_eq!((h.len, n), (5, 4));
        let mut out = [0u8; MAX_HEADER];
        let n = encode(&h, &mut out);
        assert_eq!(&out[..n], &[0x82, 5]);
    }
}
