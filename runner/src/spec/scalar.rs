//! Lenient scalars. After interpolation `replicas: ${REPLICAS}` is the
//! string `"3"`, and people write `user: 1000` or `cpus: 0.5` as numbers
//! where the Engine wants strings; the Docker CLI casts both ways, so these
//! types do too, and fail with a message that says what was expected.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A string written as a string, number or boolean.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer written as a number or a numeric string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| E::custom(format!("expected an integer, found {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean written as `true`/`false` or as such a string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bool(pub bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "y" | "on" => Ok(Bool(true)),
                    "false" | "no" | "n" | "off" => Ok(Bool(false)),
                    _ => Err(E::custom(format!("expected true or false, found {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `rollback:` of an environment: `true` (or `stack`), `service`, `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollbackSetting(pub crate::plan::Rollback);

impl<'de> Deserialize<'de> for RollbackSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::plan::Rollback;
        struct V;
        impl Visitor<'_> for V {
            type Value = RollbackSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true (or stack), service, or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RollbackSetting, E> {
                Ok(RollbackSetting(if v {
                    Rollback::Stack
                } else {
                    Rollback::Off
                }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RollbackSetting, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "stack" => Ok(RollbackSetting(Rollback::Stack)),
                    "service" => Ok(RollbackSetting(Rollback::Service)),
                    _ => match Bool::deserialize(de::value::StrDeserializer::<E>::new(v)) {
                        Ok(Bool(b)) => self.visit_bool(b),
                        Err(_) => Err(E::custom(format!(
                            "expected true (or stack), service, or false, found {v:?}"
                        ))),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One string or a list of them (`compose: a.yml` or `compose: [a.yml, b.yml]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(item)) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in Go syntax (`1m30s`), as nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nanos(pub i64);

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        super::units::parse_duration(&text)
            .map(Nanos)
            .map_err(de::Error::custom)
    }
}

/// A byte size (`64M`, or a number of bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub i64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        super::units::parse_bytes(&text)
            .map(Bytes)
            .map_err(de::Error::custom)
    }
}
