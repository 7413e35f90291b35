//! HTTP trigger routes, matched as Spin matches them: an exact path, or a
//! `/prefix/...` wildcard; the longest matching route wins.

/// One route pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Exact(String),
    /// Matches the prefix itself and anything below it.
    Prefix(String),
}

impl Pattern {
    pub fn parse(route: &str) -> Pattern {
        match route.strip_suffix("/...") {
            Some(prefix) => Pattern::Prefix(prefix.trim_end_matches('/').to_string()),
            None => Pattern::Exact(route.trim_end_matches('/').to_string()),
        }
    }

    /// Specificity when it matches `path`: longer is more specific, exact
    /// beats a wildcard of the same length.
    fn score(&self, path: &str) -> Option<usize> {
        let path = path.trim_end_matches('/');
        match self {
            Pattern::Exact(p) => (p == path).then_some(p.len() * 2 + 1),
            Pattern::Prefix(p) => {
                (path == p || path.starts_with(&format!("{p}/")) || p.is_empty()).then_some(p.len() * 2)
            }
        }
    }
}

/// Picks the most specific of `routes` for `path`.
pub fn best<'a, T>(routes: &'a [(Pattern, T)], path: &str) -> Option<&'a T> {
    routes.iter().filter_map(|(p, t)| p.score(path).map(|s| (s, t))).max_by_key(|(s, _)| *s).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_route_wins() {
        let routes =
            vec![(Pattern::parse("/..."), "all"), (Pattern::parse("/api/..."), "api"), (Pattern::parse("/api/x"), "x")];
        assert_eq!(best(&routes, "/"), Some(&"all"));
        assert_eq!(best(&routes, "/docs"), Some(&"all"));
        assert_eq!(best(&routes, "/api/chat"), Some(&"api"));
        assert_eq!(best(&routes, "/api/x"), Some(&"x"));
        assert_eq!(best(&routes, "/apix"), Some(&"all"));
        assert_eq!(best(&[(Pattern::parse("/a"), 1)], "/b"), None);
    }
}
