//! Where everything goes on the screen, as a pure function of the size,
//! so the key handler (page sizes, mouse hits) and the renderer agree.

use ratatui::layout::Rect;

use super::input::Input;

/// Below this the UI says so instead of drawing.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;

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

/// The panes share the height left by the meter, the question box (1 to 6
/// lines of text) and the status line: 40% reasoning, 60% answer, or a
/// title bar for collapsed reasoning.
pub fn layout(size: (u16, u16), collapsed: bool, input: &Input) -> Layout {
    let (w, h) = (size.0.max(MIN_WIDTH), size.1.max(MIN_HEIGHT));
    let text_rows = input
        .layout(w.saturating_sub(4) as usize)
        .0
        .len()
        .clamp(1, 6) as u16;
    let input_h = text_rows + 2;
    let status = Rect::new(0, h - 1, w, 1);
    let input = Rect::new(0, h - 1 - input_h, w, input_h);
    let meter = Rect::new(0, input.y - 1, w, 1);
    let panes_h = meter.y;
    let reasoning_h = if collapsed {
        1
    } else {
        (panes_h * 2 / 5).max(3)
    };
    let reasoning = Rect::new(0, 0, w, reasoning_h);
    let answer = Rect::new(0, reasoning_h, w, panes_h - reasoning_h);
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
        ] {
            let l = layout(size, collapsed, &Input::default());
            let rows = [l.reasoning, l.answer, l.meter, l.input, l.status];
            assert_eq!(
                rows.iter().map(|r| r.height).sum::<u16>(),
                size.1,
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
