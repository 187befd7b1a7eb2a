use super::validate::{validate, TokenSource};
use super::*;

const MINIMAL: &str = r#"
[[issuer]]
name = "sts"
issuer = "https://sts.example.com/"
audiences = ["api"]
hmac_secret_env = "HS"

[[route]]
path = "/hubs/chat/"
upstream = "http://chat:5000"
tokens = ["header", "query:access_token", "cookie:at"]
"#;

fn secrets(name: &str) -> Option<String> {
    (name == "HS").then(|| "x".repeat(32))
}

fn errors_of(toml: &str) -> Vec<String> {
    let raw = load_str(toml).unwrap();
    validate(&raw, &secrets).unwrap_err().messages().to_vec()
}

#[test]
fn a_minimal_config_validates_with_defaults() {
    let config = validate(&load_str(MINIMAL).unwrap(), &secrets).unwrap();
    assert_eq!(config.routes[0].path, "/hubs/chat");
    assert_eq!(
        config.routes[0].tokens,
        vec![
            TokenSource::Header,
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("at".into())
        ]
    );
    assert_eq!(
        config.issuers[0].algorithms,
        vec![jsonwebtoken::Algorithm::HS256]
    );
    assert_eq!(config.issuers[0].leeway.as_secs(), 30);
    assert_eq!(config.max_token_bytes, 16384);
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let err =
        load_str("[listen]\nadress = \"x\"\n[[route]]\npath = \"/\"\nupstreem = \"y\"\n[bogus]\n")
            .unwrap_err();
    let text = err.to_string();
    for key in ["listen.adress", "route.0.upstreem", "bogus"] {
        assert!(text.contains(key), "{text}");
    }
}

#[test]
fn every_bad_value_is_reported_with_its_key_path() {
    let toml = r#"
[listen]
addr = "nowhere"
[shutdown]
grace = "soon"
[[issuer]]
name = "a"
issuer = "https://a/"
audiences = ["x"]
algorithms = ["none", "RS256"]
[[issuer]]
name = "b"
issuer = "https://b/"
audiences = ["x"]
public_key_file = "/nonexistent.pem"
algorithms = ["NoNe"]
[[route]]
path = "/a"
[[route]]
path = "/a/"
upstream = "http://u"
timeout = "forever"
[[route]]
path = "/b"
upstream = "http://u"
tokens = ["carrier-pigeon"]
"#;
    let errors = errors_of(toml).join("\n");
    for expected in [
        "listen.addr",
        "shutdown.grace",
        "issuer[0]: no key source",
        "issuer[0].algorithms[0]: \"none\" can never be allowed",
        "issuer[1].algorithms[0]: \"none\" can never be allowed",
        "route[0].upstream: required",
        "route[1].timeout",
        "route[2].tokens[0]: unknown token source",
        "route[1].path: \"/a\" appears twice",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in\n{errors}"
        );
    }
}

#[test]
fn hmac_algorithms_need_an_hmac_key_and_vice_versa() {
    let toml = r#"
[[issuer]]
name = "a"
issuer = "https://a/"
audiences = ["x"]
hmac_secret_env = "HS"
algorithms = ["RS256"]
[[route]]
path = "/"
upstream = "http://u"
"#;
    let errors = errors_of(toml).join("\n");
    assert!(
        errors.contains("issuer[0].algorithms[0]: RS256 needs a public key"),
        "{errors}"
    );
}

#[test]
fn a_missing_secret_is_an_error_that_names_the_variable_not_a_value() {
    let raw = load_str(MINIMAL).unwrap();
    let errors = validate(&raw, &|_| None).unwrap_err().to_string();
    assert!(
        errors.contains("issuer[0].hmac_secret_env: environment variable HS is not set"),
        "{errors}"
    );
}

#[test]
fn environment_overrides_use_double_underscores_and_ignore_non_keys() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("gatehouse.toml", MINIMAL)?;
        jail.set_env("GATEHOUSE_LISTEN__ADDR", "127.0.0.1:9443");
        jail.set_env("GATEHOUSE_LIMITS__MAX_TOKEN_BYTES", "4096");
        jail.set_env("GATEHOUSE_CONFIG", "elsewhere.toml");
        jail.set_env("GATEHOUSE_HS_SECRET", "not-a-key");
        let raw = load_file(std::path::Path::new("gatehouse.toml")).map_err(|e| e.to_string())?;
        assert_eq!(raw.listen.addr, "127.0.0.1:9443");
        assert_eq!(raw.limits.max_token_bytes, Some(4096));
        Ok(())
    });
}

