//! Markdown → terminal lines wrapped to a width: headings, emphasis,
//! inline code, lists, quotes and fenced code blocks set apart. Widths are
//! display columns (CJK and emoji take two). Text that is still streaming
//! (an unclosed fence, half a list) renders as well as it can.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

/// Renders `text` as lines no wider than `width`.
pub fn render(text: &str, width: usize, base: Style) -> Vec<Line<'static>> {
    let mut r = Renderer {
        width: width.max(8),
        base,
        lines: Vec::new(),
        styles: vec![base],
        block: Vec::new(),
        prefix: Vec::new(),
        lists: Vec::new(),
        code: false,
        item_start: false,
    };
    let parser = Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH);
    for event in parser {
        r.event(event);
    }
    r.flush();
    while r.lines.last().is_some_and(|l| l.spans.is_empty()) {
        r.lines.pop();
    }
    r.lines
}

struct Renderer {
    width: usize,
    base: Style,
    lines: Vec<Line<'static>>,
    /// Inline style stack (emphasis, strong, …).
    styles: Vec<Style>,
    /// The current block's text: (text, style) runs; '\n' forces a break.
    block: Vec<(String, Style)>,
    /// Prefixes of enclosing blocks (quote bars, list indents).
    prefix: Vec<String>,
    /// Enclosing lists: the next item number, or None for bullets.
    lists: Vec<Option<u64>>,
    code: bool,
    /// The block starts a list item: its first line carries the marker
    /// instead of the item's indent.
    item_start: bool,
}

impl Renderer {
    fn style(&self) -> Style {
        *self.styles.last().expect("base style")
    }

    fn push_style(&mut self, f: impl FnOnce(Style) -> Style) {
        let s = f(self.style());
        self.styles.push(s);
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => {
                let style = self.style();
                self.block.push((t.into_string(), style));
            }
            Event::Code(t) => self
                .block
                .push((t.into_string(), self.base.fg(Color::Yellow))),
            Event::SoftBreak | Event::HardBreak => {
                let style = self.style();
                self.block.push(("\n".into(), style));
            }
            Event::Rule => {
                self.flush();
                self.lines.push(Line::styled(
                    "─".repeat(self.width.min(40)),
                    self.base.fg(Color::DarkGray),
                ));
                self.lines.push(Line::default());
            }
            Event::Html(t) | Event::InlineHtml(t) => {
                let style = self.style();
                self.block.push((t.into_string(), style));
            }
            Event::TaskListMarker(done) => self
                .block
                .push((if done { "[x] " } else { "[ ] " }.into(), self.style())),
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Paragraph => {}
            Tag::Heading { level, .. } => {
                self.flush();
                let color = if level == HeadingLevel::H1 {
                    Color::Magenta
                } else {
                    Color::Cyan
                };
                self.push_style(|s| s.fg(color).add_modifier(Modifier::BOLD));
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.prefix.push("▌ ".into());
                self.push_style(|s| s.fg(Color::Gray).add_modifier(Modifier::ITALIC));
            }
            Tag::CodeBlock(kind) => {
                self.flush();
                if let CodeBlockKind::Fenced(lang) = kind {
                    if !lang.is_empty() {
                        self.lines.push(Line::styled(
                            format!("  [{lang}]"),
                            self.base.fg(Color::DarkGray),
                        ));
                    }
                }
                self.code = true;
                self.prefix.push("    ".into());
                self.push_style(|s| s.fg(Color::Green));
            }
            Tag::List(start) => {
                self.flush();
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "• ".into(),
                };
                self.block.push((marker.clone(), self.base.fg(Color::Cyan)));
                // Continuation lines line up after the marker.
                self.prefix.push(" ".repeat(marker.chars().count()));
                self.item_start = true;
            }
            Tag::Emphasis => self.push_style(|s| s.add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.push_style(|s| s.add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => self.push_style(|s| s.add_modifier(Modifier::CROSSED_OUT)),
            Tag::Link { .. } => {
                self.push_style(|s| s.fg(Color::Blue).add_modifier(Modifier::UNDERLINED))
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush();
                if self.lists.is_empty() {
                    self.lines.push(Line::default());
                }
            }
            TagEnd::Heading(_) => {
                self.styles.pop();
                self.flush();
                self.lines.push(Line::default());
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.prefix.pop();
                self.styles.pop();
            }
            TagEnd::CodeBlock => {
                self.flush();
                self.code = false;
                self.prefix.pop();
                self.styles.pop();
                self.lines.push(Line::default());
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.lines.push(Line::default());
                }
            }
            TagEnd::Item => {
                self.flush();
                self.prefix.pop();
            }
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Link => {
                self.styles.pop();
            }
            _ => {}
        }
    }

    /// Wraps the current block into lines.
    fn flush(&mut self) {
        if self.block.is_empty() {
            return;
        }
        let runs = std::mem::take(&mut self.block);
        let prefix: String = self.prefix.concat();
        let mut first_prefix = if self.item_start {
            self.prefix[..self.prefix.len() - 1].concat()
        } else {
            prefix.clone()
        };
        self.item_start = false;
        let prefix_style = self.base.fg(Color::DarkGray);
        let room = self.width.saturating_sub(display_width(&prefix)).max(4);
        let mut line: Vec<Span<'static>> = Vec::new();
        let mut col = 0;
        let code = self.code;
        let mut finish = |line: &mut Vec<Span<'static>>, lines: &mut Vec<Line<'static>>| {
            // A wrapped line does not end in the space it broke at.
            while !code && line.last().is_some_and(|s| s.content.trim().is_empty()) {
                line.pop();
            }
            let mut spans = vec![Span::styled(
                std::mem::replace(&mut first_prefix, prefix.clone()),
                prefix_style,
            )];
            spans.append(line);
            lines.push(Line::from(spans));
        };
        for (text, style) in runs {
            for piece in atoms(&text, self.code) {
                if piece == "\n" {
                    finish(&mut line, &mut self.lines);
                    col = 0;
                    continue;
                }
                let w = display_width(piece);
                if col + w > room && col > 0 {
                    finish(&mut line, &mut self.lines);
                    col = 0;
                    if piece.trim().is_empty() && !self.code {
                        continue; // no leading space after a wrap
                    }
                }
                if w > room {
                    // A word longer than the line: break it by characters.
                    for c in piece.chars() {
                        let cw = c.width().unwrap_or(0);
                        if col + cw > room {
                            finish(&mut line, &mut self.lines);
                            col = 0;
                        }
                        line.push(Span::styled(c.to_string(), style));
                        col += cw;
                    }
                    continue;
                }
                line.push(Span::styled(piece.to_string(), style));
                col += w;
            }
        }
        if !line.is_empty() {
            finish(&mut line, &mut self.lines);
        }
    }
}

