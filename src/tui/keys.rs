//! Keys → actions, as a pure function of the key and the UI's mode, so the
//! whole key map is testable without a terminal. The help overlay lists
//! [`BINDINGS`], which is the same table the tests check.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Which part of the screen has the keyboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Input,
    Reasoning,
    Answer,
}

/// What the key handler needs to know about the UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub focus: Focus,
    pub generating: bool,
    pub help: bool,
    pub input_empty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Send,
    Newline,
    Insert(char),
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    LineStart,
    LineEnd,
    /// Stop generating (the partial text is kept, marked as cut).
    Stop,
    /// End the reasoning now and go on with the answer.
    AnswerNow,
    FocusNext,
    FocusPrev,
    ScrollUp(u16),
    ScrollDown(u16),
    ScrollTop,
    ScrollBottom,
    PageUp,
    PageDown,
    NewChat,
    Save,
    ToggleReasoning,
    ToggleHelp,
    Nothing,
}

/// Every key the UI knows, as the help overlay shows it.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the question"),
    ("Alt+Enter, Shift+Enter, Ctrl+J", "new line in the question"),
    (
        "Up / Down",
        "move between lines; at the edge, recall earlier questions",
    ),
    ("Esc", "stop generating (keeps the text, marked as cut)"),
    ("Ctrl+X", "cut the reasoning short and answer now"),
    (
        "Tab / Shift+Tab",
        "move focus: question, reasoning pane, answer pane",
    ),
    (
        "PgUp / PgDn, mouse wheel",
        "scroll the focused (or pointed) pane",
    ),
    (
        "Home / End",
        "top / bottom of the focused pane (Ctrl+Home/End from the question)",
    ),
    ("Ctrl+R", "collapse or expand the reasoning pane"),
    ("Ctrl+N", "new conversation"),
    ("Ctrl+S", "save the transcript as Markdown"),
    ("? or F1", "this help (Esc closes it)"),
    ("Ctrl+C, Ctrl+Q", "quit"),
];

