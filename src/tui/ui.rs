//! Drawing the app: panes, context meter, question box, status line and
//! the help overlay. Reads the state, never changes it.

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::chat::Phase;
use crate::terminal_text::for_terminal_line;

use super::app::{App, State};
use super::keys::{Focus, BINDINGS};
use super::layout::{self, MIN_HEIGHT, MIN_WIDTH};
use super::transcript::Pane;

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let size = (area.width, area.height);
    if layout::too_small(size) {
        let msg = format!(
            "Terminal too small: {}×{}.\nNeeds at least {MIN_WIDTH}×{MIN_HEIGHT}.\nCtrl+Q quits.",
            size.0, size.1
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let l = layout::layout(size, app.reasoning_collapsed, &app.input);
    draw_pane(f, app, Pane::Reasoning, l.reasoning);
    draw_pane(f, app, Pane::Answer, l.answer);
    draw_meter(f, app, l.meter);
    draw_input(f, app, l.input);
    draw_status(f, app, l.status);
    match &app.state {
        State::Loading(p) => overlay(
            f,
            area,
            "Loading",
            &[format!("Loading the model… {:.0}%", p * 100.0)],
            Color::Cyan,
        ),
        State::Failed(e) => overlay(
            f,
            area,
            "Cannot load the model",
            &[
                for_terminal_line(e).into_owned(),
                String::new(),
                "Ctrl+Q quits.".into(),
            ],
            Color::Red,
        ),
        _ => {}
    }
    if app.help {
        let mut lines: Vec<String> = BINDINGS
            .iter()
            .map(|b| format!("{:<32} {}", b.keys, b.help))
            .collect();
        if !app.model.chosen.is_empty() {
            lines.push(String::new());
            lines.extend(app.model.chosen.iter().cloned());
        }
        overlay(f, area, "Keys (Esc closes)", &lines, Color::Cyan);
    }
}

fn draw_pane(f: &mut Frame, app: &App, pane: Pane, rect: Rect) {
    let focused = matches!(
        (pane, app.focus),
        (Pane::Reasoning, Focus::Reasoning) | (Pane::Answer, Focus::Answer)
    );
    let live = match (&app.state, pane) {
        (
            State::Generating {
                phase: Phase::Reasoning,
                ..
            },
            Pane::Reasoning,
        ) => " ●",
        (
            State::Generating {
                phase: Phase::Answer,
                ..
            },
            Pane::Answer,
        ) => " ●",
        _ => "",
    };
    let scrolled = app.scroll[pane as usize].from_bottom;
    let title = match pane {
        Pane::Reasoning if app.reasoning_collapsed => {
            format!(" Reasoning (collapsed: Ctrl+R){live} ")
        }
        Pane::Reasoning => format!(" Reasoning{live} "),
        Pane::Answer => format!(" Answer{live} "),
    };
    let border = if focused {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    if pane == Pane::Reasoning && app.reasoning_collapsed {
        let bar = Line::from(vec![
            Span::styled(format!("─{title}"), border),
            Span::styled("─".repeat(rect.width as usize), border),
        ]);
        f.render_widget(Paragraph::new(bar), rect);
        return;
    }
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(border)
        .title(title);
    if scrolled > 0 {
        block = block.title_bottom(
            Line::from(format!(" ↑ {scrolled} lines up · End returns "))
                .alignment(Alignment::Right),
        );
    }
    let inner = layout::inner(rect);
    f.render_widget(block, rect);
    if app.turns.is_empty() {
        let hint = match pane {
            Pane::Reasoning => "The model's reasoning appears here.",
            Pane::Answer => "Ask something below and press Enter. ? shows the keys.",
        };
        f.render_widget(
            Paragraph::new(Span::styled(hint, Style::default().fg(Color::DarkGray))),
            inner,
        );
        return;
    }
    // Only the visible window of lines is gathered, from the per-turn cache.
    let height = inner.height as usize;
    let total = app.rendered.total_lines(&app.turns, pane, inner.width);
    let end = total.saturating_sub(scrolled.min(total.saturating_sub(height)));
    let start = end.saturating_sub(height);
    let mut visible = Vec::with_capacity(height);
    let mut at = 0;
    for i in 0..app.turns.len() {
        let lines = app.rendered.turn_lines(&app.turns, pane, i, inner.width);
        let (from, to) = (at, at + lines.len());
        at = to;
        if to <= start {
            continue;
        }
        if from >= end {
            break;
        }
        let a = start.max(from) - from;
        let b = end.min(to) - from;
        visible.extend(lines[a..b].iter().cloned());
    }
    f.render_widget(Paragraph::new(visible), inner);
}

fn draw_meter(f: &mut Frame, app: &App, rect: Rect) {
    let u = app.usage;
    // A server may not say its context size: then the tokens used only.
    let known = u.n_ctx > 0;
    let n_ctx = u.n_ctx.max(1);
    let share = if known {
        u.used as f64 / n_ctx as f64
    } else {
        0.0
    };
    let color = if share >= 0.9 {
        Color::Red
    } else if share >= 0.75 {
        Color::Yellow
    } else {
        Color::Green
    };
    let size = if known {
        format!(" / {} tokens ({:.0}%)", group(u.n_ctx), share * 100.0)
    } else if matches!(app.state, State::Loading(_) | State::Failed(_)) {
        " tokens".to_string()
    } else {
        " tokens (context size unknown)".to_string()
    };
    let label = format!(
        " {}{}{} · reasoning {}{} ",
        if app.usage_estimated { "≈" } else { "" },
        group(u.used),
        size,
        group(u.reasoning),
        if app.restoring { " · restoring" } else { "" }
    );
    let bar_w = (rect.width as usize)
        .saturating_sub(label.chars().count() + 6)
        .clamp(10, 60);
    let used = ((share.min(1.0)) * bar_w as f64).round() as usize;
    let reasoning = if known {
        ((u.reasoning.min(u.used) as f64 / n_ctx as f64) * bar_w as f64).round() as usize
    } else {
        0
    };
    let line = Line::from(vec![
        Span::styled(" ctx ", Style::default().add_modifier(Modifier::BOLD)),
        Span::styled(
            "▓".repeat(reasoning.min(used)),
            Style::default().fg(Color::Magenta),
        ),
        Span::styled(
            "█".repeat(used.saturating_sub(reasoning)),
            Style::default().fg(color),
        ),
        Span::styled(
            "░".repeat(bar_w - used),
            Style::default().fg(Color::DarkGray),
        ),
        Span::styled(label, Style::default().fg(color)),
    ]);
    f.render_widget(Paragraph::new(line), rect);
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn draw_input(f: &mut Frame, app: &App, rect: Rect) {
    let focused = app.focus == Focus::Input;
    let border = if focused {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let title = if app.generating() {
        " Question (Esc stops · Ctrl+X answers now) "
    } else {
        " Question (Enter sends · Alt+Enter new line) "
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(border)
        .title(title);
    let inner = layout::inner(rect);
    let (rows, (row, col)) = app.input.layout(inner.width as usize);
    let first = row.saturating_sub((inner.height as usize).saturating_sub(1));
    let text: Vec<Line> = rows
        .into_iter()
        .skip(first)
        .take(inner.height as usize)
        .map(Line::from)
        .collect();
    f.render_widget(Paragraph::new(text).block(block), rect);
    if focused && !app.help && matches!(app.state, State::Idle | State::Generating { .. }) {
        let x = inner.x + (col as u16).min(inner.width.saturating_sub(1));
        f.set_cursor_position((x, inner.y + (row - first) as u16));
    }
}

fn draw_status(f: &mut Frame, app: &App, rect: Rect) {
    let m = &app.model;
    let device = if let Some(server) = &m.server {
        format!("on {server}")
    } else if m.gpu_layers == 0 {
        "CPU".to_string()
    } else {
        format!("GPU {}/{}", m.gpu_layers, m.n_layers + 1)
    };
    let phase = match &app.state {
        State::Loading(_) if app.queued().is_some() => {
            "loading · your question is waiting for the model".to_string()
        }
        State::Loading(_) => "loading".to_string(),
        State::Failed(_) => "not loaded".to_string(),
        State::Idle if app.restoring => "restoring the conversation…".to_string(),
        State::Idle => "idle".to_string(),
        State::Generating {
            prefill: Some((done, total)),
            phase,
            ..
        } => {
            format!("reading the prompt ({}) {}/{}", phase.name(), done, total)
        }
        State::Generating {
            phase: Phase::Reasoning,
            since,
            ..
        } => format!("reasoning… {:.0}s", since.elapsed().as_secs_f64()),
        State::Generating {
            phase: Phase::Answer,
            since,
            ..
        } => format!("answering… {:.0}s", since.elapsed().as_secs_f64()),
    };
    let stats = app
        .last_phase
        .as_ref()
        .map(|(p, s)| {
            format!(
                " · last {}: first token {:.2}s, {:.1} tok/s",
                p.name(),
                s.time_to_first_token,
                s.tokens_per_second
            )
        })
        .unwrap_or_default();
    let mut spans = vec![
        Span::styled(
            format!(
                " {} {} ",
                for_terminal_line(&m.name),
                for_terminal_line(&m.file_type)
            ),
            Style::default().fg(Color::Black).bg(Color::Cyan),
        ),
        Span::raw(format!(" {device} · {phase}{stats}")),
    ];
    if let Some(n) = &app.notice {
        let style = if n.error {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Yellow)
        };
        spans.push(Span::styled(
            format!(" · {}", for_terminal_line(&n.text)),
            style,
        ));
    }
    spans.push(Span::styled(
        "  ? help",
        Style::default().fg(Color::DarkGray),
    ));
    f.render_widget(Paragraph::new(Line::from(spans)), rect);
}

/// A centered box over everything.
fn overlay(f: &mut Frame, area: Rect, title: &str, lines: &[String], color: Color) {
    let width = lines
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.len()) as u16
        + 4;
    let w = width.min(area.width.saturating_sub(2));
    let text: Vec<Line> = lines.iter().map(|l| Line::from(l.as_str())).collect();
    let wrapped_height = lines
        .iter()
        .map(|l| (l.chars().count() as u16 / w.saturating_sub(4).max(1)) + 1)
        .sum::<u16>();
    let h = (wrapped_height + 2).min(area.height.saturating_sub(2));
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::default().fg(color))
        .title(format!(" {title} "));
    f.render_widget(
        Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
        r,
    );
}
