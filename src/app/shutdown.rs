//! The shutdown signal: SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C), as one future.

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; draining"),
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops gatehouse")
            }
        }
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        tracing::info!("SIGINT received; draining");
    }
}
