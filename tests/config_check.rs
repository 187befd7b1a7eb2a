//! The command line: `check` accepts every shipped config and reports every error of a
//! bad one with its key path (exit 64); `token` mints only with a local key.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Output};

use support::*;

fn gatehouse(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(args).env_remove("GATEHOUSE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const DEMO_SECRET: (&str, &str) = (
    "GATEHOUSE_DEMO_SECRET",
    "0123456789abcdef0123456789abcdef-demo",
);

#[test]
fn check_accepts_every_config_we_ship() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = gatehouse(
                &["check", "--config", path.to_str().unwrap()],
                &[DEMO_SECRET],
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{} fails check:\n{stderr}",
                path.display()
            );
            assert!(
                !String::from_utf8_lossy(&out.stdout).contains(DEMO_SECRET.1),
                "check printed a secret"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected config/gatehouse.toml and config/demo.toml"
    );
}

#[test]
fn a_bad_config_exits_64_with_every_error_and_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[issuer]]
name = "a"
issuer = "https://a/"
audiences = ["x"]
algorithms = ["none"]
[[route]]
path = "/a"
[[route]]
path = "/a"
upstream = "http://u"
connect_timeout = "soon"
"#,
    )
    .unwrap();
    let out = gatehouse(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "issuer[0]: no key source",
        "issuer[0].algorithms[0]: \"none\" can never be allowed",
        "route[0].upstream: required",
        "route[1].path: \"/a\" appears twice",
        "route[1].connect_timeout",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    std::fs::write(
        &path,
        "[listen]\naddr = \"127.0.0.1:1\"\nbogus = 1\n[nonsense]\n",
    )
    .unwrap();
    let out = gatehouse(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen.bogus") && stderr.contains("nonsense"),
        "{stderr}"
    );

    let missing = gatehouse(&["check", "--config", "/nonexistent/gatehouse.toml"], &[]);
    assert_eq!(missing.status.code(), Some(64));
    assert_eq!(gatehouse(&["frobnicate"], &[]).status.code(), Some(64));
    assert_eq!(gatehouse(&["--help"], &[]).status.code(), Some(0));
}

#[test]
fn environment_overrides_show_in_the_effective_config() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let out = gatehouse(
        &["check", "--config", demo],
        &[
            DEMO_SECRET,
            ("GATEHOUSE_LISTEN__ADDR", "0.0.0.0:9443"),
            ("GATEHOUSE_SHUTDOWN__GRACE", "3s"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("addr = \"0.0.0.0:9443\""), "{stdout}");
    assert!(stdout.contains("grace = \"3s\""), "{stdout}");

    let bad = gatehouse(
        &["check", "--config", demo],
        &[DEMO_SECRET, ("GATEHOUSE_LIMITS__MAX_TOKEN_BYTES", "lots")],
    );
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max_token_bytes"));

    // An override under an absent optional table creates it, and so switches it on.
    let created = gatehouse(
        &["check", "--config", demo],
        &[
            DEMO_SECRET,
            ("GATEHOUSE_LOGOUT__RATE_LIMIT_PER_MINUTE", "5"),
        ],
    );
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(
        stdout.contains("[logout]\nendpoint = \"/.gatehouse/logout\"\nrate_limit_per_minute = 5"),
        "{stdout}"
    );

    // Arrays are TOML; arrays of tables cannot be overridden, and the errors say so.
    let listed = gatehouse(
        &["check", "--config", demo],
        &[
            DEMO_SECRET,
            ("GATEHOUSE_LISTEN__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
        ],
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("trusted_proxies = [\"10.0.0.0/8\"]"));
    let bare = gatehouse(
        &["check", "--config", demo],
        &[
            DEMO_SECRET,
            ("GATEHOUSE_LISTEN__TRUSTED_PROXIES", "10.0.0.0/8"),
        ],
    );
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains("GATEHOUSE_LISTEN__TRUSTED_PROXIES='[\"a\", \"b\"]'"),
        "{stderr}"
    );
    let element = gatehouse(
        &["check", "--config", demo],
        &[DEMO_SECRET, ("GATEHOUSE_ISSUER__0__LEEWAY", "1m")],
    );
    let stderr = String::from_utf8_lossy(&element.stderr);
    assert!(
        stderr.contains("GATEHOUSE_ISSUER__0__LEEWAY is an environment override inside [[issuer]]: arrays of tables cannot be overridden"),
        "{stderr}"
    );
}

/// The binary's side of the config tests: every type error listed, one a line, in plain
/// words; an override's error names its variable.
#[test]
fn check_lists_every_type_error_and_names_the_override_behind_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("types.toml");
    std::fs::write(
        &path,
        "[limits]\nidle_timeout = 10\nmax_connections = 500\n[tickets]\nttl = 5\n\
         [[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let out = gatehouse(&["check", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().skip(1).collect::<Vec<_>>(),
        [
            "  limits.idle_timeout: expected text in quotes, found the number 10 \
             (a duration is text with a unit, like \"10s\")",
            "  tickets.ttl: expected text in quotes, found the number 5 \
             (a duration is text with a unit, like \"10s\")",
        ],
        "{stderr}"
    );
    assert!(
        stderr.starts_with(&format!("{config}: invalid config\n")),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "[limits]\nmax_connections = 500\n\
         [[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"none\"\n",
    )
    .unwrap();
    let zero = gatehouse(
        &["check", "--config", config],
        &[("GATEHOUSE_LIMITS__MAX_CONNECTIONS", "0")],
    );
    assert_eq!(zero.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(
        stderr.contains(
            "  limits.max_connections: must be at least 1 (set by GATEHOUSE_LIMITS__MAX_CONNECTIONS)"
        ),
        "{stderr}"
    );
    let typo = gatehouse(
        &["check", "--config", config],
        &[("GATEHOUSE_LIMITS__MAX_CONECTIONS", "5")],
    );
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains(
            "  unknown keys: limits.max_conections (set by GATEHOUSE_LIMITS__MAX_CONECTIONS)"
        ),
        "{stderr}"
    );
}

