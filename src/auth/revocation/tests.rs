//! Unit tests of revocation entries and the memory view.
use super::*;
use serde_json::json;

fn claims(v: serde_json::Value) -> Claims {
    v.as_object().unwrap().clone()
}

#[test]
fn entries_match_by_jti_or_by_subject_before_a_time() {
    let token = Revoked::Token {
        jti: "j1".into(),
        expires: u64::MAX,
    };
    assert!(token.matches(&claims(json!({"jti": "j1", "sub": "a"}))));
    assert!(!token.matches(&claims(json!({"jti": "j2", "sub": "a"}))));
    let subject = Revoked::Subject {
        sub: "a".into(),
        before: 100,
        expires: u64::MAX,
    };
    assert!(subject.matches(&claims(json!({"sub": "a", "iat": 99}))));
    assert!(!subject.matches(&claims(json!({"sub": "a", "iat": 100}))));
    assert!(
        subject.matches(&claims(json!({"sub": "a"}))),
        "no iat: cannot prove it is newer"
    );
    assert!(!subject.matches(&claims(json!({"sub": "b", "iat": 1}))));
}

#[test]
fn entries_round_trip_as_the_admin_api_shows_them() {
    let s = Revoked::Subject {
        sub: "a".into(),
        before: 5,
        expires: 9,
    };
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(text, r#"{"sub":"a","before":5,"expires":9}"#);
    assert_eq!(serde_json::from_str::<Revoked>(&text).unwrap(), s);
    let t: Revoked = serde_json::from_str(r#"{"jti":"x","expires":3}"#).unwrap();
    assert_eq!(
        t,
        Revoked::Token {
            jti: "x".into(),
            expires: 3
        }
    );
}

fn memory() -> Revocations {
    let config = crate::config::validate::RevocationConfig {
        store: crate::config::validate::StoreConfig::Memory,
        deny_on_store_error: true,
        retain: std::time::Duration::from_secs(3600),
        resync: std::time::Duration::from_secs(5),
    };
    Revocations::new(config, None, Arc::new(Metrics::new().unwrap()))
}

#[test]
fn a_later_entry_only_widens_what_is_revoked() {
    let now = unix_now();
    let wide = Revoked::Subject {
        sub: "bob".into(),
        before: now,
        expires: now + 100,
    };
    let narrow = Revoked::Subject {
        sub: "bob".into(),
        before: 1,
        expires: now + 10,
    };
    assert_eq!(wide.widened(narrow.clone(), now), wide);
    let wider = Revoked::Subject {
        sub: "bob".into(),
        before: now + 5,
        expires: now + 50,
    };
    assert_eq!(
        wide.widened(wider, now),
        Revoked::Subject {
            sub: "bob".into(),
            before: now + 5,
            expires: now + 100
        }
    );
    let token = |expires| Revoked::Token {
        jti: "j".into(),
        expires,
    };
    assert_eq!(
        token(now + 100).widened(token(now + 10), now),
        token(now + 100)
    );
    assert_eq!(
        token(now + 10).widened(token(now + 100), now),
        token(now + 100)
    );
    let expired = token(now - 1);
    assert_eq!(expired.widened(token(now + 5), now), token(now + 5));
    let gone = Revoked::Subject {
        sub: "bob".into(),
        before: now,
        expires: now - 1,
    };
    assert_eq!(gone.widened(narrow.clone(), now), narrow);
}

#[tokio::test]
async fn the_memory_store_never_narrows_a_subject_revocation() {
    let store = memory();
    let bob = claims(json!({"sub": "bob", "iat": unix_now() - 10}));
    let first = store.entry(None, Some("bob".into()), None).unwrap();
    store.revoke(first.clone()).await.unwrap();
    assert!(store.is_revoked(&bob));
    let narrower = store.entry(None, Some("bob".into()), Some(1)).unwrap();
    store.revoke(narrower).await.unwrap();
    assert!(
        store.is_revoked(&bob),
        "a later, narrower revocation undid the first"
    );
    assert_eq!(store.list(), vec![first]);
    assert!(
        store
            .entry(None, Some("bob".into()), Some(MAX_BEFORE + 1))
            .is_none(),
        "a before past year 9999 is no time"
    );
}

/// `iat` counts whole seconds: a subject revoked "now" must cover a token issued this very
/// second (a refresh a moment earlier), and an explicit `before` keeps its meaning.
#[test]
fn revoking_a_subject_now_covers_tokens_of_this_second() {
    let view = memory();
    let now = unix_now();
    let entry = view.entry(None, Some("gina".into()), None).unwrap();
    assert!(entry.matches(&claims(json!({"sub": "gina", "iat": now}))));
    assert!(!entry.matches(&claims(json!({"sub": "gina", "iat": now + 5}))));
    let explicit = view.entry(None, Some("gina".into()), Some(now)).unwrap();
    assert!(!explicit.matches(&claims(json!({"sub": "gina", "iat": now}))));
}

/// The count that lets a check skip the maps follows what they hold: entries merged into
/// one count once, swept ones no longer, and a revocation after a sweep is seen again.
#[tokio::test]
async fn the_view_counts_what_it_holds_through_merges_and_sweeps() {
    let view = memory();
    let now = unix_now();
    let (ann, bob) = (
        claims(json!({"jti": "a1", "sub": "ann"})),
        claims(json!({"sub": "bob", "iat": now - 10})),
    );
    assert!(!view.is_revoked(&ann));
    view.apply(Revoked::Token {
        jti: "a1".into(),
        expires: now + 100,
    });
    view.apply(Revoked::Token {
        jti: "a1".into(),
        expires: now + 200,
    });
    view.apply(Revoked::Subject {
        sub: "old".into(),
        before: now,
        expires: now - 1,
    });
    assert_eq!(view.held.load(Ordering::SeqCst), 2);
    assert!(view.is_revoked(&ann));
    view.sweep();
    assert_eq!(
        view.held.load(Ordering::SeqCst),
        1,
        "only the expired one went"
    );
    assert!(view.is_revoked(&ann));
    let emptied = memory();
    emptied.apply(Revoked::Token {
        jti: "a1".into(),
        expires: now - 1,
    });
    emptied.sweep();
    assert_eq!(emptied.held.load(Ordering::SeqCst), 0);
    assert!(!emptied.is_revoked(&ann));
    let bob_entry = emptied.entry(None, Some("bob".into()), None).unwrap();
    emptied.revoke(bob_entry).await.unwrap();
    assert!(emptied.is_revoked(&bob));
}
