//! Layered configuration, shared by `ferry im` and `ferry imr`: each resolves
//! one options struct from flags > environment (both merged by clap) > the
//! TOML file of `--config` > gobelieve's file > defaults.
//!
//! An options struct is declared once with [`layered_options!`]: every field
//! is an `Option`, so a layer says only what it sets, and the macro writes
//! the field-by-field merge ([`Layer::or`]) that each crate used to write by
//! hand (and had to remember to extend with every new flag). The defaults
//! stay with each crate: they are the last `unwrap_or` of its `resolve`.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Configuration errors, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// A set of optional settings that can be laid over a lower one.
pub trait Layer: Sized {
    /// Each setting of `self`, or `lower`'s where `self` has none.
    fn or(self, lower: Self) -> Self;
}

/// Declares an options struct whose fields are all `Option<_>` and
/// implements [`Layer`] for it. Attributes (clap, serde, doc comments) pass
/// through unchanged.
#[macro_export]
macro_rules! layered_options {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : Option<$ty:ty>
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: Option<$ty>,
            )*
        }

        impl $crate::config::Layer for $name {
            fn or(self, lower: Self) -> Self {
                $name {
                    $($field: self.$field.or(lower.$field),)*
                }
            }
        }
    };
}

/// The options in the TOML file at `path`; no file, no options.
pub fn read_layer<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    match path {
        Some(path) => read_toml(path, Ok),
        None => Ok(T::default()),
    }
}

/// Reads the TOML file at `path` as a `T` and maps it with `then`; an error
/// of either step names the file.
pub fn read_toml<T: DeserializeOwned, R>(
    path: &Path,
    then: impl FnOnce(T) -> Result<R, String>,
) -> Result<R, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let parsed: T = toml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
    then(parsed).map_err(parse_err)
}

/// Checks that the flag help texts (`(id, help)` pairs) state exactly the
/// defaults in `shown` as `[default: …]`: the tests of im and imr hold their
/// `--help` to the values `resolve` uses with it. The error names the first
/// difference.
pub fn check_help_defaults(
    helps: impl IntoIterator<Item = (String, String)>,
    shown: &[(&str, String)],
) -> Result<(), String> {
    let mut seen = 0;
    for (id, help) in helps {
        let Some(value) = help_default(&help) else {
            continue;
        };
        match shown.iter().find(|(k, _)| *k == id) {
            Some((_, v)) if v == value => seen += 1,
            Some((_, v)) => return Err(format!("--{id}: help says [default: {value}], not {v}")),
            None => return Err(format!("--{id}: help says [default: {value}], not listed")),
        }
    }
    if seen != shown.len() {
        return Err(format!(
            "{} listed defaults are in no help text",
            shown.len() - seen
        ));
    }
    Ok(())
}

/// The value a help text names as its default (`[default: …]`).
fn help_default(help: &str) -> Option<&str> {
    let rest = &help[help.find("[default: ")? + "[default: ".len()..];
    rest.find(']').map(|end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::layered_options! {
        #[derive(Debug, Default, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Opts {
            a: Option<u32>,
            b: Option<String>,
        }
    }

    #[test]
    fn help_defaults_are_checked_both_ways() {
        assert_eq!(help_default("Port [default: 1:2] x"), Some("1:2"));
        assert_eq!(help_default("Port [default: open"), None);
        let helps = || {
            vec![
                ("a".to_string(), "A [default: 1]".to_string()),
                ("b".to_string(), "B".to_string()),
            ]
        };
        assert_eq!(check_help_defaults(helps(), &[("a", "1".into())]), Ok(()));
        assert!(check_help_defaults(helps(), &[("a", "2".into())]).is_err());
        assert!(check_help_defaults(helps(), &[]).is_err());
        let extra = [("a", "1".to_string()), ("b", "2".to_string())];
        assert!(check_help_defaults(helps(), &extra).is_err());
    }

    #[test]
    fn upper_layer_wins_field_by_field() {
        let upper = Opts {
            a: Some(1),
            b: None,
        };
        let lower = Opts {
            a: Some(2),
            b: Some("x".into()),
        };
        assert_eq!(
            upper.or(lower),
            Opts {
                a: Some(1),
                b: Some("x".into())
            }
        );
    }

    #[test]
    fn file_layer_reads_toml_and_names_the_file_in_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let good = dir.join("good.toml");
        std::fs::write(&good, "a = 5\n").expect("write");
        let o: Opts = read_layer(Some(&good)).expect("valid");
        assert_eq!(o.a, Some(5));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "c = 1\n").expect("write");
        let err = read_layer::<Opts>(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains('c'), "{err}");
        let err = read_layer::<Opts>(Some(&dir.join("missing.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read config file"), "{err}");
        assert_eq!(read_layer::<Opts>(None).expect("none"), Opts::default());
    }
}
