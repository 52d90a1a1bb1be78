//! `watch:` of an environment: the paths whose changes auto-deploy it, as
//! globs over repository paths — `*` and `?` within one path segment, `**`
//! for any number of segments (`services/api/**`, `libs/**`, `*.lock`).

/// Whether `pattern` matches repository path `path`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    segments(&pattern, &path)
}

/// Whether any of `patterns` matches `path`.
pub fn any_matches(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|p| matches(p, path))
}

fn segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| segments(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                segment_matches(first.as_bytes(), segment.as_bytes()) && segments(rest, path_rest)
            }
            None => false,
        },
    }
}

fn segment_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| segment_matches(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && segment_matches(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && segment_matches(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_paths_by_segment() {
        for (pattern, path, want) in [
            ("services/api/**", "services/api/src/main.rs", true),
            ("services/api/**", "services/api", true),
            ("services/api/**", "services/web/src/main.rs", false),
            ("services/api/**", "services/apis/x", false),
            ("libs/**", "libs/db/schema.sql", true),
            ("*.lock", "Cargo.lock", true),
            ("*.lock", "sub/Cargo.lock", false),
            ("**/*.lock", "sub/Cargo.lock", true),
            ("**/*.lock", "Cargo.lock", true),
            ("docker-compose.yml", "docker-compose.yml", true),
            ("docker-compose.y?l", "docker-compose.yml", true),
            ("/slipway.yml", "slipway.yml", true),
            ("src/*/mod.rs", "src/spec/mod.rs", true),
            ("src/*/mod.rs", "src/spec/convert/mod.rs", false),
        ] {
            assert_eq!(matches(pattern, path), want, "{pattern} against {path}");
        }
    }
}
