//! The corpus of tests/differential.rs: request targets and header sets that have walked
//! around gatehouse (issue 10) or that frameworks are known to read differently.
//!
//! A target may hold `{authority}` (the proxy's own host:port, for absolute-form targets) and
//! `{token}` (the caller's token, or for an anonymous caller a stray valid token, to see that
//! no spelling of a token parameter or cookie reaches the backend).

#![allow(unreachable_pub)]

/// A value no proxy would write itself: its presence in a forwarding header the backend saw
/// means the client's header came through.
pub const SPOOFED_IP: &str = "203.0.113.66";
pub const SPOOFED_HOST: &str = "evil.example";

/// One request of the corpus.
pub struct Case {
    pub name: String,
    pub method: &'static str,
    pub target: String,
    pub headers: Vec<(&'static str, &'static str)>,
    /// Also sent over h2c (not every spelling can be: absolute-form, `Connection`, raw bytes).
    pub h2: bool,
    /// A benign request every backend must receive for the callers the route admits; it
    /// proves the harness forwards at all.
    pub control: bool,
}

fn case(name: &str, target: &str) -> Case {
    Case {
        name: name.to_string(),
        method: "GET",
        target: target.to_string(),
        headers: Vec::new(),
        h2: true,
        control: false,
    }
}

impl Case {
    fn h1_only(mut self) -> Self {
        self.h2 = false;
        self
    }

    fn with(mut self, headers: &[(&'static str, &'static str)]) -> Self {
        self.headers.extend_from_slice(headers);
        self
    }

    /// Whether the case carries a token of its own (in the target or a header).
    pub fn carries_token(&self) -> bool {
        self.target.contains("{token}") || self.headers.iter().any(|(_, v)| v.contains("{token}"))
    }
}

pub fn all() -> Vec<Case> {
    let mut cases = controls();
    cases.extend(paths());
    cases.extend(identity());
    cases.extend(forwarding());
    cases.extend(tokens());
    cases
}

fn controls() -> Vec<Case> {
    ["/public/x", "/api/x", "/api/admin/x"]
        .into_iter()
        .map(|target| Case {
            control: true,
            ..case("control", target)
        })
        .collect()
}

/// Path spellings: every one the issue names, and their neighbours.
fn paths() -> Vec<Case> {
    vec![
        case("dot-dot", "/public/../api/admin"),
        case("dot-dot deeper", "/public/x/../../api/admin/x"),
        case("dot then dot-dot", "/public/./../api/admin"),
        case("encoded dot-dot", "/public/%2e%2e/api/admin"),
        case("encoded dot-dot upper", "/public/%2E%2E/api/admin"),
        case("half-encoded dot-dot", "/public/.%2e/api/admin"),
        case("dot-dot encoded slash", "/public/..%2fapi/admin"),
        case("encoded slash and dots", "/api/x%2f..%2fadmin"),
        case("encoded slashes only", "/public%2f..%2fapi/admin"),
        case("dot-dot semicolon", "/public/..;/api/admin"),
        case("dot-dot encoded semicolon", "/public/..%3b/api/admin"),
        case("double-encoded dot-dot", "/public/%252e%252e/api/admin"),
        case("double-encoded slash", "/public/..%252fapi/admin"),
        case("backslashes", "/public/..\\api\\admin").h1_only(),
        case("encoded backslashes", "/public/..%5capi%5cadmin"),
        case("NUL", "/public/..%00/api/admin"),
        case("absolute-form", "http://{authority}/public/../api/admin").h1_only(),
        case(
            "absolute-form other host",
            "http://other.example/public/../api/admin",
        )
        .h1_only(),
        case("absolute-form upper", "http://{authority}/api/ADMIN").h1_only(),
        case("upper case", "/api/ADMIN"),
        case("upper case all", "/API/ADMIN/x"),
        case("encoded letter", "/api/%61dmin"),
        case("encoded letters upper", "/api/%41DMIN"),
        case("double slash", "/api//admin"),
        case("leading double slash", "//api/admin"),
        case("triple slash", "/api///admin/x"),
        case("path parameter", "/api/admin;x=1"),
        case("path parameter mid", "/api;x=1/admin"),
        case("dot-dot under api", "/api/x/../admin"),
        case("dot under api", "/api/./admin"),
        case("encoded dot under api", "/api/%2e/admin"),
        case("trailing dot", "/api/admin."),
        case("trailing dots mid", "/api/admin../x"),
        case("encoded trailing dot", "/api/admin%2e"),
        case("trailing space", "/api/admin%20"),
        case("leading space", "/api/%20admin/x"),
        case("three dots", "/api/.../admin"),
        Case {
            method: "CONNECT",
            ..case("CONNECT", "{authority}").h1_only()
        },
    ]
}

