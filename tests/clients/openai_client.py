"""Drives Spindle with the real `openai` Python SDK (tests/openai_clients.rs).

Usage: python3 openai_client.py BASE_URL   (BASE_URL ends in /v1)
Prints one JSON object with what the SDK saw.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=60)
question = [{"role": "user", "content": "How do I install a package?"}]

models = [m.id for m in client.models.list()]

stream = client.chat.completions.create(
    model=models[0], messages=question, stream=True, stream_options={"include_usage": True}
)
text, sources, usage, finish = "", None, None, None
for chunk in stream:
    extra = chunk.model_extra or {}
    if extra.get("sources") is not None:
        sources = extra["sources"]
    if chunk.usage is not None:
        usage = chunk.usage.completion_tokens
    for choice in chunk.choices:
        text += choice.delta.content or ""
        finish = choice.finish_reason or finish

full = client.chat.completions.create(model=models[0], messages=question)
print(json.dumps({
    "models": models,
    "stream_text": text,
    "stream_sources": sources,
    "stream_usage": usage,
    "stream_finish": finish,
    "text": full.choices[0].message.content,
    "sources": (full.model_extra or {}).get("sources"),
}))
