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

/// The value a flag's help text names as its default (`[default: …]`), for
/// the tests that hold each crate's help to its stated defaults.
pub fn help_default(help: &str) -> Option<&str> {
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
    fn help_default_is_the_bracketed_value() {
        assert_eq!(help_default("Port [default: 1:2] x"), Some("1:2"));
        assert_eq!(help_default("Port"), None);
        assert_eq!(help_default("Port [default: open"), None);
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