/// Identity headers in the spellings frameworks fold together, and `Connection` naming them.
fn identity() -> Vec<Case> {
    let spoof = [("X-Auth-Subject", "root"), ("X-Auth-Roles", "admin")];
    vec![
        case("identity as sent", "/api/x").with(&spoof),
        case("identity lower case", "/api/x").with(&[("x-auth-subject", "root")]),
        case("identity underscores", "/api/x")
            .with(&[("X_Auth_Subject", "root"), ("X_Auth_Roles", "admin")])
            .h1_only(),
        case("identity underscores lower", "/api/x").with(&[("x_auth_subject", "root")]),
        case("identity underscores public", "/public/x").with(&[("x_auth_subject", "root")]),
        // PHP reads `.` (and ` `) in a field name as `_`.
        case("identity dots", "/api/x")
            .with(&[("X.Auth.Subject", "root"), ("x.auth.roles", "admin")]),
        case("Connection drops identity", "/api/x")
            .with(&[("Connection", "X-Auth-Subject, X-Auth-Roles, X-Auth-Scopes")])
            .h1_only(),
        case("Connection drops identity, spoofed", "/api/x")
            .with(&[("Connection", "X-Auth-Subject"), ("X_Auth_Subject", "root")])
            .h1_only(),
    ]
}

/// Forwarding headers the client invents.
fn forwarding() -> Vec<Case> {
    vec![
        case("Forwarded", "/api/x").with(&[(
            "Forwarded",
            "for=203.0.113.66;host=evil.example;proto=https",
        )]),
        case("X-Forwarded-For", "/api/x").with(&[("X-Forwarded-For", SPOOFED_IP)]),
        case("X_Forwarded_For", "/api/x").with(&[("x_forwarded_for", SPOOFED_IP)]),
        case("X-Forwarded-Host", "/public/x").with(&[("X-Forwarded-Host", SPOOFED_HOST)]),
        case("X-Real-IP", "/api/x").with(&[("X-Real-IP", SPOOFED_IP)]),
        case("X-Original-URL", "/public/x").with(&[("X-Original-URL", "/api/admin")]),
        case("X-Rewrite-URL", "/public/x").with(&[("X-Rewrite-URL", "/api/admin")]),
        case("X-HTTP-Method-Override", "/api/x").with(&[("X-HTTP-Method-Override", "DELETE")]),
        // PHP reads `.` in a field name as `_`: `X.Forwarded.For` is HTTP_X_FORWARDED_FOR.
        case("X.Forwarded.For", "/api/x").with(&[("X.Forwarded.For", SPOOFED_IP)]),
        // gunicorn takes a SCRIPT_NAME field as the mount point and cuts it off the path:
        // `/public/api/admin` would run `/api/admin`. So does the X-Script-Name snippet.
        case("SCRIPT_NAME", "/public/api/admin").with(&[("SCRIPT_NAME", "/public")]),
        case("X-Script-Name", "/public/api/admin").with(&[("X-Script-Name", "/public")]),
        // httpoxy: CGI puts `Proxy` in HTTP_PROXY, which HTTP clients take as their proxy.
        case("Proxy", "/api/x").with(&[("Proxy", "http://evil.example:3128")]),
        // Next.js skips its middleware for a request that says it is its own subrequest.
        case("x-middleware-subrequest", "/api/x").with(&[(
            "x-middleware-subrequest",
            "middleware:middleware:middleware:middleware:middleware",
        )]),
        case("X-Forwarded-Port and -Prefix", "/api/x").with(&[
            ("X-Forwarded-Port", "6666"),
            ("X-Forwarded-Prefix", "/evil.example"),
        ]),
        case("Connection drops X-Forwarded-For", "/api/x")
            .with(&[
                ("Connection", "X-Forwarded-For"),
                ("X-Forwarded-For", SPOOFED_IP),
            ])
            .h1_only(),
    ]
}

/// The token in every cookie and query spelling a framework folds into a token name
/// (PHP reads `access token` as `access_token`, Rack and PHP read `access_token[]` as an
/// array of it, Rack 2 reads `[access_token]` as it, older `parse_qs` splits on `;`).
fn tokens() -> Vec<Case> {
    let cookies = [
        ("token cookie", vec![("Cookie", "gh_token={token}")]),
        (
            "token cookie among others",
            vec![("Cookie", "a=1; gh_token={token}; b=2")],
        ),
        (
            "token cookie twice",
            vec![("Cookie", "gh_token=x; gh_token={token}")],
        ),
        (
            "token cookie second field",
            vec![("Cookie", "a=1"), ("Cookie", "gh_token={token}")],
        ),
    ];
    let queries = [
        "access_token={token}",
        "access_token[]={token}",
        "access_token%5B%5D={token}",
        "access+token={token}",
        "access%20token={token}",
        "a=1;access_token={token}",
        "ACCESS%5FTOKEN={token}",
        // PHP reads `.` in a parameter name as `_`.
        "access.token={token}",
        "access_token[x]={token}",
        // Rack 2 skips brackets before a name and reads it up to the first `]`.
        "[access_token]={token}",
        "access_token]={token}",
        "%5B%5Baccess_token%5D%5D={token}",
    ];
    let mut cases = Vec::new();
    for base in ["/public/x", "/api/x"] {
        for (name, headers) in &cookies {
            cases.push(case(name, base).with(headers));
        }
        for query in queries {
            let name = format!("token in query {}", query.replace("={token}", ""));
            cases.push(case(&name, &format!("{base}?{query}")));
        }
    }
    cases
}
