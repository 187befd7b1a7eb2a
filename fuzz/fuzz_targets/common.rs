//! Setup shared by the targets: one validated gatehouse `Config` with a static key set,
//! built once per process through the same `load_str` + `validate` that `gatehouse check`
//! runs. Key files are the test fixtures (`tests/fixtures/`) and `fuzz/fixtures/jwks.json`.
#![allow(dead_code)]

use gatehouse::config::Config;

/// The HS256/384/512 secret of the `hs` and `typed` issuers (at least 32 bytes).
pub const HS_SECRET: &str = "gatehouse-fuzz-hmac-secret-0123456789abcdef";
pub const HS_SECRET_ENV: &str = "FUZZ_HS_SECRET";

/// Whether to keep checking the properties behind the findings already reported in
/// fuzz/README.md ("Findings"). Off by default so a run can look for new problems;
/// `GATEHOUSE_FUZZ_STRICT=1` turns them back on (they trip within seconds).
pub fn strict() -> bool {
    static STRICT: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var("GATEHOUSE_FUZZ_STRICT").is_ok_and(|v| !v.is_empty() && v != "0")
    });
    *STRICT
}

/// `GATEHOUSE_FUZZ_DEBUG=1` prints what each input did (for reproducing, with `-runs=`).
pub fn debug() -> bool {
    static DEBUG: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var("GATEHOUSE_FUZZ_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0")
    });
    *DEBUG
}

const CONFIG: &str = r#"
[listen]
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[issuer]]
name = "hs"
issuer = "https://hs.fuzz/"
audiences = ["api", "other"]
hmac_secret_env = "FUZZ_HS_SECRET"
algorithms = ["HS256", "HS384", "HS512"]
leeway = "30s"

[[issuer]]
name = "typed"
issuer = "https://typed.fuzz/"
audiences = ["api"]
hmac_secret_env = "FUZZ_HS_SECRET"
typ = "at+jwt"
leeway = "0s"

[[issuer]]
name = "rsa"
issuer = "https://rsa.fuzz/"
audiences = ["api"]
public_key_file = "@FIXTURES@/rsa1.pub.pem"
algorithms = ["RS256", "RS384", "PS256"]

[[issuer]]
name = "ec"
issuer = "https://ec.fuzz/"
audiences = ["api"]
public_key_file = "@FIXTURES@/ec1.pub.pem"
algorithms = ["ES256"]

[[issuer]]
name = "jwks"
issuer = "https://jwks.fuzz/"
audiences = ["api"]
jwks_file = "@FUZZ@/fixtures/jwks.json"
algorithms = ["RS256", "ES256"]

[identity]
subject_claim = "sub"
role_claim = "role"
headers = { "X-Auth-Subject" = "sub", "X-Auth-Roles" = "role", "X-Auth-Scopes" = "scope", "X-Auth-Tenant" = "tenant" }

[tickets]
endpoint = "/.gatehouse/ticket"
param = "ticket"

[[route]]
path = "/scoped"
upstream = "http://upstream.fuzz"
tokens = ["header", "query:access_token", "cookie:gatehouse_token"]
require.scopes = ["api", "write"]

[[route]]
path = "/roles"
upstream = "http://upstream.fuzz"
tokens = ["header"]
require.roles = ["admin", "ops"]

[[route]]
path = "/claims"
upstream = "http://upstream.fuzz"
tokens = ["header"]
require.claims = { tenant = "t1", groups = "g", level = 3 }

[[route]]
path = "/ws"
upstream = "http://upstream.fuzz"
websocket = true
strip_prefix = true
tokens = ["ticket", "header", "subprotocol", "first-message"]
allowed_origins = ["https://app.fuzz"]
"#;

/// The validated config the targets share; panics (once, at start) when it does not validate.
pub fn config() -> &'static Config {
    static CONFIG_ONCE: std::sync::LazyLock<Config> = std::sync::LazyLock::new(|| {
        let fuzz_dir = env!("CARGO_MANIFEST_DIR");
        let text = CONFIG
            .replace("@FIXTURES@", &format!("{fuzz_dir}/../tests/fixtures"))
            .replace("@FUZZ@", fuzz_dir);
        let raw = gatehouse::config::load_str(&text).unwrap_or_else(|e| panic!("fuzz config: {e}"));
        let secrets = |name: &str| (name == HS_SECRET_ENV).then(|| HS_SECRET.to_string());
        gatehouse::config::validate::validate(&raw, &secrets)
            .unwrap_or_else(|e| panic!("fuzz config does not validate:\n{e}"))
    });
    &CONFIG_ONCE
}

/// The first route whose path is `path`.
pub fn route(path: &str) -> &'static gatehouse::config::RouteConfig {
    config()
        .routes
        .iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no route {path} in the fuzz config"))
}
