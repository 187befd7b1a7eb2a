//! The WebSocket relay's frame-boundary scanner (`gatehouse::websocket::scan`), which copies
//! payloads without decoding them, against a relay that decodes every frame and encodes it
//! again with tungstenite's codec (`gatehouse::websocket::scan_check`).
//!
//! Checked beyond "no panic": for any bytes, read in pieces cut anywhere (cut points from
//! the input, and one byte per read), both relays pass on the same bytes, owe the same
//! pongs and stop the same way (close and its code, too big, protocol violation, or more
//! input needed). Input: one flags byte (bit 0: the bytes come from the client; bits 1–2:
//! the message limit; bits 3–5: how many cut points follow as 16-bit values), then the
//! stream.

#![no_main]

use gatehouse::websocket::scan_check::check;
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [125, 300, 70_000, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let from_client = flags & 1 == 1;
    let max = LIMITS[usize::from(flags >> 1 & 3)];
    let cut_bytes = (usize::from(flags >> 3 & 7) * 2).min(rest.len());
    let (cuts, input) = rest.split_at(cut_bytes);
    let cuts: Vec<usize> = cuts
        .chunks(2)
        .map(|c| c.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)))
        .collect();
    if let Err(e) = check(input, &cuts, from_client, max) {
        panic!("{e}");
    }
    let bytewise: Vec<usize> = (0..input.len()).collect();
    if let Err(e) = check(input, &bytewise, from_client, max) {
        panic!("one byte per read: {e}");
    }
});
