//! Keys → actions, as a pure function of the key and the UI's mode, so the
//! whole key map is testable without a terminal. One table, [`BINDINGS`],
//! drives the action, the help overlay, `o1 tui --help` and (checked by a
//! test) the README's key table.

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

/// When a key does what its rule says.
#[derive(Clone, Copy, Debug)]
enum When {
    /// Always, even over the help overlay.
    Always,
    /// With the help overlay open (and only then).
    InHelp,
    Generating,
    Idle,
    /// The question box is empty (so `?` is not typed into it).
    InputEmpty,
    /// The question box has the focus.
    OnInput,
    /// A pane has the focus.
    OnPane,
    /// Anything but the help overlay.
    Else,
}

impl When {
    fn holds(self, m: Mode) -> bool {
        match self {
            When::Always => true,
            When::InHelp => m.help,
            _ if m.help => false,
            When::Generating => m.generating,
            When::Idle => !m.generating,
            When::InputEmpty => m.input_empty,
            When::OnInput => m.focus == Focus::Input,
            When::OnPane => m.focus != Focus::Input,
            When::Else => true,
        }
    }
}

/// The modifiers a rule asks for.
#[derive(Clone, Copy, Debug)]
enum Mods {
    /// Neither Ctrl nor Alt (Shift is part of the character).
    Plain,
    Ctrl,
    AltOrShift,
    NeitherAltNorShift,
    Any,
}

impl Mods {
    fn hold(self, m: KeyModifiers) -> bool {
        let (ctrl, alt) = (
            m.contains(KeyModifiers::CONTROL),
            m.contains(KeyModifiers::ALT),
        );
        match self {
            Mods::Plain => !ctrl && !alt,
            Mods::Ctrl => ctrl,
            Mods::AltOrShift => alt || m.contains(KeyModifiers::SHIFT),
            Mods::NeitherAltNorShift => !alt && !m.contains(KeyModifiers::SHIFT),
            Mods::Any => true,
        }
    }
}

/// A key, under a condition, does an action.
struct Rule(KeyCode, Mods, When, Action);

/// A line of the key help: the keys as shown, what they do, and the rules
/// behind them.
pub struct Binding {
    pub keys: &'static str,
    pub help: &'static str,
    rules: &'static [Rule],
}

use Action as A;
use KeyCode as K;

