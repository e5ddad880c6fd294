//! The reasoning behind the answers this server wrote. Clients send back
//! only the answer of earlier turns; o1 puts the reasoning back before it,
//! so the prompt is the trained format and the KV cache still matches.
//!
//! A reasoning is found only by the conversation it was written in: the
//! caller (its API key) and every message before the answer, plus the
//! answer itself, hashed together. A client that sends an answer it saw
//! elsewhere, or another caller's conversation, finds nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::guard::Caller;
use crate::chat::{Message, Role};

/// A conversation's messages so far, as a running hash (reasoning messages
/// are left out, since a client may or may not send them back).
#[derive(Clone)]
pub struct Thread(Sha256);

impl Thread {
    pub fn new(caller: Caller) -> Thread {
        let mut h = Sha256::new();
        h.update(b"o1 thread v1\0");
        match caller.0 {
            Some(i) => h.update((i as u64 + 1).to_le_bytes()),
            None => h.update(0u64.to_le_bytes()),
        }
        Thread(h)
    }

    fn push(&mut self, m: &Message) {
        if m.role == Role::Reasoning {
            return;
        }
        let tag: &[u8] = match m.role {
            Role::System => b"s",
            Role::User => b"u",
            _ => b"a",
        };
        self.0.update(tag);
        self.0.update((m.content.len() as u64).to_le_bytes());
        self.0.update(m.content.as_bytes());
    }

    /// The key of `answer` written after this conversation.
    fn key(&self, answer: &str) -> [u8; 32] {
        let mut h = self.0.clone();
        h.update(b"answer");
        h.update(answer.as_bytes());
        h.finalize().into()
    }
}

/// The last answers' reasoning, by [`Thread::key`].
#[derive(Default)]
pub struct Remembered(Mutex<VecDeque<([u8; 32], String)>>);

impl Remembered {
    const KEEP: usize = 256;

    fn find(&self, key: &[u8; 32]) -> Option<String> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
    }

    /// Keeps `reasoning` (as the model wrote it) for `answer` written after
    /// `thread`.
    pub fn keep(&self, thread: &Thread, answer: &str, reasoning: &str) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == Self::KEEP {
            kept.pop_front();
        }
        kept.push_back((thread.key(answer), reasoning.to_string()));
    }

    /// The messages to render for a request: the caller's, with the
    /// reasoning put back before each answer this server wrote in this
    /// conversation, as the model wrote it (also where the client sent it
    /// back as shown, without the blank lines around it). Returns them with
    /// the conversation's thread, under which its new answer is kept.
    pub fn restore(&self, messages: Vec<Message>, caller: Caller) -> (Vec<Message>, Thread) {
        let mut thread = Thread::new(caller);
        let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 2);
        for m in messages {
            if m.role == Role::Assistant {
                if let Some(raw) = self.find(&thread.key(&m.content)) {
                    match out.last_mut() {
                        Some(given) if given.role == Role::Reasoning => {
                            if given.content.trim() == raw.trim() {
                                given.content = raw;
                            }
                        }
                        _ => out.push(Message::new(Role::Reasoning, raw)),
                    }
                }
            }
            thread.push(&m);
            out.push(m);
        }
        (out, thread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(m: &[Message]) -> Vec<Role> {
        m.iter().map(|m| m.role).collect()
    }

    #[test]
    fn a_conversation_gets_its_own_reasoning_back_and_no_one_elses() {
        let remembered = Remembered::default();
        let alice = Caller(Some(0));
        let first = vec![
            Message::new(Role::System, "sys"),
            Message::new(Role::User, "my PIN is 4711; what is 2+2?"),
        ];
        let (_, thread) = remembered.restore(first.clone(), alice);
        remembered.keep(&thread, "4", "\nThe PIN is 4711. 2 + 2 is 4.\n");

        let mut next = first.clone();
        next.push(Message::new(Role::Assistant, "4"));
        next.push(Message::new(Role::User, "and 3+3?"));
        let (out, _) = remembered.restore(next.clone(), alice);
        assert_eq!(
            roles(&out),
            [
                Role::System,
                Role::User,
                Role::Reasoning,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(out[2].content, "\nThe PIN is 4711. 2 + 2 is 4.\n");

        // The same answer in another conversation, or from another caller.
        let other = vec![
            Message::new(Role::User, "what is 2+2?"),
            Message::new(Role::Assistant, "4"),
            Message::new(Role::User, "and?"),
        ];
        let (out, _) = remembered.restore(other, alice);
        assert!(out.iter().all(|m| m.role != Role::Reasoning));
        let (out, _) = remembered.restore(next, Caller(Some(1)));
        assert!(out.iter().all(|m| m.role != Role::Reasoning));
    }

    #[test]
    fn reasoning_sent_back_as_shown_is_restored_as_written() {
        let remembered = Remembered::default();
        let q = vec![Message::new(Role::User, "hi")];
        let (_, thread) = remembered.restore(q.clone(), Caller(None));
        remembered.keep(&thread, "hello", "\nGreet back.\n");
        let mut next = q;
        next.push(Message::new(Role::Reasoning, "Greet back."));
        next.push(Message::new(Role::Assistant, "hello"));
        next.push(Message::new(Role::User, "bye"));
        let (out, _) = remembered.restore(next.clone(), Caller(None));
        assert_eq!(out[1].content, "\nGreet back.\n");
        // Other reasoning given by the client is its own to keep.
        next[1].content = "mine".into();
        let (out, _) = remembered.restore(next, Caller(None));
        assert_eq!(out[1].content, "mine");
    }
}
