//! Untrusted text on its way to a terminal.
//!
//! Model output, hub file names and GGUF strings can carry control
//! characters; written raw, an escape sequence retitles the window, moves the
//! cursor, rewrites what was printed or worse. Everything o1 draws from such a
//! source passes through here: C0 and C1 controls and DEL become visible
//! escapes (`\x1b`, `\u{9b}`). Text written to a pipe or file is left exact.

use std::borrow::Cow;

/// Text for a multi-line area: newlines and tabs kept, other controls escaped.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// Text for a single line (a name, a status line): every control escaped,
/// newlines and tabs too.
pub fn for_terminal_line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

fn is_control(c: char) -> bool {
    // C0, DEL and C1. Also the Unicode bidi overrides, which can make a name
    // read differently from what it is.
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_control(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_control(c) && !keep(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible() {
        let hostile = "ok\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{7f}\rend";
        let shown = for_terminal(hostile);
        assert_eq!(shown, "ok\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x7f\\rend");
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn newlines_and_tabs_survive_in_areas_not_in_lines() {
        assert_eq!(for_terminal("a\n\tb"), "a\n\tb");
        assert_eq!(for_terminal_line("a\n\tb"), "a\\n\\tb");
    }

    #[test]
    fn clean_text_is_not_copied() {
        assert!(matches!(for_terminal("héllo 世界 ✓"), Cow::Borrowed(_)));
        assert!(matches!(for_terminal_line("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn bidi_overrides_are_escaped() {
        assert_eq!(for_terminal_line("a\u{202e}b"), "a\\u{202e}b");
    }
}
