"""The transformers reference for o1's golden tests (tests/data/golden-0.5b.json).

Runs the O1-shaped checkpoint in PyTorch at float32 through each chat case, as
o1 does: a reasoning phase (the prompt ends with `<|im_start|><|reasoning|>\\n`)
and then an answer phase (`<|im_start|>assistant\\n`), each phase's text joining
the history. For every phase it records the prompt, its token ids, the five best
first-token logits and the greedy continuation (up to NEW_TOKENS, ending with
the first `<|im_end|>` or `<|endoftext|>`).

    python -m o1_fixtures.golden CHECKPOINT_DIR OUT_JSON
"""
import argparse
import json

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

SYSTEM = "You are a helpful assistant"
NEW_TOKENS = 48
REASONING = "<|reasoning|>"
# Each case is one conversation: the user's messages, one per turn.
CASES = [
    ("code", ["Write a Python function that returns the square of a number."]),
    ("math", ["A train travels 120 km in 1.5 hours. What is its average speed in km/h?"]),
    ("chinese", ["用一句话解释什么是机器学习。"]),
    ("multi_turn", ["Name three primary colors.", "Which of them is the color of the sky?"]),
]


def render(history, next_role):
    """The ChatML prompt: every message, then the header of the phase to generate."""
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in history)
    return f"{text}<|im_start|>{next_role}\n"


class Reference:
    def __init__(self, checkpoint):
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
        self.stops = {self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}

    @torch.no_grad()
    def phase(self, prompt):
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        out = self.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        logits = out.logits[0, -1]
        best = torch.topk(logits, 5)
        first_top5 = [[int(i), float(v)] for i, v in zip(best.indices, best.values)]
        greedy = []
        while True:
            token = int(torch.argmax(logits))
            greedy.append(token)
            if token in self.stops or len(greedy) == NEW_TOKENS:
                break
            out = self.model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values,
                             use_cache=True)
            logits = out.logits[0, -1]
        return {
            "prompt": prompt,
            "prompt_ids": prompt_ids,
            "first_top5": first_top5,
            "greedy_ids": greedy,
            "greedy_text": self.tokenizer.decode(greedy, skip_special_tokens=True),
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    args = parser.parse_args()
    ref = Reference(args.checkpoint)
    cases = []
    for name, users in CASES:
        history, turns = [("system", SYSTEM)], []
        for user in users:
            history.append(("user", user))
            turn = {"user": user}
            for key, role in (("reasoning", REASONING), ("answer", "assistant")):
                turn[key] = ref.phase(render(history, role))
                history.append((role, turn[key]["greedy_text"]))
                print(f"{name} {key}: {turn[key]['greedy_text']!r}", flush=True)
            turns.append(turn)
        cases.append({"name": name, "turns": turns})
    golden = {
        "checkpoint_note": "greedy, float32, transformers",
        "reference": {"torch": torch.__version__, "transformers": transformers.__version__},
        "system": SYSTEM,
        "new_tokens": NEW_TOKENS,
        "reasoning_token_id": ref.tokenizer.convert_tokens_to_ids(REASONING),
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
