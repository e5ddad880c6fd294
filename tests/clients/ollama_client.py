"""The official ollama Python client against `o1 serve` (run by tests/serve.rs).

    ollama_client.py HOST MODEL EXPECTED_JSON

EXPECTED_JSON is `o1 run --json`'s report for "What is 2+2?" on the same
model and settings. Exits non-zero, saying what differs, on any mismatch.
"""
import json
import sys

import ollama

host, model, expected = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = ollama.Client(host=host)
shown_reasoning = expected["reasoning"].strip()


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


reply = client.chat(model=model, messages=[{"role": "user", "content": "What is 2+2?"}])
check("chat content", reply.message.content, expected["answer"])
check("chat thinking", reply.message.thinking or "", shown_reasoning)

reply = client.generate(model=model, prompt="What is 2+2?")
check("generate response", reply.response, expected["answer"])
check("generate thinking", reply.thinking or "", shown_reasoning)
check("generate done", reply.done, True)

text = "".join(part.response for part in client.generate(model=model, prompt="What is 2+2?", stream=True))
check("streamed generate", text, expected["answer"])

loaded = client.ps()
check("ps models", [m.model for m in loaded.models], [f"{model}:latest"])
running = loaded.models[0]
context = getattr(running, "context_length", None) or (running.model_extra or {}).get("context_length")
check("ps context", context, expected["stats"]["context_size"])

check("load", client.generate(model=model).done_reason, "load")
check("unload", client.generate(model=model, keep_alive=0).done_reason, "unload")
check("tags", [m.model for m in client.list().models], [f"{model}:latest"])

try:
    client.embed(model=model, input="hi")
    sys.exit("embed was accepted")
except ollama.ResponseError as e:
    check("embed status", e.status_code, 400)
print("ok")