#[test]
fn check_output_masks_credentials_in_urls() {
    let mut raw = load_str(MINIMAL).unwrap();
    raw.routes[0].upstream = "http://user:hunter2@chat:5000".into();
    let shown = raw.to_masked_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("REDACTED@chat:5000"));
}

#[test]
fn token_parameter_names_must_not_need_encoding_and_durations_stay_sane() {
    let toml = r#"
[[issuer]]
name = "a"
issuer = "https://a/"
audiences = ["x"]
hmac_secret_env = "HS"
leeway = "60years"
[[route]]
path = "/"
upstream = "http://u"
tokens = ["query:a+b", "cookie:x%5Fy"]
idle_timeout = "100000years"
"#;
    let errors = errors_of(toml).join("\n");
    for expected in [
        "route[0].tokens[0]",
        "route[0].tokens[1]",
        "issuer[0].leeway",
        "route[0].idle_timeout",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in\n{errors}"
        );
    }
}

#[test]
fn secrets_may_come_from_files_which_the_reload_watch_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (hmac, admin) = (dir.path().join("hmac"), dir.path().join("admin"));
    std::fs::write(&hmac, format!("{}\n", "k".repeat(32))).unwrap();
    std::fs::write(&admin, "admin-secret\r\n").unwrap();
    let toml = MINIMAL.replace(
        "hmac_secret_env = \"HS\"",
        &format!("hmac_secret_file = {:?}", hmac.display().to_string()),
    ) + &format!("[admin]\ntoken_file = {:?}\n", admin.display().to_string());
    let config = validate(&load_str(&toml).unwrap(), &secrets).unwrap();
    let KeySource::Hmac(key) = &config.issuers[0].keys else {
        panic!("not an HMAC key: {:?}", config.issuers[0].keys);
    };
    assert_eq!(
        key.expose(),
        "k".repeat(32),
        "the trailing newline is not part of it"
    );
    assert_eq!(
        config.admin_token.as_ref().unwrap().expose(),
        "admin-secret"
    );
    assert_eq!(config.secret_files, [admin.clone(), hmac.clone()]);

    // Both sources, or an unreadable file: an error naming the key and path only.
    let both = toml.replace("[admin]\n", "[admin]\ntoken_env = \"HS\"\n");
    assert!(errors_of(&both)
        .iter()
        .any(|m| m.contains("admin.token_env or admin.token_file, not both")));
    std::fs::remove_file(&hmac).unwrap();
    let missing = errors_of(&toml);
    assert!(
        missing
            .iter()
            .any(|m| m.starts_with("issuer[0].hmac_secret_file") && m.contains("No such file")),
        "{missing:?}"
    );
    std::fs::write(&hmac, "short").unwrap();
    let short = errors_of(&toml).join("\n");
    assert!(
        short.contains("at least 32 bytes") && !short.contains("short"),
        "{short}"
    );
}

#[test]
fn syntax_errors_give_the_position_but_never_quote_the_line() {
    let err = load_str("[revocation]\nstore = \"redis://:hunter2@redis:6379\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(
        err.contains("line 2") && err.contains("invalid basic string"),
        "{err}"
    );
}

#[test]
fn pre_auth_limits_default_from_the_token_size_and_must_fit_one_token() {
    let config = validate(&load_str(MINIMAL).unwrap(), &secrets).unwrap();
    assert_eq!(config.pre_auth.bytes, 16384 + 1024);
    assert_eq!(config.pre_auth.total_bytes, 16 << 20);
    assert_eq!(config.pre_auth.body_read_timeout.as_secs(), 10);
    let toml = format!(
        "{MINIMAL}\n[limits]\nmax_token_bytes = 4096\npre_auth_bytes = 4100\n\
         pre_auth_total_bytes = 2000\nbody_read_timeout = \"0s\"\n"
    );
    let errors = errors_of(&toml).join("\n");
    for key in [
        "limits.pre_auth_bytes",
        "limits.pre_auth_total_bytes",
        "limits.body_read_timeout",
    ] {
        assert!(errors.contains(key), "{key} missing from:\n{errors}");
    }
}