pub fn display_width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Splits text into pieces that wrap as units: words, runs of spaces,
/// single wide characters (CJK has no spaces to break at) and newlines.
fn atoms(text: &str, code: bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut kind = None; // Some(true): spaces, Some(false): word
    for (i, c) in text.char_indices() {
        let boundary = c == '\n' || (!code && c.width().unwrap_or(0) > 1);
        if boundary {
            if start < i {
                out.push(&text[start..i]);
            }
            out.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
            kind = None;
            continue;
        }
        let space = c == ' ';
        if kind.is_some_and(|k| k != space) && start < i {
            out.push(&text[start..i]);
            start = i;
        }
        kind = Some(space);
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn wraps_words_to_the_width() {
        let lines = render(
            "The quick brown fox jumps over the lazy dog",
            16,
            Style::default(),
        );
        assert_eq!(
            plain(&lines),
            ["The quick brown", "fox jumps over", "the lazy dog"]
        );
        assert!(lines.iter().all(|l| l.width() <= 16));
    }

    #[test]
    fn cjk_and_emoji_take_two_columns() {
        let lines = render("你好世界你好世界 🦀🦀🦀", 10, Style::default());
        for l in &lines {
            assert!(
                l.width() <= 10,
                "{:?} is {} wide",
                plain(std::slice::from_ref(l)),
                l.width()
            );
        }
        assert_eq!(plain(&lines), ["你好世界你", "好世界 🦀", "🦀🦀"]);
    }

    #[test]
    fn structure_is_rendered() {
        let md = "# Title\n\nSome *em* and **strong** and `code`.\n\n- one\n- two\n\n1. first\n2. second\n\n```rust\nfn main() {}\n```\n\n> quoted";
        let lines = render(md, 40, Style::default());
        let text = plain(&lines);
        assert_eq!(
            text,
            [
                "Title",
                "",
                "Some em and strong and code.",
                "",
                "• one",
                "• two",
                "",
                "1. first",
                "2. second",
                "",
                "  [rust]",
                "    fn main() {}",
                "",
                "▌ quoted"
            ]
        );
        let title = &lines[0].spans[1];
        assert!(title.style.add_modifier.contains(Modifier::BOLD));
        let em = lines[2].spans.iter().find(|s| s.content == "em").unwrap();
        assert!(em.style.add_modifier.contains(Modifier::ITALIC));
    }

    #[test]
    fn list_items_wrap_under_their_text() {
        let lines = render(
            "- a list item that is long enough to wrap",
            20,
            Style::default(),
        );
        assert_eq!(
            plain(&lines),
            ["• a list item that", "  is long enough to", "  wrap"]
        );
    }

    #[test]
    fn unclosed_fence_while_streaming() {
        let lines = render(
            "Here:\n```python\ndef f(x):\n    return x",
            30,
            Style::default(),
        );
        assert_eq!(
            plain(&lines),
            [
                "Here:",
                "",
                "  [python]",
                "    def f(x):",
                "        return x"
            ]
        );
    }
}
