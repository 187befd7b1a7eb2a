use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{duplex, DuplexStream};
use tokio_tungstenite::tungstenite::Message;

#[test]
fn a_client_close_in_gatehouse_range_is_rewritten_for_the_upstream() {
    for code in [4401, 4403, 4400, 4499] {
        let p = plan(Ending::Closed(
            Side::Client,
            Some(close_frame(code, "token expired")),
        ));
        assert_eq!(p.upstream, Farewell::Forward(Some(close_frame(4000, ""))));
        assert_eq!((p.client, p.code), (Farewell::Echo, Some(code)));
    }
    for code in [1000, 1001, 4000, 4399, 4500] {
        let p = plan(Ending::Closed(Side::Client, Some(close_frame(code, "bye"))));
        assert_eq!(
            p.upstream,
            Farewell::Forward(Some(close_frame(code, "bye")))
        );
    }
    // The upstream's own closes reach the client as they are.
    let p = plan(Ending::Closed(Side::Upstream, Some(close_frame(4401, "x"))));
    assert_eq!(p.client, Farewell::Forward(Some(close_frame(4401, "x"))));
}

#[test]
fn authentication_endings_tell_both_sides_4401() {
    for (ending, text) in [
        (Ending::Expired, "token expired"),
        (Ending::Revoked, "token revoked"),
        (Ending::KeyWithdrawn, "token key withdrawn"),
    ] {
        let p = plan(ending);
        assert_eq!(p.client, Farewell::Close(4401, text));
        assert_eq!(p.upstream, Farewell::Close(4401, text));
    }
    let p = plan(Ending::Stalled(Side::Client));
    assert_eq!((p.client, p.reason), (Farewell::Nothing, "client_stalled"));
}

#[test]
fn the_idle_timer_also_finds_stalled_sends() {
    let idle = Duration::from_secs(10);
    let tally = Tally::new();
    let t0 = tally.start;
    tally.read_at(t0);
    assert_eq!(tally.next_check(idle, t0), Ok(t0 + idle));
    assert_eq!(tally.next_check(idle, t0 + idle), Err(Ending::Idle));
    tally.sending(Side::Upstream, Some(t0));
    tally.read_at(t0 + Duration::from_secs(5));
    assert_eq!(
        tally.next_check(idle, t0 + Duration::from_secs(6)),
        Ok(t0 + idle)
    );
    assert_eq!(
        tally.next_check(idle, t0 + idle),
        Err(Ending::Stalled(Side::Upstream))
    );
}

async fn pair(role: Role) -> (DuplexStream, WebSocketStream<DuplexStream>) {
    // Tiny pipes: a side that does not read blocks the relay's sends to it at once.
    let (proxy_side, far) = duplex(256);
    let peer_role = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let peer = WebSocketStream::from_raw_socket(far, peer_role, None).await;
    (proxy_side, peer)
}

fn session(deadline: Duration) -> Session {
    Session {
        deadline: Some(Instant::now() + deadline),
        revocation: None,
        key: None,
        idle_timeout: Duration::from_secs(3600),
        lifetime_end: None,
        drain: CancellationToken::new(),
        max_message_bytes: 1 << 16,
    }
}

#[tokio::test(start_paused = true)]
async fn expiry_closes_the_upstream_while_the_client_reads_nothing() {
    let (client, _deaf_client) = pair(Role::Server).await;
    let (upstream, hub) = pair(Role::Client).await;
    let (mut hub_tx, mut hub_rx) = hub.split();
    let flood = tokio::spawn(async move {
        while hub_tx.send(Message::binary(vec![1u8; 1024])).await.is_ok() {}
    });
    let relay = tokio::spawn(relay(client, upstream, session(Duration::from_secs(5))));
    let close = loop {
        match hub_rx.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("the upstream got no close: {other:?}"),
        }
    };
    assert_eq!(close, Some(close_frame(4401, "token expired")));
    let end = relay.await.unwrap();
    assert_eq!((end.reason, end.code), ("token_expired", Some(4401)));
    flood.abort();
}

#[tokio::test(start_paused = true)]
async fn a_send_stalled_for_idle_timeout_cuts_the_peer_that_stopped_reading() {
    let (client, deaf_client) = pair(Role::Server).await;
    let (upstream, hub) = pair(Role::Client).await;
    let mut s = session(Duration::from_secs(86400));
    s.idle_timeout = Duration::from_secs(10);
    let relay = tokio::spawn(relay(client, upstream, s));
    // The client keeps talking, so the session is never idle, but never reads what the
    // upstream floods it with.
    let (mut client_tx, _client_rx) = deaf_client.split();
    let talk = tokio::spawn(async move {
        while client_tx.send(Message::text("still here")).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let (mut hub_tx, mut hub_rx) = hub.split();
    let flood = tokio::spawn(async move {
        while hub_tx.send(Message::binary(vec![1u8; 1024])).await.is_ok() {}
    });
    let close = loop {
        match hub_rx.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("the upstream got no close: {other:?}"),
        }
    };
    assert_eq!(close, Some(close_frame(1011, "peer not reading")));
    let end = relay.await.unwrap();
    assert_eq!((end.reason, end.code), ("client_stalled", Some(1011)));
    talk.abort();
    flood.abort();
}

/// Pass 15: a client that floods pings and never reads is still read (its data frames must
/// reach the upstream), so its pongs must not queue up: it is owed one, the latest, once
/// it has taken what was already sent to it.
#[tokio::test(start_paused = true)]
async fn a_ping_flood_from_a_client_that_never_reads_owes_one_pong() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, mut raw) = duplex(256);
    // The upstream takes what it is sent (the client's pings go on to it too) and answers
    // nothing, so every pong the client gets is gatehouse's.
    let (upstream, mut far) = duplex(256);
    let hub = tokio::spawn(async move { tokio::io::copy(&mut far, &mut tokio::io::sink()).await });
    let relay = tokio::spawn(relay(client, upstream, session(Duration::from_secs(3600))));
    let pings = 5_000u32;
    for n in 0..pings {
        let mut payload = [0u8; 125];
        payload[..4].copy_from_slice(&n.to_be_bytes());
        let mut frame = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
        frame.extend_from_slice(&payload);
        if raw.write_all(&frame).await.is_err() {
            let end = relay.await.unwrap();
            panic!("the relay ended at ping {n}: {} {:?}", end.reason, end.code);
        }
    }
    // Now read everything the relay has for the client.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), raw.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let mut pongs = Vec::new();
    for frame in got.chunks(127) {
        assert_eq!(&frame[..2], &[0x8A, 125], "not a pong: {frame:?}");
        pongs.push(u32::from_be_bytes([frame[2], frame[3], frame[4], frame[5]]));
    }
    assert!(
        pongs.len() < 10,
        "{} pongs were queued for a client that read nothing",
        pongs.len()
    );
    assert_eq!(
        pongs.last(),
        Some(&(pings - 1)),
        "the latest ping went unanswered"
    );
    relay.abort();
    hub.abort();
}
