//! The proxy: gatehouse in-process from TOML text ([`TestProxy`]), and config loading.

use super::client::{eventually, get, send};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gatehouse::config;
use gatehouse::{Gatehouse, Running};
use http::StatusCode;

pub struct TestProxy {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestProxy {
    /// Starts gatehouse from TOML. `[listen]` and `[admin]` on port 0 are added when absent.
    pub async fn start(toml: &str) -> TestProxy {
        Self::start_with_secrets(toml, &[]).await
    }

    pub async fn start_with_secrets(toml: &str, secrets: &[(&str, &str)]) -> TestProxy {
        let config =
            load(toml, secrets).unwrap_or_else(|e| panic!("invalid test config: {e}\n{toml}"));
        let running = Gatehouse::start(config).await.unwrap();
        let (addr, admin) = (running.addr(), running.admin_addr());
        TestProxy {
            running: Some(running),
            addr,
            admin,
        }
    }

    /// Starts gatehouse from a config file, reloading it as `gatehouse run` does.
    pub async fn start_file(path: &std::path::Path) -> TestProxy {
        let raw = config::load_file(path).unwrap();
        let config = config::validate::validate(&raw, &|_| None).unwrap();
        let running = Gatehouse::start(config).await.unwrap();
        running.reload_from(path.to_path_buf());
        let (addr, admin) = (running.addr(), running.admin_addr());
        TestProxy {
            running: Some(running),
            addr,
            admin,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Waits until `/readyz` says 200 (every issuer has keys).
    pub async fn wait_ready(&self) {
        let url = self.admin_url("/readyz");
        let ready = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { get(&url, &[]).await.status == StatusCode::OK }
        })
        .await;
        assert!(ready, "gatehouse never became ready");
    }

    /// `POST /revocations` on the admin listener with `admin` as its bearer; the status.
    pub async fn revoke(&self, admin: &str, body: serde_json::Value) -> u16 {
        let request = http::Request::post(self.admin_url("/revocations"))
            .header("authorization", format!("Bearer {admin}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        send(request).await.status.as_u16()
    }

    /// A replica of a shared-store setup: started with the HMAC issuer's secret and the
    /// admin token `admin`, and ready (keys loaded) before it is returned.
    pub async fn replica(toml: &str, admin: &str) -> TestProxy {
        let proxy =
            TestProxy::start_with_secrets(toml, &[("HS", super::SECRET), ("ADMIN", admin)]).await;
        proxy.wait_ready().await;
        proxy
    }

    /// The status of `GET /api/x` with `token`.
    pub async fn api_status(&self, token: &str) -> u16 {
        super::bearer(&self.url("/api/x"), token)
            .await
            .status
            .as_u16()
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = get(&self.admin_url("/metrics"), &[]).await.body;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn load(toml: &str, secrets: &[(&str, &str)]) -> Result<gatehouse::Config, String> {
    let mut text = String::new();
    if !toml.contains("[listen]") {
        text.push_str("[listen]\naddr = \"127.0.0.1:0\"\n");
    }
    if !toml.contains("[admin]") {
        text.push_str("[admin]\naddr = \"127.0.0.1:0\"\n");
    }
    text.push_str(toml);
    let raw = config::load_str(&text).map_err(|e| e.to_string())?;
    let secrets: HashMap<String, String> = secrets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::validate::validate(&raw, &|name| secrets.get(name).cloned()).map_err(|e| e.to_string())
}
