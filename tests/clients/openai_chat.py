"""An unmodified openai-python app: it knows nothing of model-router.

Where its calls go (HTTPS_PROXY), which CA it trusts (SSL_CERT_FILE) and its key (OPENAI_API_KEY)
all come from the environment, as the SDK reads them. Run as a subprocess by
tests/e2e/test_clients.py; prints one JSON object: a non-streaming call (model, content, the
x-model-router-* headers) and a streaming one (models, the deltas in order).
"""

import json
import sys

import openai

MESSAGES = [{"role": "user", "content": "Say hello."}]


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "gpt-4o"
    with openai.OpenAI() as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        completion = raw.parse()
        headers = {k: v for k, v in raw.headers.items() if k.startswith("x-model-router-")}
        models, deltas = set(), []
        for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
            models.add(chunk.model)
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
    print(json.dumps({
        "completion": {"model": completion.model, "content": completion.choices[0].message.content,
                       "headers": headers},
        "stream": {"models": sorted(models), "deltas": deltas},
    }))


if __name__ == "__main__":
    main()
