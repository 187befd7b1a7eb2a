//! The route table: the longest route path that is a whole-segment prefix of the request
//! path wins (`/hubs/chat` matches `/hubs/chat` and `/hubs/chat/x`, never `/hubs/chatty`).

/// Routes sorted longest path first, so the first match is the longest.
pub struct RouteTable<R> {
    routes: Vec<(String, R)>,
}

impl<R> RouteTable<R> {
    pub fn new(routes: impl IntoIterator<Item = (String, R)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Self { routes }
    }

    pub fn find(&self, path: &str) -> Option<&R> {
        self.routes
            .iter()
            .find(|(prefix, _)| matches_prefix(prefix, path))
            .map(|(_, route)| route)
    }

    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.routes.iter().map(|(_, r)| r)
    }
}

/// `prefix` is a normalized route path: `/`, or `/a/b` without a trailing slash.
fn matches_prefix(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The path the upstream sees when the route strips its prefix: always starts with `/`.
pub fn strip(prefix: &str, path: &str) -> String {
    if prefix == "/" {
        return path.to_string();
    }
    match path.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => format!("/{}", path.strip_prefix(prefix).unwrap_or(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        RouteTable::new([
            ("/".to_string(), "root"),
            ("/hubs/chat".to_string(), "chat"),
            ("/hubs".to_string(), "hubs"),
            ("/api/v1".to_string(), "api"),
        ])
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let t = table();
        assert_eq!(t.find("/hubs/chat"), Some(&"chat"));
        assert_eq!(t.find("/hubs/chat/negotiate"), Some(&"chat"));
        assert_eq!(t.find("/hubs/chatty"), Some(&"hubs"));
        assert_eq!(t.find("/hubs"), Some(&"hubs"));
        assert_eq!(t.find("/hubsx"), Some(&"root"));
        assert_eq!(t.find("/api/v1/users"), Some(&"api"));
        assert_eq!(t.find("/api/v10"), Some(&"root"));
    }

    #[test]
    fn no_root_route_means_no_match() {
        let t = RouteTable::new([("/api".to_string(), 1)]);
        assert_eq!(t.find("/api/x"), Some(&1));
        assert_eq!(t.find("/other"), None);
        assert_eq!(t.find("/ap"), None);
        assert_eq!(t.find("*"), None);
    }

    #[test]
    fn strip_keeps_a_leading_slash() {
        assert_eq!(strip("/hubs/chat", "/hubs/chat/x"), "/x");
        assert_eq!(strip("/hubs/chat", "/hubs/chat"), "/");
        assert_eq!(strip("/", "/a/b"), "/a/b");
    }
}
