//! Writes the seed corpora under fuzz/corpus/ (they are committed; rerun only to refresh):
//!
//!     cd fuzz && cargo run --example make_seeds
//!
//! JWTs are minted for the issuers of fuzz_targets/common.rs with the test fixture keys
//! (tests/fixtures/*.pem, throwaway) and the fuzz HMAC secret, valid until 2100.

use std::fs;
use std::path::PathBuf;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const HS_SECRET: &str = "gatehouse-fuzz-hmac-secret-0123456789abcdef";
const EXP: u64 = 4_102_444_800; // 2100-01-01
const PAST: u64 = 1_000_000_000;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn key(alg: Algorithm) -> EncodingKey {
    let fixtures = dir().join("../tests/fixtures");
    let read = |name: &str| fs::read(fixtures.join(name)).expect("fixture key");
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(HS_SECRET.as_bytes())
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read("ec1.pem")).expect("ec1"),
        _ => EncodingKey::from_rsa_pem(&read("rsa1.pem")).expect("rsa1"),
    }
}

fn jwt(alg: Algorithm, kid: Option<&str>, typ: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    header.typ = typ.map(String::from);
    encode(&header, claims, &key(alg)).expect("encode")
}

fn rsa2(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let pem = fs::read(dir().join("../tests/fixtures/rsa2.pem")).expect("rsa2");
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(&pem).expect("rsa2"),
    )
    .expect("encode")
}

fn claims(iss: &str) -> Value {
    json!({
        "iss": iss, "aud": "api", "sub": "alice", "exp": EXP, "iat": 1_700_000_000u64,
        "scope": "api write", "role": ["admin", "user"], "tenant": "t1", "groups": ["g", "h"],
        "level": 3
    })
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let d = dir().join("corpus").join(target);
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join(name), bytes).expect("write seed");
}