#[test]
fn token_mints_a_valid_token_only_with_a_local_key() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let out = gatehouse(
        &[
            "token",
            "--config",
            demo,
            "--sub",
            "bob",
            "--claim",
            "scope=api chat",
            "--claim",
            "level=3",
            "--ttl",
            "5m",
        ],
        &[DEMO_SECRET],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["demo-api"]);
    validation.set_issuer(&["https://gatehouse.demo/"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(DEMO_SECRET.1.as_bytes()),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "bob");
    assert_eq!(data.claims["scope"], "api chat");
    assert_eq!(data.claims["level"], 3);
    let ttl = data.claims["exp"].as_u64().unwrap() - now();
    assert!((290..=300).contains(&ttl), "ttl {ttl}");

    // A lifetime under a second would mint a token expired as it is printed: a bad
    // argument, like one that is no duration.
    for bad in ["0s", "500ms", "soon"] {
        let out = gatehouse(
            &["token", "--config", demo, "--sub", "bob", "--ttl", bad],
            &[DEMO_SECRET],
        );
        assert_eq!(out.status.code(), Some(64), "--ttl {bad}");
        assert!(out.stdout.is_empty(), "--ttl {bad} printed a token");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--ttl"), "{stderr}");
    }
    let out = gatehouse(
        &["token", "--config", demo, "--sub", "bob", "--ttl", "0s"],
        &[DEMO_SECRET],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be at least 1s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A config whose keys live at an IdP cannot mint.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idp.toml");
    std::fs::write(
        &path,
        "[[issuer]]\nname = \"idp\"\nissuer = \"https://idp.example/\"\naudiences = [\"a\"]\ndiscovery = true\n\
         [[route]]\npath = \"/\"\nupstream = \"http://u\"\n",
    )
    .unwrap();
    let out = gatehouse(
        &["token", "--config", path.to_str().unwrap(), "--sub", "x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[issuer]] has a local signing key"));
}

#[test]
fn plain_http_key_and_introspection_urls_need_allow_http_and_check_warns_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http.toml");
    let write = |allow: &str| {
        std::fs::write(
            &path,
            format!(
                r#"
[[issuer]]
name = "oidc"
issuer = "http://idp.example"
audiences = ["a"]
discovery = true
{allow}
[[issuer]]
name = "jwks"
issuer = "https://b.example/"
audiences = ["a"]
jwks_url = "http://keys.example/jwks"
{allow}
[[issuer]]
name = "local"
issuer = "http://127.0.0.1:8081"
audiences = ["a"]
discovery = true
[[introspection]]
name = "idp"
url = "http://idp.example/introspect"
client_id = "gatehouse"
client_secret_env = "S"
{allow}
[[route]]
path = "/"
upstream = "http://u"
"#
            ),
        )
        .unwrap();
    };
    write("");
    let out = gatehouse(
        &["check", "--config", path.to_str().unwrap()],
        &[("S", "x")],
    );
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "issuer[0].issuer",
        "issuer[1].jwks_url",
        "introspection[0].url",
    ] {
        assert!(stderr.contains(key), "{key} not refused:\n{stderr}");
    }
    assert!(
        !stderr.contains("issuer[2]"),
        "loopback http refused:\n{stderr}"
    );

    write("allow_http = true");
    let out = gatehouse(
        &["check", "--config", path.to_str().unwrap()],
        &[("S", "x")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("WARNING:"))
        .collect();
    assert_eq!(
        warnings.len(),
        4,
        "one warning per plain-http URL:\n{stderr}"
    );
    for name in ["\"oidc\"", "\"jwks\"", "\"local\"", "introspection \"idp\""] {
        assert!(
            warnings.iter().any(|w| w.contains(name)),
            "{name}:\n{stderr}"
        );
    }
}

