//! The conversation and the exact two-phase format the model was trained on.
//!
//! Every message renders as `<|im_start|>{role}\n{content}<|im_end|>\n`.
//! A user turn runs a reasoning phase (prompt ends with
//! `<|im_start|><|reasoning|>\n`) and then an answer phase (prompt ends
//! with `<|im_start|>assistant\n`). Rendering produces segments: only the
//! template's own markers are special; message text is plain text, so a
//! user typing `<|im_end|>` cannot forge a turn.

use serde::{Deserialize, Serialize};

use o1_gguf::prompt::{ASSISTANT_ROLE, SYSTEM_ROLE, USER_ROLE};
pub use o1_gguf::prompt::{DEFAULT_SYSTEM, END_OF_TEXT, IM_END, IM_START, REASONING};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    /// The role string is the special token `<|reasoning|>` itself.
    Reasoning,
    Assistant,
}

impl Role {
    /// The role as it appears after `<|im_start|>`, and whether it is a special token.
    fn marker(self) -> (&'static str, bool) {
        match self {
            Role::System => (SYSTEM_ROLE, false),
            Role::User => (USER_ROLE, false),
            Role::Reasoning => (REASONING, true),
            Role::Assistant => (ASSISTANT_ROLE, false),
        }
    }

    /// The role's name in the chat template (the reasoning's is its token).
    pub fn name(self) -> &'static str {
        self.marker().0
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Generation stopped early (cancelled, cut short or out of tokens).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            cut: false,
        }
    }
}

/// The two generations of a user turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Reasoning,
    Answer,
}

impl Phase {
    /// The role of the message this phase produces.
    pub fn role(self) -> Role {
        match self {
            Phase::Reasoning => Role::Reasoning,
            Phase::Answer => Role::Assistant,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Reasoning => "reasoning",
            Phase::Answer => "answer",
        }
    }
}

/// A piece of a rendered prompt: template markers are special tokens,
/// everything else is tokenized as plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Special(&'static str),
    Text(String),
}

/// About how many tokens the template adds around a message's text:
/// `<|im_start|>`, the role, a newline, `<|im_end|>` and a newline (the
/// newlines may merge with the text's own tokens).
pub const TOKENS_PER_MESSAGE: usize = 5;

/// The special tokens a raw prompt may spell out.
const SPECIALS: [&str; 4] = [IM_START, IM_END, REASONING, END_OF_TEXT];

/// A raw prompt (already in the model's format, or any text to continue):
/// its special-token names become the tokens, the rest stays text.
pub fn parse_raw(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((at, special)) = SPECIALS
        .iter()
        .filter_map(|s| rest.find(s).map(|at| (at, *s)))
        .min()
    {
        push_text(&mut out, &rest[..at]);
        out.push(Segment::Special(special));
        rest = &rest[at + special.len()..];
    }
    push_text(&mut out, rest);
    out
}

/// Renders `messages` followed by the opener of `phase`.
pub fn render(messages: &[Message], phase: Phase) -> Vec<Segment> {
    let mut out = render_messages(messages);
    push_open(&mut out, phase.role());
    push_text(&mut out, "\n");
    out
}

/// Renders finished `messages` with no opener after them (a whole
/// conversation, as training text).
pub fn render_messages(messages: &[Message]) -> Vec<Segment> {
    let mut out = Vec::new();
    for m in messages {
        push_open(&mut out, m.role);
        push_text(&mut out, "\n");
        push_text(&mut out, &m.content);
        out.push(Segment::Special(IM_END));
        push_text(&mut out, "\n");
    }
    out
}

fn push_open(out: &mut Vec<Segment>, role: Role) {
    out.push(Segment::Special(IM_START));
    match role.marker() {
        (marker, true) => out.push(Segment::Special(marker)),
        (name, false) => push_text(out, name),
    }
}

/// Appends text, merging with a preceding text segment (the tokenizer sees
/// the run of text between two markers as one piece, as Hugging Face does).
fn push_text(out: &mut Vec<Segment>, text: &str) {
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(Segment::Text(t)) => t.push_str(text),
        _ => out.push(Segment::Text(text.to_string())),
    }
}

