//! YAML with positions: parsing errors carry the line serde_norway reports,
//! and errors found later (after interpolation, merging, conversion) are
//! placed by looking up their key path in the original text.
//!
//! serde_norway's `Value` keeps no positions, so [`locate`] reads the text
//! itself. It understands block style (what Compose files are written in);
//! inside flow style (`{a: 1}`) it stops at the deepest key it found, which
//! still points at the right line.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::SpecError;

/// One step of a key path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value is in a document, as `services.web.ports[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub fn index(&self, index: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// `"services.web.image"` → a path (test and call-site convenience).
    pub fn parse(dotted: &str) -> KeyPath {
        KeyPath(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Seg::Key(s.to_owned()))
                .collect(),
        )
    }

    fn from_serde(path: &serde_path_to_error::Path) -> KeyPath {
        use serde_path_to_error::Segment;
        KeyPath(
            path.iter()
                .filter_map(|s| match s {
                    Segment::Map { key } => Some(Seg::Key(key.clone())),
                    Segment::Seq { index } => Some(Seg::Index(*index)),
                    Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                    Segment::Unknown => None,
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A problem found at a key path, before it is placed in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    pub path: KeyPath,
    pub message: String,
}

impl PathError {
    pub fn new(path: &KeyPath, message: impl Into<String>) -> Self {
        PathError {
            path: path.clone(),
            message: message.into(),
        }
    }
}

/// A YAML file as read: its name in the repository and its text, kept to
/// place errors found after parsing.
#[derive(Clone, Debug)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    /// Places `err` in this file.
    pub fn error(&self, err: PathError) -> SpecError {
        SpecError {
            file: self.file.clone(),
            line: Some(locate(&self.text, &err.path.0)),
            key: (!err.path.0.is_empty()).then(|| err.path.to_string()),
            message: err.message,
        }
    }
}

/// Places `err` in the last of `sources` that has its key: with several
/// Compose files, the value that won the merge came from the last file that
/// sets it.
pub fn place(sources: &[Source], err: PathError) -> SpecError {
    let found = sources
        .iter()
        .rev()
        .find(|s| locate_exact(&s.text, &err.path.0).is_some());
    match found.or(sources.last()) {
        Some(source) => source.error(err),
        None => SpecError {
            file: String::new(),
            line: None,
            key: Some(err.path.to_string()),
            message: err.message,
        },
    }
}

/// Parses YAML text into a value; a syntax error names the line.
pub fn parse(file: &str, bytes: &[u8]) -> Result<(Source, Value), SpecError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| SpecError::file(file, format!("not UTF-8 text: {e}")))?
        .to_owned();
    let value: Value = serde_norway::from_str(&text).map_err(|e| SpecError {
        file: file.to_owned(),
        line: e.location().map(|l| l.line()),
        key: None,
        message: format!("invalid YAML: {}", strip_location(&e.to_string())),
    })?;
    let value = match value {
        Value::Null => Value::Mapping(Default::default()),
        Value::Mapping(_) => value,
        _ => {
            return Err(SpecError {
                file: file.to_owned(),
                line: Some(1),
                key: None,
                message: "the top level must be a mapping".into(),
            })
        }
    };
    Ok((
        Source {
            file: file.to_owned(),
            text,
        },
        value,
    ))
}

/// Deserializes `value` into `T`; an unknown key or a bad value is reported
/// with its key path.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, PathError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = KeyPath::from_serde(e.path());
        let message = e.into_inner().to_string();
        PathError {
            path,
            message: strip_location(&message),
        }
    })
}

/// serde_norway appends " at line L column C" to messages; the line is
/// reported separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A line of the document, without comments' influence on structure.
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
                return None;
            }
            Some(Line {
                number: i + 1,
                indent: raw.len() - trimmed.len(),
                text: trimmed,
            })
        })
        .collect()
}

/// The 1-based line of `path` in `text`, or of its deepest ancestor found.
pub fn locate(text: &str, path: &[Seg]) -> usize {
    let (line, _) = walk(text, path);
    line
}

/// The line of `path` when the whole path is present in `text`.
pub fn locate_exact(text: &str, path: &[Seg]) -> Option<usize> {
    match walk(text, path) {
        (line, true) => Some(line),
        _ => None,
    }
}