#[test]
fn jwks_hosts_takes_bare_host_names_and_only_with_discovery() {
    let base = "[[route]]\npath = \"/\"\nupstream = \"http://u\"\n[[issuer]]\nname = \"i\"\n\
                issuer = \"https://idp.example/\"\naudiences = [\"a\"]\n";
    let good = format!("{base}discovery = true\njwks_hosts = [\"keys.example.net\"]\n");
    assert!(load(&good, &[]).is_ok());
    let bad_host = format!("{base}discovery = true\njwks_hosts = [\"https://keys.example.net\"]\n");
    let error = load(&bad_host, &[]).unwrap_err();
    assert!(error.contains("issuer[0].jwks_hosts[0]"), "{error}");
    let without = format!(
        "{base}jwks_url = \"https://idp.example/jwks\"\njwks_hosts = [\"keys.example.net\"]\n"
    );
    let error = load(&without, &[]).unwrap_err();
    assert!(error.contains("issuer[0].jwks_hosts"), "{error}");
}

/// Runs `check` on `toml` written to a file in `dir`, from `dir` as working directory.
fn check_text(dir: &std::path::Path, toml: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join("c.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["check", "--config", "c.toml"])
        .current_dir(dir)
        .env_remove("GATEHOUSE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_effective_config_prints_every_default_and_checks_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example/tls");
    let toml = format!(
        "[listen.tls]\ncert = \"{tls}.crt\"\nkey = \"{tls}.key\"\n\
         [[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\nhmac_secret_env = \"HS\"\n\
         [[route]]\npath = \"/\"\nupstream = \"http://u:1\"\n"
    );
    let secret = ("HS", "0123456789abcdef0123456789abcdef");
    let out = check_text(dir.path(), &toml, &[secret]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).unwrap();
    for default in [
        "pre_auth_bytes = 17408",
        "provider = \"aws-lc-rs\"",
        "resumption = true",
        "session_cache_size = 20000",
        "reload_interval = \"2s\"",
        "session_ticket_lifetime = \"12h\"",
        "leeway = \"30s\"",
        "refresh = \"10m\"",
        "algorithms = [\"HS256\"]",
    ] {
        assert!(shown.contains(default), "{default} not printed:\n{shown}");
    }
    assert!(
        shown.contains("kx_groups = [\n    \"X25519\",\n    \"P-256\",\n]"),
        "{shown}"
    );
    let again = check_text(dir.path(), &shown, &[secret]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), shown);
}

