// Drives Spindle with the real `openai` npm SDK (tests/openai_clients.rs).
// Usage: node openai_client.mjs BASE_URL   (BASE_URL ends in /v1)
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0, timeout: 60000 });
const messages = [{ role: "user", content: "How do I install a package?" }];

const models = [];
for await (const m of client.models.list()) models.push(m.id);

const stream = await client.chat.completions.create({
  model: models[0], messages, stream: true, stream_options: { include_usage: true },
});
let text = "", sources = null, usage = null, finish = null;
for await (const chunk of stream) {
  if (chunk.sources) sources = chunk.sources;
  if (chunk.usage) usage = chunk.usage.completion_tokens;
  for (const choice of chunk.choices) {
    text += choice.delta?.content ?? "";
    finish = choice.finish_reason ?? finish;
  }
}

const full = await client.chat.completions.create({ model: models[0], messages });
console.log(JSON.stringify({
  models, stream_text: text, stream_sources: sources, stream_usage: usage, stream_finish: finish,
  text: full.choices[0].message.content, sources: full.sources ?? null,
}));