#[test]
fn a_websocket_route_reading_a_cookie_must_list_its_origins() {
    let route = |extra: &str| {
        format!(
            "{MINIMAL}websocket = true\n{extra}\n[[route]]\npath = \"/b\"\nupstream = \"http://b\"\n"
        )
    };
    // Any site's page can open a WebSocket, and the browser attaches the cookie to it.
    for extra in ["", "allowed_origins = [\"*\"]"] {
        let errors = errors_of(&route(extra));
        assert!(
            errors
                .iter()
                .any(|m| m.starts_with("route[0].allowed_origins:")
                    && m.contains("cookie:at")
                    && m.contains("https://app.example.com")),
            "{extra:?}: {errors:?}"
        );
    }
    let listed = route("allowed_origins = [\"https://app.example.com\"]");
    assert!(validate(&load_str(&listed).unwrap(), &secrets).is_ok());
    // Not a WebSocket route, or no cookie: nothing to refuse.
    assert!(validate(&load_str(MINIMAL).unwrap(), &secrets).is_ok());
    let no_cookie = route("").replace(", \"cookie:at\"", "");
    assert!(validate(&load_str(&no_cookie).unwrap(), &secrets).is_ok());
}

#[test]
fn edge_clocks_and_http2_limits_have_safe_defaults_and_refuse_zero() {
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n";
    let config = validate(&load_str(route).unwrap(), &secrets).unwrap();
    assert_eq!(config.close_grace, std::time::Duration::from_secs(5));
    assert_eq!(config.write_timeout, std::time::Duration::from_secs(60));
    assert_eq!(config.http2_max_concurrent_streams, 100);
    assert_eq!(config.http2_max_resets, 100);
    let zero = format!(
        "[limits]\nclose_grace = \"0s\"\nwrite_timeout = \"0s\"\nhttp2_max_concurrent_streams = 0\nhttp2_max_resets = 0\n{route}"
    );
    let errors = errors_of(&zero).join("\n");
    for key in [
        "limits.close_grace",
        "limits.write_timeout",
        "limits.http2_max_concurrent_streams",
        "limits.http2_max_resets",
    ] {
        assert!(errors.contains(key), "missing {key:?} in\n{errors}");
    }
}

#[test]
fn upstream_http2_caps_default_to_100_streams_and_16_connections_and_refuse_zero() {
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n";
    let config = validate(&load_str(route).unwrap(), &secrets).unwrap();
    assert_eq!(config.routes[0].upstream_http2_max_streams, 100);
    assert_eq!(config.routes[0].upstream_http2_max_connections, 16);
    for (key, bad) in [
        ("upstream_http2_max_streams", 0),
        ("upstream_http2_max_streams", 1001),
        ("upstream_http2_max_connections", 0),
        ("upstream_http2_max_connections", 1025),
    ] {
        let errors = errors_of(&format!("{route}{key} = {bad}\n")).join("\n");
        assert!(errors.contains(key), "{key} = {bad} passed:\n{errors}");
    }
}

