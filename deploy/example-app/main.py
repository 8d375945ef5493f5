"""Stands in for an unmodified app: plain openai SDK code with no proxy or base-URL setting.

It calls https://api.openai.com as usual with "model": "gpt-4o"; the sidecar decides what really
serves it and says so in the x-model-router-* response headers.
"""

import time

from openai import OpenAI

client = OpenAI(max_retries=2)  # OPENAI_API_KEY from the environment

while True:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Summarise in one line: the sidecar routed me."}],
    )
    answer = raw.parse()
    print(f"served by {raw.headers.get('x-model-router-model', '?')} "
          f"({raw.headers.get('x-model-router-reason', 'not routed')}): "
          f"{answer.choices[0].message.content}", flush=True)
    time.sleep(60)
