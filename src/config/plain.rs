//! Load errors in the words of the config file: key paths as the operator wrote them
//! (without serde's markers for optional tables), and types as TOML names them (a whole
//! number, text in quotes, a table) rather than as Rust does (`usize`, `struct FileLimits`).

/// An unread key's path, dotted: `route.1.upstream_discovery.resolve_evry`. serde_ignored
/// marks an optional table's level (`tickets`, `[listen.tls]`,
/// `[route.upstream_discovery]`) with a `?` of its own, which names no key.
pub(super) fn key_path(path: &serde_ignored::Path<'_>) -> String {
    let mut segments = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                segments.push(index.to_string());
                parent
            }
            serde_ignored::Path::Map { parent, key } => {
                segments.push(key.clone());
                parent
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => parent,
        };
    }
    segments.reverse();
    segments.join(".")
}