/// Every duration key where zero makes no sense refuses "0s", naming the key; the few
/// where zero means something (documented) accept it.
#[test]
fn zero_durations_are_refused_where_zero_means_nothing() {
    let base = "[[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\n\
                hmac_secret_env = \"HS\"\nleeway = \"0s\"\n";
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://u:5000\"\nwebsocket = true\n\
                 max_lifetime = \"0s\"\ncors = { max_age = \"0s\" }\n\
                 allowed_origins = [\"https://app.example\"]\n";
    let intro = "[[introspection]]\nname = \"i\"\nurl = \"https://i/x\"\nclient_id = \"c\"\n\
                 client_secret_env = \"HS\"\ncache = \"0s\"\n";
    let zero_allowed = format!("{base}{intro}{route}");
    assert!(
        validate(&load_str(&zero_allowed).unwrap(), &secrets).is_ok(),
        "{:?}",
        validate(&load_str(&zero_allowed).unwrap(), &secrets).err()
    );
    let zeroed = [
        ("route[0].timeout", "timeout = \"0s\"\n"),
        ("route[0].connect_timeout", "connect_timeout = \"0s\"\n"),
        (
            "route[0].first_message_timeout",
            "first_message_timeout = \"0s\"\n",
        ),
        ("route[0].idle_timeout", "idle_timeout = \"0s\"\n"),
        (
            "route[0].upstream_idle_timeout",
            "upstream_idle_timeout = \"0s\"\n",
        ),
        (
            "route[0].upstream_discovery.resolve_every",
            "upstream_discovery = { resolve_every = \"0s\" }\n",
        ),
    ];
    for (key, line) in zeroed {
        let errors = errors_of(&format!("{base}{route}{line}"));
        assert_eq!(errors.len(), 1, "{line}: {errors:?}");
        assert!(errors[0].starts_with(&format!("{key}: ")), "{errors:?}");
    }
    let tables = [
        ("revocation.retain", "[revocation]\nretain = \"0s\"\n"),
        ("revocation.retain", "[revocation]\nretain = \"900ms\"\n"),
        ("revocation.resync", "[revocation]\nresync = \"0s\"\n"),
        ("tickets.ttl", "[tickets]\nttl = \"0s\"\n"),
        ("shutdown.grace", "[shutdown]\ngrace = \"0s\"\n"),
        ("reload.interval", "[reload]\ninterval = \"0s\"\n"),
        ("trace.otlp_timeout", "[trace]\notlp_timeout = \"0s\"\n"),
        ("introspection[0].timeout", "timeout = \"0s\"\n"),
        ("issuer[0].refresh", "refresh = \"0s\"\n"),
        (
            "limits.header_read_timeout",
            "[limits]\nheader_read_timeout = \"0s\"\n",
        ),
        ("limits.idle_timeout", "[limits]\nidle_timeout = \"0s\"\n"),
        ("limits.close_grace", "[limits]\nclose_grace = \"0s\"\n"),
        ("limits.write_timeout", "[limits]\nwrite_timeout = \"0s\"\n"),
        (
            "limits.body_stall_timeout",
            "[limits]\nbody_stall_timeout = \"0s\"\n",
        ),
        (
            "limits.body_read_timeout",
            "[limits]\nbody_read_timeout = \"0s\"\n",
        ),
    ];
    for (key, table) in tables {
        // After the introspection table, so a bare key lands in it; after the issuer's
        // keys for `refresh`.
        let toml = match key {
            "issuer[0].refresh" => format!("{base}{table}{route}"),
            _ => format!("{base}{route}{intro}{table}"),
        };
        let errors = errors_of(&toml);
        assert_eq!(errors.len(), 1, "{table}: {errors:?}");
        assert!(errors[0].starts_with(&format!("{key}: ")), "{errors:?}");
    }
    let retain = errors_of(&format!("{base}{route}[revocation]\nretain = \"0s\"\n"));
    assert_eq!(
        retain,
        ["revocation.retain: must be at least 1s: set it to at least your longest token lifetime"]
    );
}

