//! Reads a client's first message straight off its socket, for first-message
//! authentication: whole, unmasked and checked, and not one byte past its end, so the relay
//! that follows starts exactly at the next frame.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame::{self, MAX_HEADER};

/// Why no text message came.
#[derive(Debug)]
pub(crate) enum NotText {
    /// The socket failed (this includes the pre-authentication budget's refusal).
    Io(std::io::Error),
    /// Something else came first (a control frame, binary, a bad frame, too much, not UTF-8).
    Other,
}

/// The first message, if it is text of at most `max` bytes in well-formed client frames.
pub(crate) async fn read_text<R>(io: &mut R, max: usize) -> Result<String, NotText>
where
    R: AsyncRead + Unpin,
{
    let mut message = Vec::new();
    let mut first = true;
    loop {
        let mut head = [0u8; MAX_HEADER];
        io.read_exact(&mut head[..2]).await.map_err(NotText::Io)?;
        let size = frame::header_len(head[1]);
        io.read_exact(&mut head[2..size])
            .await
            .map_err(NotText::Io)?;
        let (h, _) = frame::parse(&head[..size]).ok_or(NotText::Other)?;
        let opcode = if first {
            frame::OP_TEXT
        } else {
            frame::OP_CONTINUATION
        };
        let total = (message.len() as u64).saturating_add(h.len);
        let Some(key) = h.mask.filter(|_| h.rsv == 0 && h.opcode == opcode) else {
            return Err(NotText::Other);
        };
        if total > max as u64 {
            return Err(NotText::Other);
        }
        let start = message.len();
        message.resize(total as usize, 0);
        let payload = message.get_mut(start..).unwrap_or_default();
        io.read_exact(payload).await.map_err(NotText::Io)?;
        frame::apply_mask(payload, key, 0);
        if h.fin {
            return String::from_utf8(message).map_err(|_| NotText::Other);
        }
        first = false;
    }
}
