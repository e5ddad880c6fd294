//! What the server sends, as types: the contract with OpenAI's and
//! ollama's clients, readable in one place. The handlers fill these; serde
//! writes them.

use serde::Serialize;

use super::queue::Summary;

/// OpenAI's model object (`/v1/models`).
#[derive(Serialize)]
pub struct Model<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

impl<'a> Model<'a> {
    pub fn new(id: &'a str, created: u64) -> Self {
        Model {
            id,
            object: "model",
            created,
            owned_by: "o1",
        }
    }
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: Vec<Model<'a>>,
}

/// OpenAI's token counts: the reasoning's among the completion's, the
/// cached among the prompt's.
#[derive(Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
pub struct PromptDetails {
    pub cached_tokens: usize,
}

#[derive(Serialize)]
pub struct CompletionDetails {
    pub reasoning_tokens: usize,
}

impl Usage {
    pub fn of(s: &Summary) -> Self {
        let completion = s.reasoning_tokens + s.answer_tokens;
        Usage {
            prompt_tokens: s.prompt_tokens,
            completion_tokens: completion,
            total_tokens: s.prompt_tokens + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: s.cached_tokens,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: s.reasoning_tokens,
            },
        }
    }
}

/// llama-server's `timings` (its web UI and some clients read them): the
/// prompt's and the generation's tokens and milliseconds, both phases
/// together.
#[derive(Serialize)]
pub struct Timings {
    pub cache_n: usize,
    pub prompt_n: usize,
    pub prompt_ms: f64,
    pub prompt_per_second: f64,
    pub predicted_n: usize,
    pub predicted_ms: f64,
    pub predicted_per_second: f64,
}

impl Timings {
    pub fn of(s: &Summary) -> Self {
        let prompt_n = s.prompt_tokens - s.cached_tokens;
        let predicted_n = s.reasoning_tokens + s.answer_tokens;
        let per_second = |n: usize, seconds: f64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Timings {
            cache_n: s.cached_tokens,
            prompt_n,
            prompt_ms: s.prompt_seconds * 1e3,
            prompt_per_second: per_second(prompt_n, s.prompt_seconds),
            predicted_n,
            predicted_ms: s.generation_seconds * 1e3,
            predicted_per_second: per_second(predicted_n, s.generation_seconds),
        }
    }
}

/// A chat message from the model; `reasoning_content` only when it
/// reasoned (DeepSeek's, llama-server's and LM Studio's convention).
#[derive(Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// o1's: `length` in a delta of its own when the reasoning stopped at its
    /// budget or the context's end (then the answer follows); other clients
    /// ignore it, `o1 tui` over a server marks the reasoning cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_stop: Option<&'static str>,
}

impl Delta {
    /// The whole reply's message.
    pub fn message(s: &Summary) -> Self {
        Delta {
            role: Some("assistant"),
            content: Some(s.answer.clone()),
            reasoning_content: (!s.reasoning.is_empty()).then(|| s.reasoning.clone()),
            reasoning_stop: None,
        }
    }
}

#[derive(Serialize)]
pub struct Choice {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Delta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<()>,
}

/// `chat.completion` and `chat.completion.chunk`: the same header, with a
/// message or a delta.
#[derive(Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<Choice>,
    /// In a stream with `include_usage`: `null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// The header every chunk and reply of one completion repeats.
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Header {
    /// The non-streamed reply.
    pub fn reply(&self, s: &Summary) -> ChatCompletion<'_> {
        ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: vec![Choice {
                index: 0,
                message: Some(Delta::message(s)),
                delta: None,
                finish_reason: Some(s.finish.reason()),
                logprobs: None,
            }],
            usage: Some(Some(Usage::of(s))),
            timings: Some(Timings::of(s)),
        }
    }

    /// A chunk of a stream: a delta, or the end with its finish reason.
    /// `with_usage`: the stream asked for usage, so each chunk has the key.
    pub fn chunk(
        &self,
        delta: Delta,
        finish: Option<&'static str>,
        with_usage: bool,
    ) -> ChatCompletion<'_> {
        ChatCompletion {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![Choice {
                index: 0,
                message: None,
                delta: Some(delta),
                finish_reason: finish,
                logprobs: None,
            }],
            usage: with_usage.then_some(None),
            timings: None,
        }
    }

    /// The usage chunk that ends a stream which asked for it.
    pub fn usage_chunk(&self, s: &Summary) -> ChatCompletion<'_> {
        ChatCompletion {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![],
            usage: Some(Some(Usage::of(s))),
            timings: None,
        }
    }
}

/// ollama's message in `/api/chat` replies.
#[derive(Serialize)]
pub struct OllamaMessage {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
}

/// ollama's figures on the last line, in nanoseconds.
#[derive(Serialize)]
pub struct OllamaMetrics {
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: usize,
    pub prompt_eval_duration: u64,
    pub eval_count: usize,
    pub eval_duration: u64,
}

impl OllamaMetrics {
    pub fn of(s: &Summary) -> Self {
        let ns = |seconds: f64| (seconds * 1e9) as u64;
        OllamaMetrics {
            total_duration: ns(s.total_seconds),
            load_duration: 0,
            prompt_eval_count: s.prompt_tokens - s.cached_tokens,
            prompt_eval_duration: ns(s.prompt_seconds),
            eval_count: s.reasoning_tokens + s.answer_tokens,
            eval_duration: ns(s.generation_seconds),
        }
    }
}

/// A line of `/api/chat` (`message`) or `/api/generate` (`response` and
/// `thinking`); the last one is `done`, says why, and has the metrics
/// flattened in.
#[derive(Serialize)]
pub struct OllamaResponse<'a> {
    pub model: &'a str,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<OllamaMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<OllamaMetrics>,
    /// `/api/generate`'s last line: the context o1 does not keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<[u32; 0]>,
}

impl<'a> OllamaResponse<'a> {
    /// A line of `/api/chat`, or of `/api/generate` (`chat` false).
    pub fn line(model: &'a str, chat: bool, content: String, thinking: Option<String>) -> Self {
        let (message, response, thinking) = if chat {
            let message = OllamaMessage {
                role: "assistant",
                content,
                thinking,
            };
            (Some(message), None, None)
        } else {
            (None, Some(content), thinking)
        };
        OllamaResponse {
            model,
            created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            message,
            response,
            thinking,
            done: false,
            done_reason: None,
            metrics: None,
            context: None,
        }
    }

    /// The same line as the last: done, why, and (after a generation) the
    /// figures; `/api/generate`'s with its empty context.
    pub fn done(mut self, reason: &'static str, s: Option<&Summary>) -> Self {
        self.done = true;
        self.done_reason = Some(reason);
        self.metrics = s.map(OllamaMetrics::of);
        if self.message.is_none() {
            self.context = Some([]);
        }
        self
    }
}