#[test]
fn unknown_keys_come_with_every_other_error_and_no_error_follows_from_another() {
    let dir = tempfile::tempdir().unwrap();
    // An unknown key and a real error, reported in one run.
    let out = check_text(
        dir.path(),
        "[listen]\nadress = \"x\"\n[[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\n\
         audiences = [\"x\"]\njwks_url = \"https://a/j\"\nalgorithms = [\"none\"]\n\
         [[route]]\npath = \"/x\"\nupstream = \"http://u\"\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("c.toml: invalid config\n  unknown keys: listen.adress\n")
            && stderr.contains("issuer[0].algorithms[0]: \"none\" can never be allowed"),
        "{stderr}"
    );

    // The demo config without its secret: that one error, not the issuer's algorithms or
    // every route that uses the issuer.
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    let out = check_text(dir.path(), &demo, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "c.toml: invalid config\n  issuer[0].hmac_secret_env: environment variable \
         GATEHOUSE_DEMO_SECRET is not set\n"
    );
    // Set but empty is said so.
    let out = check_text(dir.path(), &demo, &[("GATEHOUSE_DEMO_SECRET", "")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment variable GATEHOUSE_DEMO_SECRET is set but empty"),
        "{stderr}"
    );
    // A short secret: its own error only.
    let out = check_text(dir.path(), &demo, &[("GATEHOUSE_DEMO_SECRET", "short")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    // An invalid tickets.store: not also "the ticket source needs a [tickets] table".
    let out = check_text(
        dir.path(),
        "[[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\n\
         jwks_url = \"https://a/j\"\n[tickets]\nstore = \"redis-typo://x\"\n\
         [[route]]\npath = \"/x\"\nupstream = \"http://u\"\ntokens = [\"ticket\", \"header\"]\n",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tickets.store") && stderr.lines().count() == 2,
        "{stderr}"
    );
}

#[test]
fn a_relative_path_not_found_names_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_text(
        dir.path(),
        "[listen.tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n\
         [[route]]\npath = \"/x\"\nupstream = \"http://u\"\nauth = \"none\"\n",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cwd = dir.path().canonicalize().unwrap();
    assert!(
        stderr.contains("reading certs/tls.crt: No such file or directory")
            && stderr.contains(&format!(
                "relative paths are resolved from the working directory, {}",
                cwd.display()
            )),
        "{stderr}"
    );
}

#[test]
fn check_masks_query_values_and_refuses_upstream_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[[issuer]]\nname = \"a\"\nissuer = \"https://a.example/\"\naudiences = [\"x\"]\n\
                jwks_url = \"https://a.example/jwks?key=querysecret\"\n[[route]]\npath = \"/x\"\n";
    let out = check_text(
        dir.path(),
        &format!("{base}upstream = \"http://u:1\"\n"),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(!shown.contains("querysecret"), "{shown}");
    assert!(
        shown.contains("jwks_url = \"https://a.example/jwks?key=REDACTED\""),
        "{shown}"
    );

    let out = check_text(
        dir.path(),
        &format!("{base}upstream = \"http://user:upstreampass@u:1\"\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("route[0].upstream: user:password@ in an upstream URL is never sent"),
        "{stderr}"
    );
    assert!(!stderr.contains("upstreampass"), "{stderr}");
}

/// Pass 20: a TLS key whose newlines were lost (pasted into a one-line field) made the PEM
/// parser's message quote the whole key, as bytes, in `check`'s output and in every reload's
/// warning. The error now says what is wrong without quoting the file.
#[test]
fn a_key_that_lost_its_newlines_is_refused_without_being_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example/tls");
    let key = std::fs::read_to_string(format!("{example}.key")).unwrap();
    let one_line = dir.path().join("one-line.key");
    std::fs::write(&one_line, key.replace('\n', " ")).unwrap();
    let toml = format!(
        "[listen.tls]\ncert = \"{example}.crt\"\nkey = \"{}\"\n\
         [[issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\nhmac_secret_env = \"HS\"\n\
         [[route]]\npath = \"/\"\nupstream = \"http://u:1\"\n",
        one_line.display()
    );
    let out = check_text(
        dir.path(),
        &toml,
        &[("HS", "0123456789abcdef0123456789abcdef")],
    );
    assert_eq!(out.status.code(), Some(64));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("has no END line"), "{said}");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for piece in body.as_bytes().chunks(12) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(!said.contains(piece), "the key shows in: {said}");
    }
    let longest_byte_list = said
        .split(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
        .map(|run| run.matches(',').count())
        .max()
        .unwrap_or(0);
    assert!(longest_byte_list < 8, "bytes of the key show in: {said}");
}
