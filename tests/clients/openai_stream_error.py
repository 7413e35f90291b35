"""Streams an answer with the real `openai` Python SDK and reports how the
stream ended (tests/openai_clients.rs): the error the SDK raised, if any.

Usage: python3 openai_stream_error.py BASE_URL   (BASE_URL ends in /v1)
"""
import json
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=60)
text, raised, message, code = "", None, None, None
try:
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "what is debian"}], stream=True
    )
    for chunk in stream:
        for choice in chunk.choices or []:
            text += choice.delta.content or ""
except openai.APIError as e:
    raised, message = type(e).__name__, e.message
    code = (e.body or {}).get("code") if isinstance(e.body, dict) else None
print(json.dumps({"text": text, "raised": raised, "message": message, "code": code}))
