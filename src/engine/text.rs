//! Token pieces → text that is valid UTF-8 at every step.
//!
//! A token's piece is bytes, and a character (é, a CJK ideograph, an emoji)
//! can be split across tokens. Bytes of an unfinished character are held
//! back until the character is complete; invalid bytes become U+FFFD.

#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds a piece and returns the text that is now complete.
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("checked prefix"),
                    );
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: held bytes that never completed become U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = if self.pending.is_empty() {
            String::new()
        } else {
            char::REPLACEMENT_CHARACTER.to_string()
        };
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` split at every byte boundary pattern `sizes` and checks
    /// that each output is valid and the concatenation is the input.
    fn feed(text: &str, size: usize) -> Vec<String> {
        let mut s = Utf8Stream::default();
        let mut out: Vec<String> = text.as_bytes().chunks(size).map(|c| s.push(c)).collect();
        out.push(s.finish());
        assert_eq!(out.concat(), text);
        out
    }

    #[test]
    fn characters_split_across_pieces_are_held_until_complete() {
        for text in ["café é", "你好世界", "🦀🚀 👨‍👩‍👧", "aé你🦀z"] {
            for size in 1..=5 {
                feed(text, size);
            }
        }
        // One byte at a time, an emoji (4 bytes) appears only with its last byte.
        let out = feed("🦀", 1);
        assert_eq!(out, ["", "", "", "🦀", ""]);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(s.push(b"\xe4\xbd"), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
