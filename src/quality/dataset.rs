//! The texts that ship with o1 for measuring and calibrating quantization:
//! conversations in the model's two-phase format, in English and Chinese,
//! over code, maths, prose and general knowledge. Written for o1 (Apache-2.0).
//! The evaluation set is held out: its topics do not occur in the
//! calibration set, so a matrix cannot be fitted to the text it is judged on.

use serde::Deserialize;

use crate::chat::{self, Message, Role, Segment};

const CALIBRATION: &str = include_str!("../../data/calibration.jsonl");
const EVALUATION: &str = include_str!("../../data/eval.jsonl");

/// Named in the files quantized with o1's matrix (`quantize.imatrix.dataset`).
pub const CALIBRATION_NAME: &str = "o1-calibration-v1";
pub const EVALUATION_NAME: &str = "o1-eval-v1";

#[derive(Clone, Debug, Deserialize)]
pub struct Turn {
    pub user: String,
    pub reasoning: String,
    pub answer: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub lang: String,
    pub kind: String,
    /// One of the prompts of the greedy-agreement check.
    #[serde(default)]
    pub greedy: bool,
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// The whole conversation as messages, after the default system message.
    pub fn messages(&self) -> Vec<Message> {
        let mut m = vec![Message::new(Role::System, chat::DEFAULT_SYSTEM)];
        for t in &self.turns {
            m.push(Message::new(Role::User, &t.user));
            m.push(Message::new(Role::Reasoning, &t.reasoning));
            m.push(Message::new(Role::Assistant, &t.answer));
        }
        m
    }

    /// The rendered conversation, as the model sees it in training.
    pub fn segments(&self) -> Vec<Segment> {
        chat::render_messages(&self.messages())
    }
}

fn parse(text: &str, what: &str) -> Vec<Conversation> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("o1's {what} set, line {}: {e}", i + 1))
        })
        .collect()
}

/// The calibration set's text, which names a matrix made from it.
pub fn calibration_source() -> &'static str {
    CALIBRATION
}

pub fn calibration() -> Vec<Conversation> {
    parse(CALIBRATION, "calibration")
}

pub fn evaluation() -> Vec<Conversation> {
    parse(EVALUATION, "evaluation")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_sets_parse_cover_both_languages_and_are_held_out() {
        let (cal, eval) = (calibration(), evaluation());
        for set in [&cal, &eval] {
            let langs: HashSet<_> = set.iter().map(|c| c.lang.as_str()).collect();
            assert_eq!(langs, HashSet::from(["en", "zh"]));
            let kinds: HashSet<_> = set.iter().map(|c| c.kind.as_str()).collect();
            for k in ["code", "math", "prose"] {
                assert!(kinds.contains(k), "{k}");
            }
            for c in set.iter() {
                let text = chat::to_text(&c.segments());
                // Only the template's own markers: none inside the texts.
                let markers = text.matches(chat::IM_START).count();
                assert_eq!(markers, 1 + 3 * c.turns.len(), "{}", c.id);
            }
        }
        let users: HashSet<_> = cal
            .iter()
            .flat_map(|c| c.turns.iter().map(|t| &t.user))
            .collect();
        assert!(eval
            .iter()
            .all(|c| c.turns.iter().all(|t| !users.contains(&t.user))));
        let greedy: Vec<_> = eval.iter().filter(|c| c.greedy).collect();
        assert!(greedy.len() >= 4 && greedy.iter().all(|c| c.turns.len() == 1));
    }
}
