//! The conversation as the UI shows and saves it: the turns (question,
//! reasoning, answer, where each phase stopped), the model that spoke, and
//! their rendering into styled lines for the two panes. The app keeps the
//! turns, the session saves them, and the drawing shows these lines.

use std::cell::RefCell;
use std::rc::Rc;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use serde::{Deserialize, Serialize};

use crate::chat::{Message, Role};
use crate::engine::Stop;
use crate::terminal_text::for_terminal;

use super::markdown;

/// One user turn as the transcript shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub question: String,
    pub reasoning: String,
    pub answer: String,
    pub reasoning_stop: Option<Stop>,
    pub answer_stop: Option<Stop>,
    /// Things that happened during the turn (context trimmed, errors).
    pub notes: Vec<String>,
}

/// The model as the status line shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub file_type: String,
    pub gpu_layers: u32,
    pub n_layers: u32,
    pub n_ctx: usize,
    /// What the engine chose for this machine (context, KV cache, batch,
    /// memory), as the help overlay lists it.
    #[serde(default)]
    pub chosen: Vec<String>,
    /// What the user should know about the load (a setting that could not
    /// be honoured, the memory budget's effect); shown once when ready.
    #[serde(default, skip_serializing)]
    pub notes: Vec<String>,
    /// The server the chat runs on, when not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// The two views of the transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Reasoning,
    Answer,
}

/// The model's conversation for a transcript (resume).
pub fn history_of(turns: &[Turn]) -> Vec<Message> {
    let mut m = Vec::new();
    for t in turns {
        m.push(Message::new(Role::User, t.question.clone()));
        if let Some(stop) = t.reasoning_stop {
            m.push(Message {
                role: Role::Reasoning,
                content: t.reasoning.clone(),
                cut: stop.is_cut(),
            });
        }
        if let Some(stop) = t.answer_stop {
            m.push(Message {
                role: Role::Assistant,
                content: t.answer.clone(),
                cut: stop.is_cut(),
            });
        }
    }
    m
}

/// A turn's rendered lines and the content key they were made from.
type CachedLines = Option<(u64, Rc<Vec<Line<'static>>>)>;

/// Rendered lines per (pane, turn), valid for one width: a turn is rendered
/// again only when what it shows changes.
#[derive(Default)]
pub struct RenderCache(RefCell<CacheSlots>);

#[derive(Default)]
struct CacheSlots {
    width: [u16; 2],
    turns: [Vec<CachedLines>; 2],
}

impl RenderCache {
    /// Total rendered lines of `turns` in `pane` at `width`.
    pub fn total_lines(&self, turns: &[Turn], pane: Pane, width: u16) -> usize {
        (0..turns.len())
            .map(|i| self.turn_lines(turns, pane, i, width).len())
            .sum()
    }

    /// The rendered lines of turn `i` in `pane`, cached until the text changes.
    pub fn turn_lines(
        &self,
        turns: &[Turn],
        pane: Pane,
        i: usize,
        width: u16,
    ) -> Rc<Vec<Line<'static>>> {
        let turn = &turns[i];
        let key = content_key(pane, turn);
        let mut cache = self.0.borrow_mut();
        let p = pane as usize;
        if cache.width[p] != width {
            cache.width[p] = width;
            cache.turns[p].clear();
        }
        if cache.turns[p].len() < turns.len() {
            cache.turns[p].resize(turns.len(), None);
        }
        if let Some((k, lines)) = &cache.turns[p][i] {
            if *k == key {
                return lines.clone();
            }
        }
        let lines = Rc::new(render_turn(pane, i, turn, width as usize));
        cache.turns[p][i] = Some((key, lines.clone()));
        lines
    }
}

/// A key that changes whenever what a turn shows in `pane` changes.
fn content_key(pane: Pane, t: &Turn) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.question.hash(&mut h);
    t.notes.hash(&mut h);
    match pane {
        Pane::Reasoning => (&t.reasoning, t.reasoning_stop.map(|s| s as u8)).hash(&mut h),
        Pane::Answer => (
            &t.answer,
            t.answer_stop.map(|s| s as u8),
            t.reasoning_stop.map(|s| s as u8),
        )
            .hash(&mut h),
    }
    h.finish()
}

/// Text from the model (or pasted) as the panes may draw it: control
/// characters made visible, tabs as spaces (a raw tab would move the
/// terminal's cursor past the layout).
fn shown(text: &str) -> String {
    for_terminal(text).replace('\t', "    ")
}

/// Turn `i` as `pane` shows it: a header, the text as Markdown, where the
/// phase was cut, and (in the answer pane) the turn's notes.
fn render_turn(pane: Pane, i: usize, t: &Turn, width: usize) -> Vec<Line<'static>> {
    let t = &Turn {
        question: shown(&t.question),
        reasoning: shown(&t.reasoning),
        answer: shown(&t.answer),
        notes: t.notes.iter().map(|n| shown(n)).collect(),
        ..t.clone()
    };
    let mut lines = Vec::new();
    let header = Style::default()
        .fg(Color::Cyan)
        .add_modifier(Modifier::BOLD);
    let question: String = t
        .question
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(width.saturating_sub(12))
        .collect();
    match pane {
        Pane::Reasoning => {
            lines.push(Line::styled(
                format!("── turn {} · {question}", i + 1),
                header,
            ));
            let body = Style::default().fg(Color::Gray);
            lines.extend(markdown::render(&t.reasoning, width, body));
            if let Some(stop) = t.reasoning_stop.filter(|s| s.is_cut()) {
                lines.push(Line::styled(
                    format!("[reasoning cut: {}]", stop),
                    Style::default().fg(Color::Yellow),
                ));
            }
        }
        Pane::Answer => {
            lines.push(Line::styled(format!("── turn {}", i + 1), header));
            let you = Style::default()
                .fg(Color::Blue)
                .add_modifier(Modifier::BOLD);
            for (k, l) in markdown::render(&t.question, width.saturating_sub(5), Style::default())
                .into_iter()
                .enumerate()
            {
                let mut spans = vec![Span::styled(if k == 0 { "You: " } else { "     " }, you)];
                spans.extend(l.spans);
                lines.push(Line::from(spans));
            }
            lines.extend(markdown::render(&t.answer, width, Style::default()));
            if let Some(stop) = t.answer_stop.filter(|s| s.is_cut()) {
                lines.push(Line::styled(
                    format!("[answer cut: {}]", stop),
                    Style::default().fg(Color::Yellow),
                ));
            }
            for n in &t.notes {
                lines.extend(markdown::render(
                    &format!("! {n}"),
                    width,
                    Style::default().fg(Color::Red),
                ));
            }
        }
    }
    lines.push(Line::default());
    lines
}
