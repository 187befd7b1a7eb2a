use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use super::*;

fn strict(raw: &str) -> Result<String, Refusal> {
    path(raw, &PathRules::default()).map(Cow::into_owned)
}

fn with(
    raw: &str,
    escaped_slashes: EscapedSlashes,
    path_params: PathParams,
) -> Result<String, Refusal> {
    let rules = PathRules {
        merge_slashes: true,
        escaped_slashes,
        path_params,
    };
    path(raw, &rules).map(Cow::into_owned)
}

#[test]
fn dot_segments_resolve_and_slashes_merge() {
    for (raw, canonical) in [
        ("/", "/"),
        ("/public/../api/admin", "/api/admin"),
        ("/api/x/../admin", "/api/admin"),
        ("/api//admin", "/api/admin"),
        ("//api///admin//", "/api/admin/"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/../../etc", "/etc"),
        ("/..", "/"),
        ("/a/..//b", "/b"),
        ("/public/%2e.", ""),
    ] {
        if raw.contains('%') {
            assert_eq!(strict(raw), Err(Refusal::EncodedDotSegment), "{raw}");
        } else {
            assert_eq!(strict(raw).as_deref(), Ok(canonical), "{raw}");
        }
    }
    let keep_empty = PathRules {
        merge_slashes: false,
        ..PathRules::default()
    };
    assert_eq!(path("/a//b/", &keep_empty).as_deref(), Ok("/a//b/"));
    assert_eq!(path("/a//..", &keep_empty).as_deref(), Ok("/a/"));
}

#[test]
fn unreserved_escapes_decode_and_others_are_upper_case() {
    assert_eq!(strict("/api/%61dmin").as_deref(), Ok("/api/admin"));
    assert_eq!(strict("/a%2Eb/%7euser").as_deref(), Ok("/a.b/~user"));
    assert_eq!(strict("/a%3fb%20c").as_deref(), Ok("/a%3Fb%20c"));
    assert_eq!(strict("/caf\u{e9}").as_deref(), Ok("/caf%C3%A9"));
    assert_eq!(strict("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
    assert_eq!(strict("/100%25").as_deref(), Ok("/100%25"));
    assert_eq!(strict("/API/Admin").as_deref(), Ok("/API/Admin"));
}

#[test]
fn dots_and_spaces_inside_a_name_are_kept() {
    for (raw, canonical) in [
        ("/files/my%20report.pdf", "/files/my%20report.pdf"),
        ("/v1.2/.well-known/x", "/v1.2/.well-known/x"),
        ("/a/.hidden", "/a/.hidden"),
        ("/a/..b", "/a/..b"),
        ("/a%20b/c", "/a%20b/c"),
    ] {
        assert_eq!(strict(raw).as_deref(), Ok(canonical), "{raw}");
    }
}

#[test]
fn ambiguous_spellings_are_refused() {
    for (raw, why) in [
        ("/%2e%2e/api", Refusal::EncodedDotSegment),
        ("/public/%2E/x", Refusal::EncodedDotSegment),
        ("/public/..%2fapi", Refusal::EncodedSlash),
        ("/public/..%5capi", Refusal::EncodedSlash),
        ("/public/..;/api", Refusal::PathParameter),
        ("/api/admin;x=1", Refusal::PathParameter),
        ("/api/admin%3bx", Refusal::EncodedSemicolon),
        ("/public/%252e%252e/api", Refusal::DoubleEncoded),
        ("/public/%25%32%65", Refusal::DoubleEncoded),
        ("/a%zz", Refusal::BadEscape),
        ("/a%2", Refusal::BadEscape),
        ("/a\\..\\api", Refusal::Backslash),
        ("/a%00b", Refusal::ControlByte),
        ("/a%0d%0aX: y", Refusal::ControlByte),
        ("/a%7f", Refusal::ControlByte),
        ("/%c0%ae%c0%ae/api", Refusal::NotUtf8),
        ("/api/adm%C4%B1n", Refusal::CaseFoldsToAscii),
        ("/api/%C5%BFecret", Refusal::CaseFoldsToAscii),
        ("/api/\u{212a}ey", Refusal::CaseFoldsToAscii),
        ("/api/admin.", Refusal::TrimmedSegment),
        ("/api/admin../x", Refusal::TrimmedSegment),
        ("/api/.../admin", Refusal::TrimmedSegment),
        ("/api/admin%2E", Refusal::TrimmedSegment),
        ("/api/admin%20", Refusal::TrimmedSegment),
        ("/api/%20admin/", Refusal::TrimmedSegment),
        ("/api/admin%20%20/x", Refusal::TrimmedSegment),
        ("api/admin", Refusal::NotOriginForm),
    ] {
        assert_eq!(strict(raw), Err(why), "{raw}");
        assert_eq!(
            why.reason() == "ambiguous_path",
            !matches!(why, Refusal::ControlByte | Refusal::NotOriginForm)
        );
    }
}

#[test]
fn escaped_slashes_can_be_kept_or_decoded() {
    use EscapedSlashes::{Decode, Keep};
    assert_eq!(
        with("/pkg/@scope%2fname", Keep, PathParams::Reject).as_deref(),
        Ok("/pkg/@scope%2Fname")
    );
    assert_eq!(
        with("/a/..%2fapi", Keep, PathParams::Reject).as_deref(),
        Ok("/a/..%2Fapi")
    );
    assert_eq!(
        with("/public/..%2fapi", Decode, PathParams::Reject).as_deref(),
        Ok("/api")
    );
    assert_eq!(
        with("/a%5cb", Decode, PathParams::Reject).as_deref(),
        Ok("/a/b")
    );
    assert_eq!(
        with("/a%252fb", Decode, PathParams::Reject),
        Err(Refusal::DoubleEncoded)
    );
}

#[test]
fn path_params_can_be_stripped_or_kept_but_never_on_dot_segments() {
    use PathParams::{Keep, Strip};
    let e = EscapedSlashes::Reject;
    assert_eq!(
        with("/api/admin;x=1", e, Strip).as_deref(),
        Ok("/api/admin")
    );
    assert_eq!(with("/api;x/admin", e, Strip).as_deref(), Ok("/api/admin"));
    assert_eq!(
        with("/shop;jsessionid=AB%2d1/cart", e, Keep).as_deref(),
        Ok("/shop;jsessionid=AB-1/cart")
    );
    for mode in [Strip, Keep] {
        assert_eq!(
            with("/public/..;/api", e, mode),
            Err(Refusal::PathParameter)
        );
        assert_eq!(
            with("/public/.;x/api", e, mode),
            Err(Refusal::PathParameter)
        );
    }
    assert_eq!(with("/api/;x/admin", e, Keep), Err(Refusal::PathParameter));
    let keep = PathRules {
        path_params: Keep,
        ..PathRules::default()
    };
    assert_eq!(routing_path("/shop;j=1/cart;v=2", &keep), "/shop/cart");
    assert_eq!(
        routing_path("/shop;j=1", &PathRules::default()),
        "/shop;j=1"
    );
}

fn run(
    method: Method,
    uri: &str,
    version: Version,
    host: Option<&str>,
    https: bool,
) -> Result<Canonical, Refusal> {
    let uri: Uri = uri.parse().unwrap();
    let mut headers = HeaderMap::new();
    if let Some(h) = host {
        headers.insert(HOST, HeaderValue::from_str(h).unwrap());
    }
    let t = Target {
        method: &method,
        uri: &uri,
        version,
        headers: &headers,
        https,
    };
    target(&t, &PathRules::default())
}

#[test]
fn targets_become_origin_form_with_the_query_untouched() {
    let c = run(
        Method::GET,
        "/a/../b?x=%2e%2e&t=a+b",
        Version::HTTP_11,
        Some("h"),
        false,
    )
    .unwrap();
    assert_eq!(c.uri, "/b?x=%2e%2e&t=a+b");
    assert!(c.host.is_none());
    let c = run(
        Method::GET,
        "http://H:8080/public/../api",
        Version::HTTP_11,
        Some("h:8080"),
        false,
    )
    .unwrap();
    assert_eq!(c.uri, "/api");
    let c = run(Method::GET, "https://h/x/", Version::HTTP_2, None, true).unwrap();
    assert_eq!(c.uri, "/x/");
    assert_eq!(c.host.unwrap(), "h");
    let c = run(
        Method::GET,
        "https://h/x",
        Version::HTTP_2,
        Some("h"),
        false,
    )
    .unwrap();
    assert_eq!(c.uri, "/x");
    let c = run(Method::OPTIONS, "*", Version::HTTP_11, Some("h"), false).unwrap();
    assert_eq!(c.uri, "*");
}

#[test]
fn mismatched_forms_and_connect_are_refused() {
    use Refusal as R;
    let h1 = |method: Method, uri: &str, host: Option<&str>| {
        run(method, uri, Version::HTTP_11, host, false).err()
    };
    let h2 =
        |uri: &str, host: Option<&str>| run(Method::GET, uri, Version::HTTP_2, host, true).err();
    assert_eq!(h1(Method::CONNECT, "h:443", Some("h")), Some(R::Connect));
    assert_eq!(h1(Method::CONNECT, "/", Some("h")), Some(R::Connect));
    assert_eq!(h1(Method::GET, "h:443", Some("h")), Some(R::NotOriginForm));
    assert_eq!(h1(Method::GET, "*", Some("h")), Some(R::NotOriginForm));
    assert_eq!(
        h1(Method::GET, "http://evil/api", Some("h")),
        Some(R::TargetMismatch)
    );
    assert_eq!(
        h1(Method::GET, "http://h/api", None),
        Some(R::TargetMismatch)
    );
    assert_eq!(
        h1(Method::GET, "https://h/api", Some("h")),
        Some(R::TargetMismatch)
    );
    assert_eq!(
        h1(Method::GET, "http://u@h/api", Some("u@h")),
        Some(R::TargetMismatch)
    );
    assert_eq!(h2("ftp://h/api", None), Some(R::TargetMismatch));
    assert_eq!(h2("https://h/api", Some("other")), Some(R::HostMismatch));
    assert_eq!(R::Connect.reason(), "connect_refused");
    assert_eq!(R::HostMismatch.reason(), "bad_target");
}

#[test]
fn an_origin_form_request_has_one_host_that_is_a_host_and_port() {
    let h =
        |version: Version, host: Option<&str>| run(Method::GET, "/api", version, host, false).err();
    for good in [
        "api.example",
        "api.example:8443",
        "API-1.example_x~",
        "10.0.0.1:80",
        "[::1]",
        "[2001:db8::1]:443",
        "localhost:65535",
        "",
    ] {
        assert_eq!(h(Version::HTTP_11, Some(good)), None, "{good:?}");
    }
    for bad in [
        "a, b",
        "a,b",
        "a b",
        "a;for=1.2.3.4",
        "x\";for=\"1.2.3.4",
        "user@api.example",
        "api.example:65536",
        "api.example:99999",
        "api.example:",
        "api.example:+80",
        "api.example:80:80",
        "a/b",
        "[::1",
        "[]",
        "[fe80::1%25eth0]",
        "[::1]x",
        ":80",
    ] {
        assert_eq!(
            h(Version::HTTP_11, Some(bad)),
            Some(Refusal::BadHost),
            "{bad:?}"
        );
        assert_eq!(
            h(Version::HTTP_2, Some(bad)),
            Some(Refusal::BadHost),
            "{bad:?}"
        );
    }
    assert_eq!(h(Version::HTTP_11, None), Some(Refusal::BadHost));
    assert_eq!(h(Version::HTTP_10, None), None);
    assert_eq!(h(Version::HTTP_2, None), None);
    let uri: Uri = "/api".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.append(HOST, HeaderValue::from_static("a"));
    headers.append(HOST, HeaderValue::from_static("a"));
    let twice = Target {
        method: &Method::GET,
        uri: &uri,
        version: Version::HTTP_11,
        headers: &headers,
        https: false,
    };
    assert_eq!(
        target(&twice, &PathRules::default()).err(),
        Some(Refusal::BadHost)
    );
    assert_eq!(Refusal::BadHost.reason(), "bad_target");
    assert_eq!(
        run(
            Method::GET,
            "http://a,b/x",
            Version::HTTP_11,
            Some("a,b"),
            false
        )
        .err(),
        Some(Refusal::TargetMismatch)
    );
}

/// The shortcut for paths that are already canonical agrees with spelling them again: it
/// is taken only where respelling changes nothing, and every other path takes the long way.
#[test]
fn a_path_is_taken_as_it_is_only_when_respelling_changes_nothing() {
    let merge = PathRules::default();
    let keep_empty = PathRules {
        merge_slashes: false,
        ..merge
    };
    let keep_params = PathRules {
        path_params: PathParams::Keep,
        ..merge
    };
    let inputs = [
        "/",
        "/a",
        "/a/",
        "/api/v1/users/42",
        "/static/app.min.js",
        "/.well-known/x",
        "/a/.b",
        "/~user/x-y_z",
        "/a:b@c!$&'()*+,=",
        "/A/B",
        "/a.",
        "/a/.",
        "/a/..",
        "/a/../b",
        "/./a",
        "//",
        "//a",
        "/a//b",
        "/a//",
        "/a b",
        "/a\"b<c>",
        "/a%41",
        "/a;b",
        "/a\\b",
        "/a\u{7f}",
        "/é",
        "a",
        "",
        "/a?b",
        "/a#b",
        "/..a",
        "/a..",
        "/a/...",
    ];
    for rules in [merge, keep_empty, keep_params] {
        for raw in inputs {
            let respelled = respell(raw, &rules);
            if is_canonical(raw, &rules) {
                assert_eq!(respelled.as_deref(), Ok(raw), "{raw:?} taken as it is");
            }
            assert_eq!(path(raw, &rules).map(Cow::into_owned), respelled, "{raw:?}");
        }
        for plain in [
            "/",
            "/a/",
            "/api/v1/users/42",
            "/static/app.min.js",
            "/a:b@c!$&'()*+,=",
        ] {
            assert!(is_canonical(plain, &rules), "{plain:?} takes the long way");
        }
    }
}
