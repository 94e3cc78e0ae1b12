//! Dirty-word filter (spec §3.13, `--word-file`).
//!
//! The dictionary (one word per line, UTF-8) is compiled once into an
//! Aho-Corasick automaton (the `aho-corasick` crate, already in the build
//! through `regex`): matching costs one pass over the text whatever the number
//! of words, so 50,000 words cost what 50 do.
//!
//! Only the `"text"` string of a JSON object is looked at; content that is not
//! such a JSON object is left as it was. Latin letters match case-insensitively.
//! Symbol and punctuation characters are "noise": they are skipped while
//! matching, so `f.o.o` matches the word `foo`, and the whole matched span
//! (noise included) is masked. Whitespace is not noise, so words never match
//! across a space (`this hit` does not contain `shit`). Every character of a
//! match becomes one `*`; overlapping matches are all masked.
//!
//! A filtered message is re-encoded by serde_json, which writes object keys
//! in sorted order — as gobelieve's Go encoder does.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bytes::Bytes;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WordFileError {
    #[error("cannot read word file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("word file {path}: {message}")]
    Build { path: PathBuf, message: String },
}

/// A compiled dictionary.
pub struct WordFilter {
    automaton: AhoCorasick,
    words: usize,
}

impl std::fmt::Debug for WordFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordFilter")
            .field("words", &self.words)
            .finish()
    }
}

/// Skipped while matching (see the module doc).
fn is_noise(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace()
}

impl WordFilter {
    /// Loads a dictionary file; blank lines are skipped, a BOM is ignored.
    pub fn load(path: &Path) -> Result<WordFilter, WordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| WordFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        WordFilter::new(text.lines()).map_err(|message| WordFileError::Build {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Compiles the given words (noise characters in them are dropped).
    pub fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<WordFilter, String> {
        let words: Vec<String> = words
            .into_iter()
            .map(|w| w.chars().filter(|c| !is_noise(*c)).collect::<String>())
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect();
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&words)
            .map_err(|e| e.to_string())?;
        Ok(WordFilter {
            words: words.len(),
            automaton,
        })
    }

    /// Number of words in the dictionary.
    pub fn len(&self) -> usize {
        self.words
    }

    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// `text` with every dictionary word masked, or `None` when it holds none.
    pub fn mask(&self, text: &str) -> Option<String> {
        // The text without noise, and for each of its bytes the index of the
        // original character it came from.
        let chars: Vec<char> = text.chars().collect();
        let mut clean = String::with_capacity(text.len());
        let mut origin: Vec<u32> = Vec::with_capacity(text.len());
        for (i, c) in chars.iter().enumerate() {
            if !is_noise(*c) {
                clean.push(*c);
                origin.extend(std::iter::repeat_n(i as u32, c.len_utf8()));
            }
        }
        let mut masked: Option<Vec<bool>> = None;
        for m in self.automaton.find_overlapping_iter(&clean) {
            let (Some(&first), Some(&last)) = (origin.get(m.start()), origin.get(m.end() - 1))
            else {
                continue;
            };
            let masked = masked.get_or_insert_with(|| vec![false; chars.len()]);
            for flag in &mut masked[first as usize..=last as usize] {
                *flag = true;
            }
        }
        let masked = masked?;
        Some(
            chars
                .iter()
                .zip(masked)
                .map(|(c, m)| if m { '*' } else { *c })
                .collect(),
        )
    }

    /// Message content with the JSON `"text"` masked, or `None` when the
    /// content is not a JSON object with a string `"text"`, or holds no word.
    pub fn filter_content(&self, content: &[u8]) -> Option<Bytes> {
        let mut value: serde_json::Value = serde_json::from_slice(content).ok()?;
        let text = value.as_object_mut()?.get_mut("text")?;
        let masked = self.mask(text.as_str()?)?;
        *text = serde_json::Value::String(masked);
        serde_json::to_vec(&value).ok().map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> WordFilter {
        WordFilter::new(["foo", "傻瓜", "ab", "bc", "", "  "]).expect("builds")
    }

    #[test]
    fn masks_each_character_of_each_occurrence() {
        let f = filter();
        assert_eq!(f.len(), 4);
        assert_eq!(f.mask("a foo and FOO").as_deref(), Some("a *** and ***"));
        assert_eq!(f.mask("你是傻瓜吗").as_deref(), Some("你是**吗"));
        assert_eq!(f.mask("abc").as_deref(), Some("***"), "overlapping words");
        assert_eq!(f.mask("clean text"), None);
        assert_eq!(f.mask(""), None);
    }

    #[test]
    fn noise_is_skipped_but_spaces_are_not() {
        let f = filter();
        assert_eq!(f.mask("f.o-o!").as_deref(), Some("*****!"));
        assert_eq!(f.mask("傻|瓜").as_deref(), Some("***"));
        assert_eq!(f.mask("fo o"), None);
    }

    #[test]
    fn only_the_json_text_is_filtered() {
        let f = filter();
        let out = f
            .filter_content(br#"{"text":"foo bar","foo":"foo","n":1}"#)
            .expect("filtered");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["text"], "*** bar");
        assert_eq!(v["foo"], "foo");
        assert_eq!(v["n"], 1);
        assert_eq!(f.filter_content(b"foo"), None, "not JSON");
        assert_eq!(f.filter_content(br#"{"text":"bar"}"#), None, "no word");
        assert_eq!(f.filter_content(br#"{"text":5}"#), None, "not a string");
        assert_eq!(f.filter_content(br#"["foo"]"#), None, "not an object");
    }

    #[test]
    fn load_reads_lines_and_names_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("words.txt");
        std::fs::write(&path, "\u{feff}foo\r\n\n傻瓜\n").expect("write");
        let f = WordFilter::load(&path).expect("loads");
        assert_eq!(f.len(), 2);
        assert_eq!(f.mask("傻瓜 foo").as_deref(), Some("** ***"));
        let err = WordFilter::load(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
