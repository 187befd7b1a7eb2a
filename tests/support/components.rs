//! Missing components: the one rule for a test component that is not installed.

/// True when `binary` is on PATH. Tests never install anything (`.ci/setup` does, once,
/// before the suite): outside CI a missing component is a skip with the reason on stderr;
/// under `CI=true` it is a failure.
pub fn ensure_installed(binary: &str, package: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .is_ok_and(|o| o.status.success());
    require_component(found, &format!("{binary} (Debian package {package})"))
}

/// The one rule for a missing test component: under `CI=true` a failure naming it; elsewhere
/// a skip, printed past the test harness's capture so it shows in a plain `cargo test`.
pub fn require_component(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "CI=true and {what} is missing: `bash .ci/setup` installs it before the tests"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {what} is missing; `bash .ci/setup` installs it"
    );
    false
}