fn walk(text: &str, path: &[Seg]) -> (usize, bool) {
    let all = lines(text);
    let mut region: Vec<Line<'_>> = all;
    let mut best = 1;
    for seg in path {
        let Some(child_indent) = region.iter().map(|l| l.indent).min() else {
            return (best, false);
        };
        let found = match seg {
            Seg::Key(key) => region.iter().position(|l| {
                l.indent == child_indent && (is_key_line(l.text, key) || is_list_entry(l.text, key))
            }),
            Seg::Index(n) => region
                .iter()
                .enumerate()
                .filter(|(_, l)| l.indent == child_indent && is_item_line(l.text))
                .nth(*n)
                .map(|(i, _)| i),
        };
        let Some(at) = found else {
            return (best, false);
        };
        best = region[at].number;
        let head = &region[at];
        // The block of the found entry: following lines indented deeper.
        let mut block: Vec<Line<'_>> = Vec::new();
        match seg {
            Seg::Index(_) => {
                // `- key: value` starts a mapping on the item's own line.
                let rest = head.text[1..].trim_start();
                if !rest.is_empty() {
                    block.push(Line {
                        number: head.number,
                        indent: head.indent + (head.text.len() - rest.len()),
                        text: rest,
                    });
                }
            }
            Seg::Key(_) => {}
        }
        let head_indent = head.indent;
        let is_key = matches!(seg, Seg::Key(_));
        // Deeper lines belong to the entry; so do list items at the key's
        // own indent (`ports:` followed by `- 80:80` at the same column).
        block.extend(region.into_iter().skip(at + 1).take_while(|l| {
            l.indent > head_indent || (is_key && l.indent == head_indent && is_item_line(l.text))
        }));
        region = block;
    }
    (best, true)
}

fn is_item_line(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key:` / `"key":` / `'key':`, or a list entry `- KEY=value` / `- KEY`
/// (the list form of `environment` and `labels`, which is merged as a map).
fn is_key_line(text: &str, key: &str) -> bool {
    for quoted in [key.to_owned(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(rest) = text.strip_prefix(&quoted) {
            if rest.trim_start().starts_with(':')
                && (rest.starts_with(':') || rest.starts_with(' '))
            {
                return true;
            }
        }
    }
    false
}

fn is_list_entry(text: &str, key: &str) -> bool {
    let Some(item) = text.strip_prefix("- ") else {
        return false;
    };
    let item = item.trim().trim_matches(|c| c == '"' || c == '\'');
    match item.strip_prefix(key) {
        Some(rest) => rest.is_empty() || rest.starts_with('=') || rest.starts_with(':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
version: '3.9'
services:
  web:
    image: x
    # a comment
    ports:
      - 80:80
      - target: 81
        published: 82
    environment:
      A: 1
    labels:
      - tier=web
  db:
    image: y
networks:
  front: {}
";

    fn at(path: &str) -> (usize, bool) {
        let mut segs = Vec::new();
        for part in path.split('.') {
            if let Ok(n) = part.parse::<usize>() {
                segs.push(Seg::Index(n));
            } else {
                segs.push(Seg::Key(part.to_owned()));
            }
        }
        walk(DOC, &segs)
    }

    #[test]
    fn finds_keys_and_items() {
        assert_eq!(at("services.web.image"), (4, true));
        assert_eq!(at("services.db.image"), (15, true));
        assert_eq!(at("services.web.labels.tier"), (13, true));
        assert_eq!(at("services.web.ports.0"), (7, true));
        assert_eq!(at("services.web.ports.1"), (8, true));
        assert_eq!(at("services.web.ports.1.published"), (9, true));
        assert_eq!(at("services.web.environment.A"), (11, true));
        assert_eq!(at("networks.front"), (17, true));
    }

    #[test]
    fn missing_keys_point_at_the_deepest_ancestor() {
        assert_eq!(at("services.web.user"), (3, false));
        assert_eq!(at("services.cache.image"), (2, false));
        // `image` of db must not be found under web.
        assert_eq!(at("services.web.ports.2"), (6, false));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse("dc.yml", b"services:\n  web:\n    image: [\n").unwrap_err();
        assert_eq!(err.file, "dc.yml");
        assert!(err.line.is_some(), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn key_paths_display_as_dotted_with_indices() {
        let p = KeyPath::parse("services.web")
            .key("ports")
            .index(2)
            .key("target");
        assert_eq!(p.to_string(), "services.web.ports[2].target");
    }
}
