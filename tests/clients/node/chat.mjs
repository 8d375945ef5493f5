// An unmodified openai Node SDK app: it knows nothing of model-router. Everything about where its
// calls go comes from the environment (OPENAI_BASE_URL, OPENAI_API_KEY), as the SDK reads it.
// Prints one JSON object: a non-streaming call (model, content, the x-model-router-* headers)
// and a streaming one (models, the deltas in order).
import OpenAI from "openai";

const messages = [{ role: "user", content: "Say hello." }];
const model = process.argv[2] ?? "gpt-4o";

const client = new OpenAI();

const { data: completion, response } = await client.chat.completions
  .create({ model, messages })
  .withResponse();
const headers = {};
for (const [name, value] of response.headers) {
  if (name.startsWith("x-model-router-")) headers[name] = value;
}

const stream = await client.chat.completions.create({ model, messages, stream: true });
const deltas = [];
const models = new Set();
for await (const chunk of stream) {
  models.add(chunk.model);
  const delta = chunk.choices[0]?.delta?.content;
  if (delta) deltas.push(delta);
}

console.log(JSON.stringify({
  completion: { model: completion.model, content: completion.choices[0].message.content, headers },
  stream: { models: [...models], deltas },
}));
