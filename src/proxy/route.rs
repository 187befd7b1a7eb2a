//! The route table: the longest route path that is a whole-segment prefix of the request
//! path wins (`/hubs/chat` matches `/hubs/chat` and `/hubs/chat/x`, never `/hubs/chatty`).
//!
//! Paths arrive canonical (see `canonical`). Prefixes match ASCII case-insensitively
//! unless the route asks for exact case: ASP.NET Core and other frameworks route that way,
//! so `/API/Admin` must be judged by the `/api/admin` route it reaches there.

/// Routes sorted longest path first, so the first match is the longest.
pub struct RouteTable<R> {
    routes: Vec<(String, bool, R)>,
}

impl<R> RouteTable<R> {
    /// Routes that all match case-insensitively.
    pub fn new(routes: impl IntoIterator<Item = (String, R)>) -> Self {
        Self::with_case(routes.into_iter().map(|(p, r)| (p, false, r)))
    }

    /// `(path, case_sensitive, route)` triples.
    pub fn with_case(routes: impl IntoIterator<Item = (String, bool, R)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by_key(|(path, _, _)| std::cmp::Reverse(path.len()));
        Self { routes }
    }

    pub fn find(&self, path: &str) -> Option<&R> {
        self.routes
            .iter()
            .find(|(prefix, exact, _)| matches_prefix(prefix, path, *exact))
            .map(|(_, _, route)| route)
    }

    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.routes.iter().map(|(_, _, r)| r)
    }
}

/// `prefix` is a normalized route path: `/`, or `/a/b` without a trailing slash.
fn matches_prefix(prefix: &str, path: &str, case_sensitive: bool) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    let (Some(head), Some(rest)) = (path.get(..prefix.len()), path.get(prefix.len()..)) else {
        return false;
    };
    let same = if case_sensitive {
        head == prefix
    } else {
        head.eq_ignore_ascii_case(prefix)
    };
    same && (rest.is_empty() || rest.starts_with('/'))
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
    fn prefixes_match_in_any_ascii_case_unless_exact() {
        let t = table();
        assert_eq!(t.find("/HUBS/Chat/x"), Some(&"chat"));
        assert_eq!(t.find("/Api/V1"), Some(&"api"));
        let exact = RouteTable::with_case([
            ("/".to_string(), false, "root"),
            ("/Admin".to_string(), true, "admin"),
        ]);
        assert_eq!(exact.find("/Admin/x"), Some(&"admin"));
        assert_eq!(exact.find("/admin/x"), Some(&"root"));
        assert_eq!(exact.find("/\u{e9}t\u{e9}"), Some(&"root"));
    }
}
