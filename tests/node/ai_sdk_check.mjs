// Drives the Vercel AI SDK 6 (ai, @ai-sdk/openai, @ai-sdk/anthropic; pinned in package.json) against edge_proxy.
//
//   node tests/node/ai_sdk_check.mjs < scenarios.json
//
// stdin: a JSON list of scenarios {name, provider, baseURL, apiKey, model, op, caseId}; provider is "openai"
// (the AI SDK's default openai(model): the Responses API), "openai.chat" (chat completions) or "anthropic"; op is
// one of text, stream, tools, object, embed. Every request carries x-lava-metadata {"case": caseId} and caseId is
// in the prompt. The scenarios run one after another in this one process (Node starts slowly: one process per
// Python test module, not per call). stdout: one JSON line, {name: result}, where result is
// {text, toolCalls, object, embeddings, usage, finishReason} or {error, status, body} for a call that failed.

import { embedMany, generateObject, generateText, jsonSchema, streamText, tool } from 'ai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';

const WEATHER = jsonSchema({
  type: 'object', properties: { city: { type: 'string' }, unit: { enum: ['c', 'f'] } },
  required: ['city', 'unit'], additionalProperties: false,
});
const PERSON = jsonSchema({
  type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } },
  required: ['name', 'age'], additionalProperties: false,
});

function model(s) {
  const options = { baseURL: s.baseURL, apiKey: s.apiKey, headers: { 'x-lava-metadata': JSON.stringify({ case: s.caseId }) } };
  if (s.provider === 'anthropic') return createAnthropic(options)(s.model);
  const openai = createOpenAI(options);
  if (s.op === 'embed') return openai.embedding(s.model);
  return s.provider === 'openai.chat' ? openai.chat(s.model) : openai(s.model);
}

async function run(s) {
  const m = model(s);
  const prompt = `${s.caseId} say hello to the gateway`;
  const common = { model: m, prompt, maxRetries: 0 };
  if (s.op === 'text') {
    const r = await generateText(common);
    return { text: r.text, usage: r.usage, finishReason: r.finishReason };
  }
  if (s.op === 'stream') {
    const r = streamText({ ...common, onError: () => {} });
    let text = '';
    for await (const part of r.fullStream) {
      if (part.type === 'text-delta') text += part.text;
      if (part.type === 'error') throw part.error;
    }
    return { text, usage: await r.usage, finishReason: await r.finishReason };
  }
  if (s.op === 'tools') {
    const r = await generateText({ ...common, tools: { get_weather: tool({ description: 'Weather for a city', inputSchema: WEATHER }) } });
    return { text: r.text, toolCalls: r.toolCalls.map((c) => ({ name: c.toolName, input: c.input })), usage: r.usage, finishReason: r.finishReason };
  }
  if (s.op === 'object') {
    const r = await generateObject({ ...common, schema: PERSON });
    return { object: r.object, usage: r.usage, finishReason: r.finishReason };
  }
  if (s.op === 'embed') {
    const r = await embedMany({ model: m, values: [`${s.caseId} first`, 'second text'], maxRetries: 0 });
    return { embeddings: r.embeddings, usage: r.usage };
  }
  throw new Error(`unknown op ${s.op}`);
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const scenarios = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const out = {};
for (const s of scenarios) {
  try {
    out[s.name] = await run(s);
  } catch (e) {
    out[s.name] = { error: String(e && e.message || e), status: e && e.statusCode, body: e && e.responseBody };
  }
}
process.stdout.write(JSON.stringify(out) + '\n');