#[test]
fn a_tls_reload_interval_under_100ms_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let signed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&cert, signed.cert.pem()).unwrap();
    std::fs::write(&key, signed.signing_key.serialize_pem()).unwrap();
    let tls = |interval: &str| {
        format!(
            "[listen.tls]\ncert = {:?}\nkey = {:?}\nreload_interval = \"{interval}\"\n\
             [[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let config = validate(&load_str(&tls("2s")).unwrap(), &secrets).unwrap();
    assert_eq!(config.tls.unwrap().reload_interval.as_secs(), 2);
    // Pass 17: "1ns" spun an idle process as "0s" did.
    for spin in ["0s", "1ns", "99ms"] {
        assert_eq!(
            errors_of(&tls(spin)),
            ["listen.tls.reload_interval: must be at least 100ms: the certificate files are polled that often"],
            "{spin}"
        );
    }
    let config = validate(&load_str(&tls("100ms")).unwrap(), &secrets).unwrap();
    assert_eq!(config.tls.unwrap().reload_interval.as_millis(), 100);
    let reload = |interval: &str| {
        format!("[reload]\ninterval = \"{interval}\"\n[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n")
    };
    assert_eq!(
        errors_of(&reload("1ns")),
        ["reload.interval: must be at least 100ms: the config file is polled that often"]
    );
}

#[test]
fn the_documented_smallest_head_works_alone_and_the_token_limit_follows_it() {
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n";
    let config = validate(
        &load_str(&format!("{route}[limits]\nmax_header_bytes = 8192\n")).unwrap(),
        &secrets,
    )
    .unwrap();
    assert_eq!(
        (config.max_header_bytes, config.max_token_bytes),
        (8192, 8192)
    );
    assert_eq!(config.pre_auth.bytes, 8192 + 1024);
    // A head too small is one error, not also one for the token limit it brought down.
    assert_eq!(
        errors_of(&format!("{route}[limits]\nmax_header_bytes = 8191\n")),
        ["limits.max_header_bytes: must be at least 8192"]
    );
    // Both set, and at odds: one error naming both keys with their values.
    let both = errors_of(&format!(
        "{route}[limits]\nmax_header_bytes = 8192\nmax_token_bytes = 16384\n"
    ));
    assert_eq!(both.len(), 1, "{both:?}");
    assert!(
        both[0].starts_with(
            "limits.max_token_bytes: 16384 is more than limits.max_header_bytes (8192)"
        ),
        "{both:?}"
    );
    assert_eq!(
        errors_of(&format!("{route}[limits]\nmax_token_bytes = 0\n")),
        ["limits.max_token_bytes: must be at least 1"]
    );
    // `check` prints the limit in force.
    let raw = load_str(&format!("{route}[limits]\nmax_header_bytes = 8192\n")).unwrap();
    assert!(raw.to_masked_toml().contains("max_token_bytes = 8192"));
}

#[test]
fn worker_threads_are_bounded() {
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n";
    let most = format!("{route}[runtime]\nworker_threads = 1024\n");
    assert_eq!(
        validate(&load_str(&most).unwrap(), &secrets)
            .unwrap()
            .worker_threads,
        1024
    );
    let errors = errors_of(&format!("{route}[runtime]\nworker_threads = 100000\n"));
    assert_eq!(
        errors,
        ["runtime.worker_threads: must be at most 1024 (0 = one per CPU core)"]
    );
}

/// Errors name the key the operator wrote, never a key that does not exist or none.
#[test]
fn errors_name_the_key_that_holds_the_value() {
    let issuer = "[[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\n";
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://u:5000\"\n";
    let missing = errors_of(&format!(
        "{issuer}public_key_file = \"/nonexistent/key.pem\"\n{route}"
    ));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("issuer[0].public_key_file: reading /nonexistent/key.pem"),
        "{missing:?}"
    );
    let jwks = errors_of(&format!(
        "{issuer}jwks_file = \"/nonexistent/jwks.json\"\n{route}"
    ));
    assert!(
        jwks[0].starts_with("issuer[0].jwks_file: reading /nonexistent/jwks.json"),
        "{jwks:?}"
    );
    let short = |name: &str| (name == "SHORT").then(|| "short".to_string());
    let raw = load_str(&format!("{issuer}hmac_secret_env = \"SHORT\"\n{route}")).unwrap();
    let errors = validate(&raw, &short).unwrap_err().messages().to_vec();
    assert_eq!(
        errors,
        ["issuer[0].hmac_secret_env: the secret must be at least 32 bytes"]
    );
    let both = errors_of(&format!(
        "{issuer}hmac_secret_env = \"HS\"\nhmac_secret_file = \"/x\"\n{route}"
    ));
    assert!(
        both.iter()
            .any(|m| m.starts_with("issuer[0].hmac_secret_env: set issuer[0].hmac_secret_env")),
        "{both:?}"
    );
    let unnamed = errors_of(&format!(
        "[[introspection]]\nname = \"i\"\nurl = \"https://i/x\"\nclient_id = \"c\"\n{route}"
    ));
    assert!(
        unnamed
            .iter()
            .any(|m| m.starts_with("introspection[0].client_secret_env: name the client secret")),
        "{unnamed:?}"
    );
}

#[test]
fn unknown_keys_in_optional_tables_have_no_stray_segment() {
    let toml = "[[route]]\npath = \"/\"\nupstream = \"http://u:5000\"\n\
                [route.upstream_discovery]\nresolve_evry = \"5s\"\n\
                [tickets]\nttll = \"5s\"\n[listen.tls]\nreload_intervl = \"1s\"\n";
    let Err(LoadError::UnknownKeys(keys, _)) = load_str(toml) else {
        panic!("no unknown keys found");
    };
    assert_eq!(
        keys,
        [
            "listen.tls.reload_intervl",
            "route.0.upstream_discovery.resolve_evry",
            "tickets.ttll"
        ]
    );
}