/// Every key the UI knows: the one table that [`action`] follows (the
/// first rule that matches, in this order; no two rules of different
/// bindings match the same key in the same mode), that the help overlay and
/// `o1 tui --help` list, and that the README's key table is checked against.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "Enter",
        help: "send the question",
        rules: &[Rule(
            K::Enter,
            Mods::NeitherAltNorShift,
            When::Else,
            A::Send,
        )],
    },
    Binding {
        keys: "Alt+Enter, Shift+Enter, Ctrl+J",
        help: "new line in the question",
        rules: &[
            Rule(K::Char('j'), Mods::Ctrl, When::Else, A::Newline),
            Rule(K::Enter, Mods::AltOrShift, When::Else, A::Newline),
        ],
    },
    Binding {
        keys: "Up / Down",
        help: "move in the question or recall earlier ones; scroll a pane",
        rules: &[
            Rule(K::Up, Mods::Any, When::OnInput, A::Up),
            Rule(K::Down, Mods::Any, When::OnInput, A::Down),
            Rule(K::Up, Mods::Any, When::OnPane, A::ScrollUp(1)),
            Rule(K::Down, Mods::Any, When::OnPane, A::ScrollDown(1)),
        ],
    },
    Binding {
        keys: "Left / Right, Backspace / Delete",
        help: "edit the question",
        rules: &[
            Rule(K::Left, Mods::Any, When::Else, A::Left),
            Rule(K::Right, Mods::Any, When::Else, A::Right),
            Rule(K::Backspace, Mods::Any, When::Else, A::Backspace),
            Rule(K::Delete, Mods::Any, When::Else, A::Delete),
        ],
    },
    Binding {
        keys: "Esc",
        help: "stop generating (keeps the text, marked as cut)",
        rules: &[Rule(K::Esc, Mods::Any, When::Generating, A::Stop)],
    },
    Binding {
        keys: "Ctrl+X",
        help: "cut the reasoning short and answer now",
        rules: &[
            Rule(K::Char('x'), Mods::Ctrl, When::Generating, A::AnswerNow),
            Rule(K::Char('x'), Mods::Ctrl, When::Idle, A::Nothing),
        ],
    },
    Binding {
        keys: "Tab / Shift+Tab",
        help: "move focus: question, reasoning pane, answer pane",
        rules: &[
            Rule(K::Tab, Mods::Any, When::Else, A::FocusNext),
            Rule(K::BackTab, Mods::Any, When::Else, A::FocusPrev),
        ],
    },
    Binding {
        keys: "PgUp / PgDn, mouse wheel",
        help: "scroll the focused (or pointed) pane",
        rules: &[
            Rule(K::PageUp, Mods::Any, When::Else, A::PageUp),
            Rule(K::PageDown, Mods::Any, When::Else, A::PageDown),
        ],
    },
    Binding {
        keys: "Home / End",
        help: "top / bottom of the focused pane (Ctrl+Home/End from the question)",
        rules: &[
            Rule(K::Home, Mods::Ctrl, When::Else, A::ScrollTop),
            Rule(K::End, Mods::Ctrl, When::Else, A::ScrollBottom),
            Rule(K::Home, Mods::Any, When::OnPane, A::ScrollTop),
            Rule(K::End, Mods::Any, When::OnPane, A::ScrollBottom),
            Rule(K::Home, Mods::Any, When::OnInput, A::LineStart),
            Rule(K::End, Mods::Any, When::OnInput, A::LineEnd),
        ],
    },
    Binding {
        keys: "Ctrl+R",
        help: "collapse or expand the reasoning pane",
        rules: &[Rule(
            K::Char('r'),
            Mods::Ctrl,
            When::Else,
            A::ToggleReasoning,
        )],
    },
    Binding {
        keys: "Ctrl+N",
        help: "new conversation",
        rules: &[Rule(K::Char('n'), Mods::Ctrl, When::Else, A::NewChat)],
    },
    Binding {
        keys: "Ctrl+S",
        help: "save the transcript as Markdown",
        rules: &[Rule(K::Char('s'), Mods::Ctrl, When::Else, A::Save)],
    },
    Binding {
        keys: "? or F1",
        help: "this help (Esc closes it)",
        rules: &[
            Rule(K::Esc, Mods::Any, When::InHelp, A::ToggleHelp),
            Rule(K::F(1), Mods::Any, When::InHelp, A::ToggleHelp),
            Rule(K::Char('?'), Mods::Any, When::InHelp, A::ToggleHelp),
            Rule(K::Char('q'), Mods::Plain, When::InHelp, A::ToggleHelp),
            Rule(K::F(1), Mods::Any, When::Else, A::ToggleHelp),
            Rule(K::Char('?'), Mods::Plain, When::InputEmpty, A::ToggleHelp),
        ],
    },
    Binding {
        keys: "Ctrl+C, Ctrl+Q",
        help: "quit",
        rules: &[
            Rule(K::Char('c'), Mods::Ctrl, When::Always, A::Quit),
            Rule(K::Char('q'), Mods::Ctrl, When::Always, A::Quit),
        ],
    },
];

/// What `key` does in `mode`: the first rule of [`BINDINGS`] that matches,
/// else a character typed into the question.
pub fn action(key: KeyEvent, mode: Mode) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Nothing;
    }
    let rule = BINDINGS
        .iter()
        .flat_map(|b| b.rules)
        .find(|Rule(code, mods, when, _)| {
            *code == key.code && mods.hold(key.modifiers) && when.holds(mode)
        });
    match (rule, key.code) {
        (Some(Rule(.., action)), _) => *action,
        (None, KeyCode::Char(c)) if !mode.help && Mods::Plain.hold(key.modifiers) => {
            Action::Insert(c)
        }
        _ => Action::Nothing,
    }
}

/// The keys in one line each, for `o1 tui --help`.
pub fn help_text() -> String {
    let width = BINDINGS.iter().map(|b| b.keys.len()).max().unwrap_or(0);
    let mut text = String::from("Keys:");
    for b in BINDINGS {
        text.push_str(&format!("\n  {:width$}  {}", b.keys, b.help));
    }
    text
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
    fn the_readme_lists_every_binding() {
        let readme = include_str!("../../README.md");
        for b in BINDINGS {
            let row = format!("| {} | {} |", b.keys.replace('|', "\\|"), b.help);
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    #[test]
    fn every_binding_does_something_and_the_help_lists_it() {
        let help = help_text();
        for b in BINDINGS {
            assert!(!b.rules.is_empty() && help.contains(b.keys) && help.contains(b.help));
        }
    }

    #[test]
    fn releases_are_ignored() {
        let mut k = key(KeyCode::Char('a'), KeyModifiers::NONE);
        k.kind = KeyEventKind::Release;
        assert_eq!(action(k, IDLE), Action::Nothing);
    }
}
