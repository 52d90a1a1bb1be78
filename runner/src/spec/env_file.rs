//! `env_file:` files, read as the Docker CLI reads them (`opts.ParseEnvFile`):
//! one `NAME=value` per line, `#` comments and blank lines skipped, values
//! taken verbatim (quotes included), a bare `NAME` passed through from the
//! environment. Reading them the same way keeps a service's `Env` identical
//! to what `docker stack deploy` would send.

/// `(name, value)` pairs in file order; `None` for a bare `NAME`.
pub type EnvVars = Vec<(String, Option<String>)>;

/// The variables of an env file, or the 1-based line that is wrong and why.
pub fn parse(text: &str) -> Result<EnvVars, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = if i == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (line.trim_end(), None),
        };
        if name.is_empty() {
            return Err((i + 1, "no variable name before =".into()));
        }
        if name.contains(char::is_whitespace) {
            return Err((i + 1, format!("variable {name:?} contains whitespace")));
        }
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_the_docker_cli() {
        let parsed = parse("\u{feff}A=1\n# comment\n\n  B=\"quoted\" \nC\nD=x=y\n").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("\"quoted\" ".into())),
                ("C".into(), None),
                ("D".into(), Some("x=y".into())),
            ]
        );
        assert_eq!(parse("A B=1\n").unwrap_err().0, 1);
        assert_eq!(parse("ok=1\n=2\n").unwrap_err().0, 2);
    }
}
