"""The official OpenAI client against `o1 serve` (run by tests/serve.rs).

    client.py BASE_URL MODEL EXPECTED_JSON

EXPECTED_JSON is `o1 run --json`'s report for "What is 2+2?" on the same
model and settings. Exits non-zero, saying what differs, on any mismatch.
The server shows the reasoning without the whitespace around it.
"""
import json
import sys

import openai

base_url, model, expected = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
shown_reasoning = expected["reasoning"].strip()
client = openai.OpenAI(base_url=base_url, api_key="unused")
question = [{"role": "user", "content": "What is 2+2?"}]


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


# Not streamed: the reasoning apart from the answer.
reply = client.chat.completions.create(model=model, messages=question)
message = reply.choices[0].message
check("content", message.content, expected["answer"])
check("reasoning_content", message.model_extra.get("reasoning_content") or "", shown_reasoning)
check("reasoning_tokens", reply.usage.completion_tokens_details.reasoning_tokens,
      expected["stats"]["reasoning"]["generated_tokens"])
check("prompt_tokens", reply.usage.prompt_tokens, expected["stats"]["reasoning"]["prompt_tokens"])

# Streamed: reasoning deltas first, then the answer's, then the usage.
reasoning, answer, usage, order = "", "", None, []
stream = client.chat.completions.create(
    model=model, messages=question, stream=True, stream_options={"include_usage": True})
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        r = (choice.delta.model_extra or {}).get("reasoning_content")
        if r:
            reasoning += r
            order.append("r")
        if choice.delta.content:
            answer += choice.delta.content
            order.append("a")
check("streamed reasoning", reasoning, shown_reasoning)
check("streamed content", answer, expected["answer"])
check("order", order, sorted(order, key=lambda k: k != "r"))
check("streamed usage", usage is not None, True)

# A conversation: the client sends the answers back (without their
# reasoning); from the second turn on, the earlier turns come from the cache.
messages = [{"role": "user", "content": "Name a colour."}]
last = None
for turn in range(5):
    reply = client.chat.completions.create(model=model, messages=messages)
    usage = reply.usage
    cached = usage.prompt_tokens_details.cached_tokens
    print(f"turn {turn + 1}: prompt {usage.prompt_tokens}, cached {cached}")
    # All of the last turn (its prompt and what it generated) is re-used.
    if last is not None and cached < last.prompt_tokens + last.completion_tokens - 2:
        sys.exit(f"turn {turn + 1}: {cached} cached after {last}")
    last = usage
    messages.append({"role": "assistant", "content": reply.choices[0].message.content})
    messages.append({"role": "user", "content": f"And another? ({turn})"})

# The Responses API: the reasoning an item of its own, then the message.
response = client.responses.create(model=model, input="What is 2+2?")
check("responses output_text", response.output_text, expected["answer"])
kinds = [item.type for item in response.output]
check("responses items", kinds, (["reasoning"] if shown_reasoning else []) + ["message"])
if shown_reasoning:
    check("responses reasoning", response.output[0].content[0].text, shown_reasoning)
check("responses reasoning_tokens", response.usage.output_tokens_details.reasoning_tokens,
      expected["stats"]["reasoning"]["generated_tokens"])
events, streamed_text = [], ""
for event in client.responses.create(model=model, input="What is 2+2?", stream=True):
    events.append(event.type)
    if event.type == "response.output_text.delta":
        streamed_text += event.delta
check("responses streamed text", streamed_text, expected["answer"])
check("responses first event", events[0], "response.created")
check("responses last event", events[-1] in ("response.completed", "response.incomplete"), True)

# Legacy completions: a raw prompt continued.
completion = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4)
check("completion tokens", completion.usage.completion_tokens <= 4, True)
check("completion text type", isinstance(completion.choices[0].text, str), True)

# An unsupported field is an error that names it.
try:
    client.chat.completions.create(model=model, messages=question, n=2)
    sys.exit("n=2 was accepted")
except openai.BadRequestError as e:
    check("error param", e.body.get("param"), "n")
print("ok")
