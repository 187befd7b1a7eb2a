//! The raw tables of limits and process behaviour: `[shutdown]`, `[limits]`, `[reload]`,
//! `[paths]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileShutdown {
    pub grace: String,
}

impl Default for FileShutdown {
    fn default() -> Self {
        Self {
            grace: "10s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileLimits {
    pub max_header_bytes: usize,
    /// Unset: 16 KiB, or `max_header_bytes` when that is smaller (see `config::limits`).
    pub max_token_bytes: Option<usize>,
    pub header_read_timeout: String,
    pub max_connections: usize,
    /// Open connections from one client address; 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Requests a second from one client address; 0 = no limit.
    pub requests_per_ip_per_second: u32,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: String,
    /// A connection asked to close (idle, drain) that has not closed after this is dropped.
    pub close_grace: String,
    /// A response the client stops reading for this long is abandoned.
    pub write_timeout: String,
    /// A request body that sends nothing for this long, while the upstream waits for it, is cut.
    pub body_stall_timeout: String,
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset after gatehouse accepted them, per connection.
    pub http2_max_resets: u32,
    pub token_cache_entries: usize,
    /// Bytes one connection may hold before its token validates; unset: max_token_bytes + 1 KiB.
    pub pre_auth_bytes: Option<usize>,
    /// Bytes all connections together may hold before their tokens validate.
    pub pre_auth_total_bytes: usize,
    /// How long gatehouse waits for a request body it reads itself (the ticket endpoint's).
    pub body_read_timeout: String,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 65536,
            max_token_bytes: None,
            header_read_timeout: "10s".into(),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            requests_per_ip_per_second: 0,
            idle_timeout: "60s".into(),
            close_grace: "5s".into(),
            write_timeout: "60s".into(),
            body_stall_timeout: "60s".into(),
            http2_max_concurrent_streams: 100,
            http2_max_resets: 100,
            token_cache_entries: 100_000,
            pre_auth_bytes: None,
            pre_auth_total_bytes: 16 << 20,
            body_read_timeout: "10s".into(),
        }
    }
}

/// `[reload]`: SIGHUP always reloads; `watch` also polls the config file and the files it
/// names (issuer keys, upstream CAs) for changed content.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileReload {
    pub watch: bool,
    pub interval: String,
}

impl Default for FileReload {
    fn default() -> Self {
        Self {
            watch: true,
            interval: "2s".into(),
        }
    }
}

/// `[paths]`: how request paths are canonicalised (see `canonical`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FilePaths {
    pub merge_slashes: bool,
    /// `reject`, `keep` or `decode` for `%2F` and `%5C`.
    pub escaped_slashes: String,
    /// `reject`, `strip` or `keep` for `;params` in path segments.
    pub path_params: String,
}

impl Default for FilePaths {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            escaped_slashes: "reject".into(),
            path_params: "reject".into(),
        }
    }
}
