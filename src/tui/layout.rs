//! Where everything goes on the screen, as a pure function of the size,
//! so the key handler (page sizes, mouse hits) and the renderer agree.

use ratatui::layout::Rect;

use super::input::Input;

/// Below this the UI says so instead of drawing.
pub const MIN_WIDTH: u16 = 20;
pub const MIN_HEIGHT: u16 = 5;

/// Rows of question text at most; the box grows up to this while the
/// panes keep their minimum.
const MAX_INPUT_ROWS: u16 = 6;
/// A bordered pane with one line of text.
const PANE_MIN: u16 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub reasoning: Rect,
    pub answer: Rect,
    pub meter: Rect,
    pub input: Rect,
    pub status: Rect,
}

pub fn too_small(size: (u16, u16)) -> bool {
    size.0 < MIN_WIDTH || size.1 < MIN_HEIGHT
}

/// The rows are handed out in order of need, so every size from
/// [`MIN_WIDTH`]×[`MIN_HEIGHT`] up is tiled exactly: the status line, the
/// question box with one line of text, the answer pane, the context meter,
/// the reasoning pane (or its one-line bar when collapsed), then more lines
/// of question (up to six), and the rest shared by the panes: 40% reasoning,
/// 60% answer.
pub fn layout(size: (u16, u16), collapsed: bool, input: &Input) -> Layout {
    let (w, h) = (size.0.max(MIN_WIDTH), size.1.max(MIN_HEIGHT));
    let mut left = h;
    let mut take = |want: u16| {
        let got = want.min(left);
        left -= got;
        got
    };
    let status_h = take(1);
    let mut input_h = take(3);
    let mut answer_h = take(PANE_MIN);
    let meter_h = take(1);
    let mut reasoning_h = take(if collapsed { 1 } else { PANE_MIN });
    let text_rows = input
        .layout(w.saturating_sub(2) as usize)
        .0
        .len()
        .clamp(1, MAX_INPUT_ROWS as usize) as u16;
    input_h += take(text_rows - 1);
    let panes_h = reasoning_h + answer_h + take(u16::MAX);
    if !collapsed && reasoning_h == PANE_MIN {
        reasoning_h = ((u32::from(panes_h) * 2 / 5) as u16).max(PANE_MIN);
    }
    answer_h = panes_h - reasoning_h;
    let reasoning = Rect::new(0, 0, w, reasoning_h);
    let answer = Rect::new(0, reasoning.bottom(), w, answer_h);
    let meter = Rect::new(0, answer.bottom(), w, meter_h);
    let input = Rect::new(0, meter.bottom(), w, input_h);
    let status = Rect::new(0, input.bottom(), w, status_h);
    Layout {
        reasoning,
        answer,
        meter,
        input,
        status,
    }
}

/// A bordered pane's text area.
pub fn inner(r: Rect) -> Rect {
    Rect::new(
        r.x + 1,
        r.y + 1,
        r.width.saturating_sub(2),
        r.height.saturating_sub(2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_tile_the_screen() {
        for (size, collapsed) in [
            ((80, 24), false),
            ((80, 24), true),
            ((200, 60), false),
            ((40, 12), false),
            ((20, 5), false),
            ((20, 5), true),
            ((80, 12), false),
            ((u16::MAX, u16::MAX), false),
        ] {
            let l = layout(size, collapsed, &Input::default());
            let rows = [l.reasoning, l.answer, l.meter, l.input, l.status];
            assert_eq!(
                rows.iter().map(|r| u32::from(r.height)).sum::<u32>(),
                u32::from(size.1),
                "{size:?}"
            );
            for pair in rows.windows(2) {
                assert_eq!(pair[0].y + pair[0].height, pair[1].y);
            }
        }
        assert_eq!(
            layout((80, 24), true, &Input::default()).reasoning.height,
            1
        );
    }
}