pub fn action(key: KeyEvent, mode: Mode) -> Action {
    use Action::*;
    if key.kind == KeyEventKind::Release {
        return Nothing;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
        return Quit;
    }
    if mode.help {
        return match key.code {
            KeyCode::Esc | KeyCode::F(1) | KeyCode::Char('?') | KeyCode::Char('q') => ToggleHelp,
            _ => Nothing,
        };
    }
    let on_input = mode.focus == Focus::Input;
    match key.code {
        KeyCode::F(1) => ToggleHelp,
        KeyCode::Char('?') if mode.input_empty && !ctrl && !alt => ToggleHelp,
        KeyCode::Esc if mode.generating => Stop,
        KeyCode::Char('x') if ctrl => {
            if mode.generating {
                AnswerNow
            } else {
                Nothing
            }
        }
        KeyCode::Char('n') if ctrl => NewChat,
        KeyCode::Char('s') if ctrl => Save,
        KeyCode::Char('r') if ctrl => ToggleReasoning,
        KeyCode::Char('j') if ctrl => Newline,
        KeyCode::Enter if alt || shift => Newline,
        KeyCode::Enter => Send,
        KeyCode::Tab => FocusNext,
        KeyCode::BackTab => FocusPrev,
        KeyCode::PageUp => PageUp,
        KeyCode::PageDown => PageDown,
        KeyCode::Home if ctrl || !on_input => ScrollTop,
        KeyCode::End if ctrl || !on_input => ScrollBottom,
        KeyCode::Home => LineStart,
        KeyCode::End => LineEnd,
        KeyCode::Up if on_input => Up,
        KeyCode::Down if on_input => Down,
        KeyCode::Up => ScrollUp(1),
        KeyCode::Down => ScrollDown(1),
        KeyCode::Left => Left,
        KeyCode::Right => Right,
        KeyCode::Backspace => Backspace,
        KeyCode::Delete => Delete,
        KeyCode::Char(c) if !ctrl && !alt => Insert(c),
        _ => Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    const IDLE: Mode = Mode {
        focus: Focus::Input,
        generating: false,
        help: false,
        input_empty: true,
    };
    const TYPING: Mode = Mode {
        input_empty: false,
        ..IDLE
    };
    const BUSY: Mode = Mode {
        generating: true,
        ..IDLE
    };
    const ON_ANSWER: Mode = Mode {
        focus: Focus::Answer,
        ..IDLE
    };
    const HELP: Mode = Mode { help: true, ..IDLE };

    #[test]
    fn key_map() {
        use Action::*;
        let none = KeyModifiers::NONE;
        let cases = [
            (key(KeyCode::Char('c'), KeyModifiers::CONTROL), BUSY, Quit),
            (key(KeyCode::Char('q'), KeyModifiers::CONTROL), HELP, Quit),
            (key(KeyCode::Enter, none), TYPING, Send),
            (key(KeyCode::Enter, KeyModifiers::ALT), TYPING, Newline),
            (key(KeyCode::Enter, KeyModifiers::SHIFT), TYPING, Newline),
            (
                key(KeyCode::Char('j'), KeyModifiers::CONTROL),
                TYPING,
                Newline,
            ),
            (key(KeyCode::Esc, none), BUSY, Stop),
            (key(KeyCode::Esc, none), IDLE, Nothing),
            (
                key(KeyCode::Char('x'), KeyModifiers::CONTROL),
                BUSY,
                AnswerNow,
            ),
            (
                key(KeyCode::Char('x'), KeyModifiers::CONTROL),
                IDLE,
                Nothing,
            ),
            (key(KeyCode::Tab, none), IDLE, FocusNext),
            (key(KeyCode::BackTab, KeyModifiers::SHIFT), IDLE, FocusPrev),
            (key(KeyCode::PageUp, none), IDLE, PageUp),
            (key(KeyCode::PageDown, none), BUSY, PageDown),
            (key(KeyCode::Home, none), TYPING, LineStart),
            (key(KeyCode::Home, KeyModifiers::CONTROL), TYPING, ScrollTop),
            (key(KeyCode::Home, none), ON_ANSWER, ScrollTop),
            (key(KeyCode::End, none), ON_ANSWER, ScrollBottom),
            (key(KeyCode::Up, none), TYPING, Up),
            (key(KeyCode::Up, none), ON_ANSWER, ScrollUp(1)),
            (key(KeyCode::Down, none), ON_ANSWER, ScrollDown(1)),
            (
                key(KeyCode::Char('n'), KeyModifiers::CONTROL),
                IDLE,
                NewChat,
            ),
            (key(KeyCode::Char('s'), KeyModifiers::CONTROL), IDLE, Save),
            (
                key(KeyCode::Char('r'), KeyModifiers::CONTROL),
                BUSY,
                ToggleReasoning,
            ),
            (key(KeyCode::Char('?'), none), IDLE, ToggleHelp),
            (key(KeyCode::Char('?'), none), TYPING, Insert('?')),
            (key(KeyCode::F(1), none), TYPING, ToggleHelp),
            (key(KeyCode::Esc, none), HELP, ToggleHelp),
            (key(KeyCode::Char('a'), none), HELP, Nothing),
            (key(KeyCode::Char('é'), none), IDLE, Insert('é')),
            (
                key(KeyCode::Char('A'), KeyModifiers::SHIFT),
                IDLE,
                Insert('A'),
            ),
            (key(KeyCode::Backspace, none), TYPING, Backspace),
        ];
        for (k, mode, want) in cases {
            assert_eq!(action(k, mode), want, "{k:?} in {mode:?}");
        }
    }

    #[test]
    fn releases_are_ignored() {
        let mut k = key(KeyCode::Char('a'), KeyModifiers::NONE);
        k.kind = KeyEventKind::Release;
        assert_eq!(action(k, IDLE), Action::Nothing);
    }
}
