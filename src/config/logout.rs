//! `[logout]` validation: the endpoint a caller signs itself out at.

use super::fields::ConfigErrors;
use super::types::LogoutConfig;
use super::FileConfig;

pub(super) fn validate_logout(
    e: &mut ConfigErrors,
    raw: &FileConfig,
    can_validate: bool,
) -> Option<LogoutConfig> {
    let logout = raw.logout.as_ref()?;
    let errors_before = e.count();
    if !logout.endpoint.starts_with('/') || logout.endpoint.contains(['?', '#']) {
        e.push("logout.endpoint", "a path like /.gatehouse/logout");
    }
    let endpoint = logout.endpoint.trim_end_matches('/').to_string();
    let same_as_tickets = raw.tickets.as_ref().is_some_and(|t| {
        t.endpoint
            .trim_end_matches('/')
            .eq_ignore_ascii_case(&endpoint)
    });
    if same_as_tickets {
        e.push("logout.endpoint", "must differ from tickets.endpoint");
    }
    if logout.rate_limit_per_minute == 0 {
        e.push("logout.rate_limit_per_minute", "must be at least 1");
    }
    let validators = raw.issuers.len() + raw.introspections.len();
    if !can_validate {
        e.push(
            "logout",
            "signing out needs at least one [[issuer]] or [[introspection]]",
        );
    } else if validators > 1 {
        // Revocations name a `jti` or a subject, each unique only within its issuer, so the
        // endpoint refuses every sign-out when there are two: a config that can never work.
        e.push(
            "logout",
            format!(
                "sign-out needs exactly one [[issuer]] or [[introspection]], this config has \
                 {validators}: a jti or subject of one issuer may name another's token; remove \
                 [logout], or revoke through the admin API (POST /revocations) instead"
            ),
        );
    }
    (e.count() == errors_before).then_some(LogoutConfig {
        endpoint,
        rate_limit_per_minute: logout.rate_limit_per_minute,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{load_str, validate::validate};

    const BASE: &str = r#"
[[issuer]]
name = "sts"
issuer = "https://sts.example.com/"
audiences = ["api"]
hmac_secret_env = "HS"

[[route]]
path = "/api"
upstream = "http://api:5000"
"#;

    fn secrets(name: &str) -> Option<String> {
        (name == "HS").then(|| "x".repeat(32))
    }

    fn errors_of(extra: &str) -> Vec<String> {
        let raw = load_str(&format!("{BASE}{extra}")).unwrap();
        match validate(&raw, &secrets) {
            Ok(_) => Vec::new(),
            Err(e) => e.messages().to_vec(),
        }
    }

    #[test]
    fn logout_is_off_unless_its_table_is_present_and_defaults_when_empty() {
        let raw = load_str(BASE).unwrap();
        assert!(validate(&raw, &secrets).unwrap().logout.is_none());
        let raw = load_str(&format!("{BASE}\n[logout]\n")).unwrap();
        let logout = validate(&raw, &secrets).unwrap().logout.unwrap();
        assert_eq!(logout.endpoint, "/.gatehouse/logout");
        assert_eq!(logout.rate_limit_per_minute, 10);
    }

    #[test]
    fn bad_logout_settings_are_named() {
        let zero = errors_of("\n[logout]\nrate_limit_per_minute = 0\n");
        assert!(
            zero.iter()
                .any(|m| m.contains("logout.rate_limit_per_minute")),
            "{zero:?}"
        );
        let relative = errors_of("\n[logout]\nendpoint = \"logout\"\n");
        assert!(
            relative.iter().any(|m| m.contains("logout.endpoint")),
            "{relative:?}"
        );
        let clash = errors_of(
            "\n[tickets]\nendpoint = \"/.gatehouse/x\"\n\n[logout]\nendpoint = \"/.gatehouse/X/\"\n",
        );
        assert!(
            clash.iter().any(|m| m.contains("tickets.endpoint")),
            "{clash:?}"
        );
    }

    #[test]
    fn logout_with_two_token_sources_is_refused_with_the_fix_named() {
        let second_issuer = "\n[[issuer]]\nname = \"b\"\nissuer = \"https://b.example.com/\"\n\
                             audiences = [\"api\"]\nhmac_secret_env = \"HS\"\n";
        let introspection = "\n[[introspection]]\nname = \"idp\"\n\
                             url = \"https://idp/introspect\"\nclient_id = \"gh\"\n\
                             client_secret_env = \"HS\"\n";
        for extra in [second_issuer, introspection] {
            let errors = errors_of(&format!("{extra}\n[logout]\n"));
            assert!(
                errors
                    .iter()
                    .any(|m| m.starts_with("logout: sign-out needs exactly one")
                        && m.contains("this config has 2")
                        && m.contains("remove [logout]")),
                "{errors:?}"
            );
            // Without [logout] the same config is fine.
            assert_eq!(errors_of(extra), Vec::<String>::new());
        }
    }
}
