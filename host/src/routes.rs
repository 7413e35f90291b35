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

    /// The part of `path` below the route, as Spin's `spin-path-info`
    /// header gives it: what a component serving several routes (or one
    /// under a prefix) routes on.
    pub fn path_info<'a>(&self, path: &'a str) -> &'a str {
        match self {
            Pattern::Exact(_) => "",
            Pattern::Prefix(p) => path.strip_prefix(p.as_str()).unwrap_or(path),
        }
    }

    /// The route without its wildcard (`spin-component-route`).
    pub fn base(&self) -> &str {
        match self {
            Pattern::Exact(p) | Pattern::Prefix(p) => p,
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

/// Picks the most specific of `items` for `path`.
pub fn best_by<'a, T>(items: &'a [T], path: &str, pattern: impl Fn(&T) -> &Pattern) -> Option<&'a T> {
    items.iter().filter_map(|t| pattern(t).score(path).map(|s| (s, t))).max_by_key(|(s, _)| *s).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_route_wins() {
        let routes =
            vec![(Pattern::parse("/..."), "all"), (Pattern::parse("/api/..."), "api"), (Pattern::parse("/api/x"), "x")];
        let best = |path| best_by(&routes, path, |(p, _)| p).map(|(_, name)| *name);
        assert_eq!(best("/"), Some("all"));
        assert_eq!(best("/docs"), Some("all"));
        assert_eq!(best("/api/chat"), Some("api"));
        assert_eq!(best("/api/x"), Some("x"));
        assert_eq!(best("/apix"), Some("all"));
        assert!(best_by(&[(Pattern::parse("/a"), 1)], "/b", |(p, _)| p).is_none());
    }

    #[test]
    fn path_info_is_the_path_below_the_route() {
        assert_eq!(Pattern::parse("/...").path_info("/api/chat/stream"), "/api/chat/stream");
        assert_eq!(Pattern::parse("/kb/...").path_info("/kb/api/chat/stream"), "/api/chat/stream");
        assert_eq!(Pattern::parse("/kb/...").path_info("/kb"), "");
        assert_eq!(Pattern::parse("/exact").path_info("/exact"), "");
        assert_eq!(Pattern::parse("/kb/...").base(), "/kb");
    }
}
