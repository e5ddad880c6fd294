//! The chat format the model was trained on, written down once: its
//! markers, its default system message, and the Jinja chat template built
//! from them that a GGUF carries for llama.cpp's tools and other runners.
//! o1's own renderer (`o1::chat`) uses the same constants, and a test
//! renders this template against it.

pub use crate::keys::REASONING_TOKEN as REASONING;

/// Opens a message; the role follows (for reasoning, the special token).
pub const IM_START: &str = "<|im_start|>";
/// Ends a message, and the model's turn.
pub const IM_END: &str = "<|im_end|>";
/// The end of a text, which also ends generation.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// The system message of the model card's reference loop, used when a
/// conversation has none.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant";
/// The role names written after [`IM_START`].
pub const SYSTEM_ROLE: &str = "system";
pub const USER_ROLE: &str = "user";
pub const ASSISTANT_ROLE: &str = "assistant";

/// The strings that end the model's turn, as other runners' stop lists
/// give them.
pub const STOPS: [&str; 2] = [IM_END, END_OF_TEXT];

/// A Jinja string literal of `text` (single-quoted, `\n` escaped).
fn literal(text: &str) -> String {
    format!(
        "'{}'",
        text.replace('\\', "\\\\")
            .replace('\'', "\\'")
            .replace('\n', "\\n")
    )
}

/// The GGUF's `tokenizer.chat_template`: messages with roles `system`,
/// `user`, `<|reasoning|>` and `assistant`; the default system message when
/// the first is not a system one; and as the generation prompt, the
/// reasoning phase's opener, or the answer's after a reasoning message.
pub fn chat_template() -> String {
    let default_system = literal(&format!(
        "{IM_START}{SYSTEM_ROLE}\n{DEFAULT_SYSTEM}{IM_END}\n"
    ));
    let open = literal(IM_START);
    let close = literal(&format!("{IM_END}\n"));
    let answer = literal(&format!("{IM_START}{ASSISTANT_ROLE}\n"));
    let reasoning = literal(&format!("{IM_START}{REASONING}\n"));
    let reasoning_role = literal(REASONING);
    [
        format!("{{%- if not messages or messages[0]['role'] != '{SYSTEM_ROLE}' %}}"),
        format!("{{{{- {default_system} }}}}"),
        "{%- endif %}".into(),
        "{%- for message in messages %}".into(),
        format!("{{{{- {open} + message['role'] + '\\n' + message['content'] + {close} }}}}"),
        "{%- endfor %}".into(),
        "{%- if add_generation_prompt %}".into(),
        format!("{{%- if messages and messages[-1]['role'] == {reasoning_role} %}}"),
        format!("{{{{- {answer} }}}}"),
        "{%- else %}".into(),
        format!("{{{{- {reasoning} }}}}"),
        "{%- endif %}".into(),
        "{%- endif %}".into(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_one_the_files_have_always_carried() {
        // The text o1's files carry since the format's first version: a
        // change here changes every converted file's metadata.
        assert_eq!(
            chat_template(),
            concat!(
                "{%- if not messages or messages[0]['role'] != 'system' %}",
                "{{- '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}",
                "{%- endif %}",
                "{%- for message in messages %}",
                "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}",
                "{%- endfor %}",
                "{%- if add_generation_prompt %}",
                "{%- if messages and messages[-1]['role'] == '<|reasoning|>' %}",
                "{{- '<|im_start|>assistant\\n' }}",
                "{%- else %}",
                "{{- '<|im_start|><|reasoning|>\\n' }}",
                "{%- endif %}",
                "{%- endif %}",
            )
        );
    }
}
