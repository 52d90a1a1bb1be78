//! Compose interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`, `${VAR+other}`,
//! `$VAR` and `$$`, in every string value (never in keys), as the Compose
//! specification defines them.
//!
//! A variable that is not set becomes an empty string with a warning, as
//! `docker stack deploy` does; `${VAR:?message}` is how a file insists.

use std::collections::BTreeMap;

use serde_norway::Value;

use super::yaml::{KeyPath, PathError};

/// The variables interpolation sees, and the warnings it gives.
pub struct Interpolator<'a> {
    vars: &'a BTreeMap<String, String>,
    /// "variable X is not set" notes, one per place.
    pub warnings: Vec<String>,
}

impl<'a> Interpolator<'a> {
    pub fn new(vars: &'a BTreeMap<String, String>) -> Self {
        Interpolator {
            vars,
            warnings: Vec::new(),
        }
    }

    /// Interpolates every string in `value`, in place.
    pub fn value(&mut self, value: &mut Value, path: &KeyPath) -> Result<(), PathError> {
        match value {
            Value::String(s) => {
                if s.contains('$') {
                    *s = self.string(s, path)?;
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &path.index(i))?;
                }
            }
            Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    self.value(v, &path.key(&key))?;
                }
            }
            Value::Tagged(tagged) => self.value(&mut tagged.value, path)?,
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }

    /// Interpolates one string.
    pub fn string(&mut self, text: &str, path: &KeyPath) -> Result<String, PathError> {
        let invalid = |detail: &str| {
            PathError::new(
                path,
                format!("invalid interpolation in {text:?}: {detail} (write $$ for a literal $)"),
            )
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            match rest.chars().next() {
                Some('$') => {
                    out.push('$');
                    rest = &rest[1..];
                }
                Some('{') => {
                    let close = matching_brace(rest).ok_or_else(|| invalid("unclosed ${"))?;
                    let inner = &rest[1..close];
                    rest = &rest[close + 1..];
                    out.push_str(&self.braced(inner, path, &invalid)?);
                }
                Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                    let len = name_len(rest);
                    let name = &rest[..len];
                    rest = &rest[len..];
                    out.push_str(&self.lookup_or_blank(name, path));
                }
                _ => return Err(invalid("a $ must start a variable")),
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn braced(
        &mut self,
        inner: &str,
        path: &KeyPath,
        invalid: &dyn Fn(&str) -> PathError,
    ) -> Result<String, PathError> {
        let len = name_len(inner);
        if len == 0 {
            return Err(invalid("a variable name must start with a letter or _"));
        }
        let name = &inner[..len];
        let op = &inner[len..];
        let value = self.vars.get(name);
        let set_nonempty = value.is_some_and(|v| !v.is_empty());
        let (operator, argument) = if op.is_empty() {
            ("", "")
        } else if let Some(found) = [":-", ":?", ":+", "-", "?", "+"]
            .iter()
            .find_map(|o| op.strip_prefix(o).map(|a| (*o, a)))
        {
            found
        } else {
            return Err(invalid(&format!("unknown operator in ${{{inner}}}")));
        };
        match operator {
            "" => Ok(self.lookup_or_blank(name, path)),
            ":-" if set_nonempty => Ok(value.cloned().unwrap_or_default()),
            "-" if value.is_some() => Ok(value.cloned().unwrap_or_default()),
            ":-" | "-" => self.string(argument, path),
            ":?" if set_nonempty => Ok(value.cloned().unwrap_or_default()),
            "?" if value.is_some() => Ok(value.cloned().unwrap_or_default()),
            ":?" | "?" => {
                let message = self.string(argument, path)?;
                let why = if value.is_some() {
                    "is empty"
                } else {
                    "is not set"
                };
                Err(PathError::new(
                    path,
                    if message.is_empty() {
                        format!("required variable {name} {why}")
                    } else {
                        format!("required variable {name} {why}: {message}")
                    },
                ))
            }
            ":+" if set_nonempty => self.string(argument, path),
            "+" if value.is_some() => self.string(argument, path),
            _ => Ok(String::new()),
        }
    }

    fn lookup_or_blank(&mut self, name: &str, path: &KeyPath) -> String {
        match self.vars.get(name) {
            Some(v) => v.clone(),
            None => {
                self.warnings.push(format!(
                    "{path}: variable {name} is not set, using an empty string"
                ));
                String::new()
            }
        }
    }
}

fn name_len(s: &str) -> usize {
    s.char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

/// Index of the `}` that closes the `{` at the start of `s`, allowing
/// nested `${...}` in defaults.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "v1"), ("EMPTY", ""), ("HOST", "db")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn run(text: &str) -> Result<(String, Vec<String>), String> {
        let v = vars();
        let mut i = Interpolator::new(&v);
        let out = i
            .string(text, &KeyPath::parse("services.web.image"))
            .map_err(|e| format!("{}: {}", e.path, e.message))?;
        Ok((out, i.warnings))
    }

    fn ok(text: &str) -> String {
        run(text).unwrap().0
    }

    #[test]
    fn forms() {
        assert_eq!(ok("app:${TAG}"), "app:v1");
        assert_eq!(ok("app:$TAG"), "app:v1");
        assert_eq!(ok("$TAG-$HOST"), "v1-db");
        assert_eq!(ok("$$TAG"), "$TAG");
        assert_eq!(ok("a$$"), "a$");
        assert_eq!(ok("${MISSING:-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${MISSING-d}"), "d");
        assert_eq!(ok("${TAG:-d}"), "v1");
        assert_eq!(ok("${MISSING:-${HOST}:5432}"), "db:5432");
        assert_eq!(ok("${TAG:?need a tag}"), "v1");
        assert_eq!(ok("${EMPTY?x}"), "");
        assert_eq!(ok("${TAG:+set}"), "set");
        assert_eq!(ok("${EMPTY:+set}"), "");
        assert_eq!(ok("${EMPTY+set}"), "set");
        assert_eq!(ok("no dollars"), "no dollars");
    }

    #[test]
    fn unset_variables_become_blank_with_a_warning() {
        let (out, warnings) = run("x${NOPE}y").unwrap();
        assert_eq!(out, "xy");
        assert_eq!(
            warnings,
            vec!["services.web.image: variable NOPE is not set, using an empty string"]
        );
    }

    #[test]
    fn errors_name_the_path_and_the_variable() {
        assert_eq!(
            run("${MISSING:?set MISSING in slipway.yml}").unwrap_err(),
            "services.web.image: required variable MISSING is not set: set MISSING in slipway.yml"
        );
        assert_eq!(
            run("${EMPTY:?}").unwrap_err(),
            "services.web.image: required variable EMPTY is empty"
        );
        assert_eq!(
            run("${MISSING?}").unwrap_err(),
            "services.web.image: required variable MISSING is not set"
        );
        assert!(run("${TAG").unwrap_err().contains("unclosed"));
        assert!(run("${}").unwrap_err().contains("variable name"));
        assert!(run("${TAG:x}").unwrap_err().contains("unknown operator"));
        assert!(run("cost: $5").unwrap_err().contains("$$"));
    }

    #[test]
    fn values_are_interpolated_everywhere_but_keys() {
        let v = vars();
        let mut i = Interpolator::new(&v);
        let mut value: Value =
            serde_norway::from_str("a:\n  $TAG: [\"${TAG}\", 3]\n  b: ${HOST}\n").unwrap();
        i.value(&mut value, &KeyPath::default()).unwrap();
        let expected: Value = serde_norway::from_str("a:\n  $TAG: [v1, 3]\n  b: db\n").unwrap();
        assert_eq!(value, expected);
    }
}