fn main() {
    let hs = claims("https://hs.fuzz/");
    let mut expired = hs.clone();
    expired["exp"] = json!(PAST);
    let mut not_yet = hs.clone();
    not_yet["nbf"] = json!(EXP - 10);
    let mut wrong_aud = hs.clone();
    wrong_aud["aud"] = json!(["nobody", "else"]);
    let mut float_exp = hs.clone();
    float_exp["exp"] = json!(4.1e9);

    let tokens: Vec<(&str, String)> = vec![
        ("hs256", jwt(Algorithm::HS256, None, Some("JWT"), &hs)),
        ("hs384", jwt(Algorithm::HS384, None, None, &hs)),
        ("hs512_kid", jwt(Algorithm::HS512, Some("any"), None, &hs)),
        ("hs256_expired", jwt(Algorithm::HS256, None, None, &expired)),
        (
            "hs256_nbf_future",
            jwt(Algorithm::HS256, None, None, &not_yet),
        ),
        (
            "hs256_wrong_aud",
            jwt(Algorithm::HS256, None, None, &wrong_aud),
        ),
        (
            "hs256_float_exp",
            jwt(Algorithm::HS256, None, None, &float_exp),
        ),
        (
            "typed_at_jwt",
            jwt(
                Algorithm::HS256,
                None,
                Some("application/at+jwt"),
                &claims("https://typed.fuzz/"),
            ),
        ),
        (
            "typed_missing_typ",
            jwt(Algorithm::HS256, None, None, &claims("https://typed.fuzz/")),
        ),
        (
            "rs256",
            jwt(Algorithm::RS256, None, None, &claims("https://rsa.fuzz/")),
        ),
        (
            "ps256",
            jwt(Algorithm::PS256, None, None, &claims("https://rsa.fuzz/")),
        ),
        (
            "es256",
            jwt(Algorithm::ES256, None, None, &claims("https://ec.fuzz/")),
        ),
        (
            "jwks_k0",
            jwt(
                Algorithm::RS256,
                Some("k0"),
                None,
                &claims("https://jwks.fuzz/"),
            ),
        ),
        ("jwks_k1", rsa2("k1", &claims("https://jwks.fuzz/"))),
        (
            "jwks_unknown_kid",
            jwt(
                Algorithm::RS256,
                Some("nope"),
                None,
                &claims("https://jwks.fuzz/"),
            ),
        ),
        (
            "jwks_e1",
            jwt(
                Algorithm::ES256,
                Some("e1"),
                None,
                &claims("https://jwks.fuzz/"),
            ),
        ),
        (
            "unknown_issuer",
            jwt(
                Algorithm::HS256,
                None,
                None,
                &claims("https://evil.example/"),
            ),
        ),
        // RS256-signed token claiming the HMAC issuer: algorithm confusion.
        (
            "rs256_for_hs_issuer",
            jwt(Algorithm::RS256, None, None, &hs),
        ),
    ];

    // jwt_validate: raw tokens ('R' + token) and harness-signed header/claims ('S' + h \n c).
    for (name, token) in &tokens {
        write(
            "jwt_validate",
            &format!("raw_{name}"),
            format!("R{token}").as_bytes(),
        );
    }
    let signed: Vec<(&str, Value, Value)> = vec![
        ("hs256", json!({"alg": "HS256", "typ": "JWT"}), hs.clone()),
        ("hs512", json!({"alg": "HS512"}), hs.clone()),
        ("crit", json!({"alg": "HS256", "crit": ["exp"]}), hs.clone()),
        ("alg_none", json!({"alg": "none"}), hs.clone()),
        (
            "jku_jwk",
            json!({"alg": "HS256", "jku": "https://evil/jwks", "jwk": {"kty": "oct", "k": "AAAA"}, "x5u": "https://evil/x5"}),
            hs.clone(),
        ),
        (
            "typed",
            json!({"alg": "HS256", "typ": "at+JWT"}),
            claims("https://typed.fuzz/"),
        ),
        (
            "iss_array",
            json!({"alg": "HS256"}),
            json!({"iss": ["https://hs.fuzz/"], "aud": "api", "exp": EXP}),
        ),
        (
            "nbf_string",
            json!({"alg": "HS256"}),
            json!({"iss": "https://hs.fuzz/", "aud": ["api"], "exp": EXP, "nbf": "0"}),
        ),
        (
            "exp_negative",
            json!({"alg": "HS256"}),
            json!({"iss": "https://hs.fuzz/", "aud": "other", "exp": -1}),
        ),
        (
            "claims_types",
            json!({"alg": "HS256", "kid": "x"}),
            json!({"iss": "https://hs.fuzz/", "aud": "api", "exp": EXP, "scp": ["api", "write"], "role": "ops", "tenant": ["t1"], "groups": "g", "level": 3.0, "sub": "bob\r\nX-Admin: 1"}),
        ),
    ];
    for (name, header, body) in signed {
        write(
            "jwt_validate",
            &format!("signed_{name}"),
            format!("S{header}\n{body}").as_bytes(),
        );
    }

    // token_extract: route line, request line, headers.
    let hs_token = &tokens[0].1;
    let heads: Vec<(&str, String)> = vec![
        ("header", format!("header\nGET /api/hub HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer {hs_token}\r\n")),
        ("query", format!("query:access_token,header\nGET /hub/negotiate?negotiateVersion=1&access_token={hs_token} HTTP/1.1\r\nHost: gw\r\n")),
        ("query_encoded", "query:access_token,strip,path:/api\nGET /api/x?ACCESS%5Ftoken=a&access_token=abc%2Edef%2Bg HTTP/1.1\nHost: gw\n".into()),
        ("cookie", format!("header,cookie:gatehouse_token\nGET /app HTTP/2\r\nCookie: theme=dark; gatehouse_token=\"{hs_token}\"\r\nCookie: other=1\r\n")),
        ("two_cookies", "cookie:a,cookie:b\nGET / HTTP/1.1\nCookie: b=tok.en\n".into()),
        ("subprotocol_upgrade", format!("subprotocol,ws,origin:https://app.fuzz\nGET /ws/hub HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nOrigin: https://app.fuzz\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, bearer.{hs_token}\r\n")),
        ("subprotocol_plain", "subprotocol\nGET /ws HTTP/1.1\nSec-WebSocket-Protocol: bearer.abc\n".into()),
        ("ticket", "ticket:ticket,header,first-message\nGET /chat?ticket=Zm9vYmFy&x=1 HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n".into()),
        ("bearer_upstream", "header,bearer,max:16\nPOST /api HTTP/1.0\nauthorization: bearer    abc.def   \nX-Forwarded-For: 10.0.0.1\nConnection: X-Secret\nX-Secret: 1\n".into()),
        ("bad_headers", "header,query:t\nGET /?t=%ZZ&t=1 HTTP/1.1\nAuthorization: Basic abc\nAuthorization: Bearer x\n\u{7f}bad: v\n".into()),
    ];
    for (name, head) in heads {
        write("token_extract", name, head.as_bytes());
    }

    // config_parse: the shipped configs plus small variants.
    let root = dir().join("..");
    for (name, path) in [
        ("gatehouse_toml", "config/gatehouse.toml"),
        ("demo_toml", "config/demo.toml"),
    ] {
        let text = fs::read_to_string(root.join(path)).expect("config");
        write("config_parse", name, text.as_bytes());
    }
    let small = [
        ("minimal", "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n"),
        ("hmac_issuer", "[[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\nhmac_secret_env = \"HS\"\nleeway = \"5s\"\n[[route]]\npath = \"/a/\"\nupstream = \"https://u:8443\"\ntokens = [\"header\", \"query:at\", \"cookie:c\"]\nrequire.claims = { tenant = \"t1\", n = 1 }\n"),
        ("pem_issuer", "[[issuer]]\nname = \"r\"\nissuer = \"https://r/\"\naudiences = [\"x\"]\npublic_key_file = \"tests/fixtures/rsa1.pub.pem\"\nalgorithms = [\"RS256\", \"ES256\"]\n[tickets]\nparam = \"t\"\nstore = \"redis://:pw@redis:6379/0\"\n[revocation]\nstore = \"redis://user:pass@r/1\"\n[[route]]\npath = \"/ws\"\nupstream = \"http://u\"\nwebsocket = true\ntokens = [\"ticket\", \"subprotocol\", \"first-message\"]\nallowed_origins = [\"https://a.b\"]\n"),
        ("short_secret", "[admin]\ntoken_env = \"SHORT_ADMIN\"\n[[introspection]]\nname = \"i\"\nurl = \"https://id:pw@idp/introspect\"\nclient_id = \"gw\"\nclient_secret_env = \"UNSET_X\"\n[limits]\nmax_token_bytes = 0\nmax_connections = 0\ntoken_cache_entries = 9223372036854775807\n"),
        ("unknown_keys", "[listen]\naddr = \"[::1]:0\"\nbogus = 1\n[log]\nredact_params = [\"A%5Fb\", \"\"]\n[shutdown]\ngrace = \"1h 30m\"\n"),
    ];
    for (name, text) in small {
        write("config_parse", name, text.as_bytes());
    }

    // first_message.
    let messages: Vec<(&str, String)> = vec![
        (
            "auth",
            format!("{{\"type\":\"auth\",\"token\":\"{hs_token}\"}}"),
        ),
        (
            "extra_fields",
            "{\"token\":\"a.b.c\",\"type\":\"auth\",\"v\":1,\"nested\":{\"x\":[1,2]}}".into(),
        ),
        (
            "escaped",
            "{\"type\":\"\\u0061uth\",\"token\":\"a\\/b\\ud83d\\ude00\"}".into(),
        ),
        (
            "duplicate",
            "{\"type\":\"auth\",\"token\":\"a\",\"token\":\"b\"}".into(),
        ),
        ("other", "{\"type\":\"hello\",\"token\":7}".into()),
        (
            "signalr_handshake",
            "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
        ),
    ];
    for (name, text) in messages {
        write("first_message", name, text.as_bytes());
    }

    // redact: names line, then query / URL.
    let redactions = [
        ("query", "access_token,token,ticket,id_token,code\nid=1&access_token=abc.def&x&negotiateVersion=1"),
        ("encoded", "access_token,ticket\nACCESS%5Ftoken=a&a%63cess_token=b&Ticket=t&+ticket=u&=&&"),
        ("plus_names", "a+b,a%2Bb\na+b=1&a%2Bb=2&a%20b=3"),
        ("path", "code\n/cb/path?code=xyz&state=1"),
        ("userinfo", "x\nredis://:p%40ss@redis:6379/0?password=x"),
        ("userinfo_odd", "x\nhttps://user:pa/ss@host/p#frag@x"),
    ];
    for (name, text) in redactions {
        write("redact", name, text.as_bytes());
    }
    eprintln!("seeds written under {}", dir().join("corpus").display());
}