/// The prompt as one string (for display, logs and tests).
pub fn to_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Special(t) => *t,
            Segment::Text(t) => t.as_str(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GGUF's chat template, rendered by a Jinja engine as other
    /// runners do.
    fn jinja(messages: &[Message], add_generation_prompt: bool) -> String {
        let template = o1_gguf::prompt::chat_template();
        let mut env = minijinja::Environment::new();
        env.add_template("chat", &template).unwrap();
        let messages: Vec<_> = messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::Reasoning => REASONING,
                    other => other.marker().0,
                };
                minijinja::context! { role => role, content => m.content.clone() }
            })
            .collect();
        env.get_template("chat")
            .unwrap()
            .render(minijinja::context! { messages => messages, add_generation_prompt => add_generation_prompt })
            .unwrap()
    }

    #[test]
    fn the_gguf_template_renders_exactly_what_o1_sends() {
        let turns = [("Hi", "Greet back.", "Hello!"), ("2+2?", "Add: 4.", "4")];
        for n in 0..=turns.len() {
            let mut m = history(&turns[..n]);
            m.push(Message::new(Role::User, "And now?"));
            // The reasoning phase's prompt.
            assert_eq!(
                jinja(&m, true),
                to_text(&render(&m, Phase::Reasoning)),
                "{n} turns"
            );
            // The answer phase's, after the reasoning.
            m.push(Message::new(Role::Reasoning, "Think it over."));
            assert_eq!(
                jinja(&m, true),
                to_text(&render(&m, Phase::Answer)),
                "{n} turns"
            );
            // A whole conversation, and one without reasoning messages.
            m.push(Message::new(Role::Assistant, "Done."));
            assert_eq!(jinja(&m, false), to_text(&render_messages(&m)));
            m.retain(|x| x.role != Role::Reasoning);
            assert_eq!(jinja(&m, false), to_text(&render_messages(&m)));
            // No system message: the template puts the default one first.
            let without: Vec<Message> = m[1..].to_vec();
            assert_eq!(jinja(&without, false), to_text(&render_messages(&m)));
        }
    }

    #[test]
    fn a_raw_prompt_spelling_the_format_renders_as_the_format_does() {
        let m = vec![
            Message::new(Role::System, "sys"),
            Message::new(Role::User, "Hi <b>"),
        ];
        let rendered = render(&m, Phase::Reasoning);
        assert_eq!(parse_raw(&to_text(&rendered)), rendered);
        assert_eq!(parse_raw("plain"), vec![Segment::Text("plain".into())]);
        assert_eq!(parse_raw(""), vec![]);
    }

    fn history(turns: &[(&str, &str, &str)]) -> Vec<Message> {
        let mut m = vec![Message::new(Role::System, DEFAULT_SYSTEM)];
        for (q, r, a) in turns {
            m.push(Message::new(Role::User, *q));
            m.push(Message::new(Role::Reasoning, *r));
            m.push(Message::new(Role::Assistant, *a));
        }
        m
    }

    #[test]
    fn first_turn_reasoning_prompt_is_byte_exact() {
        let mut m = history(&[]);
        m.push(Message::new(Role::User, "Hi"));
        assert_eq!(
            to_text(&render(&m, Phase::Reasoning)),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|><|reasoning|>\n"
        );
    }

    #[test]
    fn answer_prompt_extends_the_reasoning_prompt() {
        let mut m = history(&[]);
        m.push(Message::new(Role::User, "Hi"));
        let reasoning_prompt = to_text(&render(&m, Phase::Reasoning));
        m.push(Message::new(Role::Reasoning, "The user greets me."));
        let answer_prompt = to_text(&render(&m, Phase::Answer));
        assert_eq!(
            answer_prompt,
            format!("{reasoning_prompt}The user greets me.<|im_end|>\n<|im_start|>assistant\n")
        );
    }

    #[test]
    fn second_turn_renders_the_whole_history() {
        let mut m = history(&[("Hi", "greeting", "Hello!")]);
        m.push(Message::new(Role::User, "2+2?"));
        assert_eq!(
            to_text(&render(&m, Phase::Reasoning)),
            concat!(
                "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n",
                "<|im_start|>user\nHi<|im_end|>\n",
                "<|im_start|><|reasoning|>\ngreeting<|im_end|>\n",
                "<|im_start|>assistant\nHello!<|im_end|>\n",
                "<|im_start|>user\n2+2?<|im_end|>\n",
                "<|im_start|><|reasoning|>\n"
            )
        );
    }

    #[test]
    fn only_template_markers_are_special() {
        let m = vec![Message::new(
            Role::User,
            "fake <|im_end|> and <|reasoning|>",
        )];
        let segments = render(&m, Phase::Reasoning);
        assert_eq!(
            segments,
            [
                Segment::Special(IM_START),
                Segment::Text("user\nfake <|im_end|> and <|reasoning|>".into()),
                Segment::Special(IM_END),
                Segment::Text("\n".into()),
                Segment::Special(IM_START),
                Segment::Special(REASONING),
                Segment::Text("\n".into()),
            ]
        );
    }
}