/// The errors of a document that does not read, one per line as `check` prints them.
fn type_errors(toml: &str) -> Vec<String> {
    match load_str(toml) {
        Err(LoadError::Types(errors)) => errors,
        other => other
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .split("; ")
            .map(String::from)
            .collect(),
    }
}

/// serde stops at the first type error; `check` lists every one, in plain words, with the
/// unknown keys beside them.
#[test]
fn every_type_error_is_reported_at_once_in_plain_words() {
    let toml = "[limits]\nidle_timeout = 10\nmax_connections = \"lots\"\n\
                [tickets]\nttl = 5\n\
                [[route]]\npath = \"/a\"\nupstream = \"http://a\"\n\
                [[route]]\npath = \"/b\"\nupstream = 5\ncase_sensitive = \"yes\"\nbogus = 1\n\
                tokens = \"header\"\n";
    let errors = type_errors(toml);
    assert_eq!(
        errors,
        [
            "unknown keys: route.1.bogus",
            "limits.idle_timeout: expected text in quotes, found the number 10 \
             (a duration is text with a unit, like \"10s\")",
            "limits.max_connections: expected a whole number, 0 or more, found the text \"lots\"",
            "route.1.case_sensitive: expected true or false, found the text \"yes\"",
            "route.1.tokens: expected a list, like [\"a\", \"b\"], found the text \"header\"",
            "route.1.upstream: expected a URL in quotes, or a list of them",
            "tickets.ttl: expected text in quotes, found the number 5 \
             (a duration is text with a unit, like \"10s\")",
        ]
    );
    // Text where a table belongs, and a number for a key that is not a duration.
    assert_eq!(
        type_errors("limits = 5\n[identity]\nsubject_claim = 123\n"),
        [
            "identity.subject_claim: expected text in quotes, found the number 123",
            "limits: expected a table, found the number 5",
        ]
    );
}

/// An error whose value came from a `GATEHOUSE_*` override names the variable: the file
/// may hold another value, or no such key.
#[test]
fn errors_from_environment_overrides_name_the_variable() {
    let file = "[limits]\nmax_connections = 500\n\
                [[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n";
    let refused = |var: &str, value: &str| {
        let mut messages = Vec::new();
        figment::Jail::expect_with(|jail| {
            jail.create_file("gatehouse.toml", file)?;
            jail.set_env(var, value);
            let path = std::path::Path::new("gatehouse.toml");
            messages = load_validated(path, &secrets).map_or_else(|r| r.messages(), |_| vec![]);
            Ok(())
        });
        messages
    };
    assert_eq!(
        refused("GATEHOUSE_LIMITS__MAX_CONNECTIONS", "0"),
        ["limits.max_connections: must be at least 1 (set by GATEHOUSE_LIMITS__MAX_CONNECTIONS)"]
    );
    assert_eq!(
        refused("GATEHOUSE_LIMITS__MAX_CONNECTIONS", "lots"),
        [
            "limits.max_connections: expected a whole number, 0 or more, found the text \"lots\" \
          (set by GATEHOUSE_LIMITS__MAX_CONNECTIONS)"
        ]
    );
    assert_eq!(
        refused("GATEHOUSE_LIMITS__MAX_CONECTIONS", "5"),
        ["unknown keys: limits.max_conections (set by GATEHOUSE_LIMITS__MAX_CONECTIONS)"]
    );
    assert_eq!(
        refused("GATEHOUSE_LIMITS", "5"),
        ["limits: expected a table, found the number 5 (set by GATEHOUSE_LIMITS)"]
    );
}

#[test]
fn strip_headers_are_read_and_a_rule_over_a_managed_header_is_refused() {
    let config = validate(
        &load_str(&format!(
            "{MINIMAL}\n[identity]\nstrip_headers = [\"X-Backend-User\", \"X-Internal-*\"]\n"
        ))
        .unwrap(),
        &secrets,
    )
    .unwrap();
    assert!(config.strip_headers.matches("x_backend_user"));
    assert!(config.strip_headers.matches("X-Internal-Role"));
    assert!(!config.strip_headers.matches("x-backend"));
    let errors = errors_of(&format!(
        "{MINIMAL}\n[identity]\nstrip_headers = [\"X-Ok\", \"Content-*\"]\n"
    ));
    assert_eq!(
        errors,
        ["identity.strip_headers[1]: \"Content-*\" would remove a header gatehouse manages"]
    );
}
