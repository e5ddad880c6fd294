//! The question editor: multi-line text with a cursor, and recall of the
//! questions sent before (Up/Down at the first/last line).

use unicode_width::UnicodeWidthChar;

#[derive(Default, Debug, Clone)]
pub struct Input {
    text: String,
    /// Byte offset of the cursor in `text`, always on a char boundary.
    cursor: usize,
    history: Vec<String>,
    /// Position in `history` while recalling; `None` when editing a draft.
    recalled: Option<usize>,
    /// The draft put aside while recalling.
    draft: String,
}

impl Input {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn insert(&mut self, s: &str) {
        // Pasted text may carry \r\n or lone \r line ends, tabs (which
        // would move the terminal's cursor) and other controls (which could
        // drive it): line ends kept, tabs as spaces, the rest dropped.
        let s = s
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\t', "    ");
        let s: String = s
            .chars()
            .filter(|&c| c == '\n' || !c.is_control())
            .collect();
        self.text.insert_str(self.cursor, &s);
        self.cursor += s.len();
        self.recalled = None;
    }

    pub fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    pub fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Up: the line above, or (on the first line) the previous question.
    pub fn up(&mut self) {
        let start = self.line_start();
        if start == 0 {
            self.recall_older();
            return;
        }
        let column = self.text[start..self.cursor].chars().count();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = advance(&self.text, prev_start, start - 1, column);
    }

    /// Down: the line below, or (on the last line) the next question.
    pub fn down(&mut self) {
        let end = self.line_end();
        if end == self.text.len() {
            self.recall_newer();
            return;
        }
        let column = self.text[self.line_start()..self.cursor].chars().count();
        let next_start = end + 1;
        let next_end = self.text[next_start..]
            .find('\n')
            .map_or(self.text.len(), |i| next_start + i);
        self.cursor = advance(&self.text, next_start, next_end, column);
    }

    fn recall_older(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let i = match self.recalled {
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.history.len() - 1
            }
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.recalled = Some(i);
        self.text = self.history[i].clone();
        self.cursor = self.text.len();
    }

    fn recall_newer(&mut self) {
        let Some(i) = self.recalled else { return };
        if i + 1 < self.history.len() {
            self.recalled = Some(i + 1);
            self.text = self.history[i + 1].clone();
        } else {
            self.recalled = None;
            self.text = std::mem::take(&mut self.draft);
        }
        self.cursor = self.text.len();
    }

    /// Takes the text to send, remembering it for recall.
    pub fn take(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.recalled = None;
        self.draft.clear();
        if self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        text
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.recalled = None;
    }

    /// The text wrapped to `width` columns, and the cursor's (row, column).
    pub fn layout(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(1);
        let mut rows = vec![String::new()];
        let mut col = 0;
        let mut cursor_at = (0, 0);
        for (i, c) in self.text.char_indices() {
            if i == self.cursor {
                cursor_at = (rows.len() - 1, col);
            }
            if c == '\n' {
                rows.push(String::new());
                col = 0;
                continue;
            }
            let w = c.width().unwrap_or(0);
            if col + w > width {
                rows.push(String::new());
                col = 0;
            }
            rows.last_mut().expect("one row").push(c);
            col += w;
        }
        if self.cursor == self.text.len() {
            if col >= width {
                rows.push(String::new());
                col = 0;
            }
            cursor_at = (rows.len() - 1, col);
        }
        (rows, cursor_at)
    }
}

/// The byte offset `column` chars after `start`, not past `end`.
fn advance(text: &str, start: usize, end: usize, column: usize) -> usize {
    text[start..end]
        .char_indices()
        .nth(column)
        .map_or(end, |(i, _)| start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_and_cursor_movement() {
        let mut i = Input::default();
        i.insert("héllo");
        i.left();
        i.left();
        i.insert("X");
        assert_eq!(i.text(), "hélXlo");
        i.backspace();
        i.home();
        i.delete();
        assert_eq!(i.text(), "éllo");
        i.end();
        i.insert("\nworld");
        i.up();
        assert_eq!(i.cursor(), "éllo".len(), "same column on the line above");
        i.down();
        i.home();
        i.right();
        i.up();
        assert_eq!(i.cursor(), 'é'.len_utf8());
    }

    #[test]
    fn paste_normalises_line_ends() {
        let mut i = Input::default();
        i.insert("a\r\nb\rc");
        assert_eq!(i.text(), "a\nb\nc");
        i.insert("\td\u{1b}[2J\u{9b}e");
        assert_eq!(i.text(), "a\nb\nc    d[2Je");
    }

    #[test]
    fn recall_of_earlier_questions_keeps_the_draft() {
        let mut i = Input::default();
        i.insert("first");
        assert_eq!(i.take(), "first");
        i.insert("second");
        i.take();
        i.insert("draft");
        i.up();
        assert_eq!(i.text(), "second");
        i.up();
        assert_eq!(i.text(), "first");
        i.up();
        assert_eq!(i.text(), "first");
        i.down();
        i.down();
        assert_eq!(i.text(), "draft");
    }

    #[test]
    fn layout_wraps_wide_characters_and_places_the_cursor() {
        let mut i = Input::default();
        i.insert("你好世界ab\nc");
        let (rows, cursor) = i.layout(5);
        assert_eq!(rows, ["你好", "世界a", "b", "c"]);
        assert_eq!(cursor, (3, 1));
        i.home();
        assert_eq!(i.layout(5).1, (3, 0));
    }
}
