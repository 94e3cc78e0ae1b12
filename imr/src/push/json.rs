//! A tiny JSON object writer that produces exactly what Go's `encoding/json`
//! produces for a `map[string]interface{}` of integers, integer slices and
//! strings: keys in byte order (the caller writes them in order; checked in
//! debug builds), no spaces, and Go's string escaping:
//!
//! * `"` `\` → `\"` `\\`; `\b \f \n \r \t` as such; other controls `\u00xx`;
//! * `<` `>` `&` → `\u003c` `\u003e` `\u0026` (Go's default HTML escaping);
//! * U+2028 / U+2029 → `\u2028` / `\u2029`;
//! * every byte of an invalid UTF-8 sequence → `\ufffd` (content is bytes
//!   from clients and is not validated, spec §2.3).
//!
//! serde_json would produce the same for plain text but differs on the
//! HTML characters and on invalid UTF-8, so the push service would see
//! different bytes than gobelieve wrote.

pub struct Object {
    out: String,
    #[cfg(debug_assertions)]
    last_key: Option<&'static str>,
}

impl Object {
    pub fn new() -> Object {
        Object {
            out: String::from("{"),
            #[cfg(debug_assertions)]
            last_key: None,
        }
    }

    fn key(&mut self, key: &'static str) {
        #[cfg(debug_assertions)]
        {
            if let Some(prev) = self.last_key {
                debug_assert!(prev < key, "JSON keys out of order: {prev} then {key}");
            }
            self.last_key = Some(key);
        }
        if self.out.len() > 1 {
            self.out.push(',');
        }
        write_str(&mut self.out, key.as_bytes());
        self.out.push(':');
    }

    pub fn int(mut self, key: &'static str, v: i64) -> Object {
        self.key(key);
        self.out.push_str(&v.to_string());
        self
    }

    pub fn ints(mut self, key: &'static str, v: &[i64]) -> Object {
        self.key(key);
        self.out.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(&x.to_string());
        }
        self.out.push(']');
        self
    }

    /// A string field from raw bytes (Go `string(bytes)` semantics).
    pub fn bytes(mut self, key: &'static str, v: &[u8]) -> Object {
        self.key(key);
        write_str(&mut self.out, v);
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

impl Default for Object {
    fn default() -> Object {
        Object::new()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `v` as a quoted JSON string, escaped like Go's encoder.
pub fn write_str(out: &mut String, v: &[u8]) {
    out.push('"');
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                    let b = c as u8;
                    out.push_str("\\u00");
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 0xf) as usize] as char);
                }
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        // Go decodes rune by rune and replaces each byte that does not
        // start a valid rune; `invalid()` is such a run of 1–3 bytes.
        for _ in chunk.invalid() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> String {
        let mut o = String::new();
        write_str(&mut o, v);
        o
    }

    #[test]
    fn plain_and_escaped() {
        assert_eq!(s(b"hello"), r#""hello""#);
        assert_eq!(s(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s(b"\n\r\t\x08\x0c"), r#""\n\r\t\b\f""#);
        assert_eq!(s(b"\x00\x1f\x7f"), "\"\\u0000\\u001f\x7f\"");
        assert_eq!(s(b"<a href='x'>&"), r#""\u003ca href='x'\u003e\u0026""#);
        assert_eq!(s("é中😀".as_bytes()), "\"é中😀\"");
        assert_eq!(s("\u{2028}\u{2029}".as_bytes()), r#""\u2028\u2029""#);
        assert_eq!(s(b"/"), r#""/""#);
    }

    #[test]
    fn invalid_utf8_is_replaced_per_byte_like_go() {
        assert_eq!(s(b"a\xffb"), r#""a\ufffdb""#);
        // Truncated 4-byte sequence: Go reports three bad bytes.
        assert_eq!(s(b"\xf0\x9f\x98a"), r#""\ufffd\ufffd\ufffda""#);
        // Encoded surrogate.
        assert_eq!(s(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(s(b"\xc3"), r#""\ufffd""#);
    }

    #[test]
    fn object_layout() {
        let o = Object::new()
            .int("appid", 7)
            .bytes("content", b"{\"text\":\"hi\"}")
            .ints("receivers", &[1, -2])
            .int("sender", -9)
            .finish();
        assert_eq!(
            o,
            r#"{"appid":7,"content":"{\"text\":\"hi\"}","receivers":[1,-2],"sender":-9}"#
        );
        let v: serde_json::Value = serde_json::from_str(&o).expect("valid JSON");
        assert_eq!(v["content"], "{\"text\":\"hi\"}");
        assert_eq!(Object::new().finish(), "{}");
    }

    #[test]
    fn escaped_output_round_trips_through_a_json_parser() {
        let raw = "a<b>&\"\\\u{1}\u{2028}x".as_bytes();
        let v: serde_json::Value = serde_json::from_str(&s(raw)).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::Value::String("a<b>&\"\\\u{1}\u{2028}x".into())
        );
    }
}
