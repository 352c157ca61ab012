// Drives the official Lava Node SDK (@lavapayments/nodejs, pinned in package.json) against edge_proxy.
//
//   BASE_URL=http://127.0.0.1:8080/v1/ LAVA_SECRET_KEY=aks_... node tests/node/sdk_check.mjs <scenario>
//
// Prints exactly one JSON line on stdout:
//   - on success: the scenario's result (for SDK calls, the SDK's return value as is);
//   - on an error: {"error": "<message>", "status": <HTTP status, only when the message carries one>}
//     and, for network failures, "cause" (e.g. "connect ECONNREFUSED 127.0.0.1:59999";
//     fetch refuses some ports outright, e.g. :9 gives cause "bad port"). Exit code 0.
// Exit code 2: bad usage (unknown scenario, missing BASE_URL). Exit code 1: the watchdog timed out.
//
// BASE_URL is handed to the SDK verbatim. The SDK does not normalise it, so it must end with "/".
// Per-scenario env vars are listed next to each scenario below. ARGS is always a JSON object.

import { Lava } from '@lavapayments/nodejs';

const env = process.env;

const DEFAULT_UPSTREAM_URL = 'https://api.openai.com/v1/chat/completions';
const DEFAULT_BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello.' }],
  max_tokens: 16,
});

function emit(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function args() {
  return env.ARGS ? JSON.parse(env.ARGS) : undefined;
}

// The id for retrieve/update/delete-style calls: ARGS.id, or ARGS.<resource>_id.
function idFrom(name) {
  const a = args() ?? {};
  const id = a.id ?? a[name];
  if (id === undefined) throw new Error(`ARGS must carry "id" or "${name}"`);
  return id;
}

// The update body for update-style calls: ARGS.params.
function params() {
  return (args() ?? {}).params;
}

function body() {
  return JSON.parse(env.BODY ?? DEFAULT_BODY);
}

function parseBool(text) {
  return text === 'true' || text === '1';
}

// Billing options for gateway(), taken from env. Keys are only set when their env var is set,
// because the SDK treats "absent" (undefined) and null differently.
function billingOptions() {
  const options = {};
  if (env.CUSTOMER_ID !== undefined) options.customer_id = env.CUSTOMER_ID;
  if (env.METER_SLUG !== undefined) options.meter_slug = env.METER_SLUG;
  if (env.PROVIDER_KEY !== undefined) options.provider_key = env.PROVIDER_KEY;
  if (env.DISABLE_BILLING !== undefined) options.disable_billing = parseBool(env.DISABLE_BILLING);
  if (env.HEADERS !== undefined) options.headers = JSON.parse(env.HEADERS);
  if (env.METHOD !== undefined) options.method = env.METHOD;
  return options;
}

// token: no network. Env CUSTOMER_ID, METER_SLUG, PROVIDER_KEY (defaults below).
function token(lava) {
  const customer_id = env.CUSTOMER_ID ?? 'cus_test';
  const meter_slug = env.METER_SLUG ?? 'test-meter';
  const provider_key = env.PROVIDER_KEY ?? 'sk-test-provider-key';
  return {
    tokens: {
      secret_only: lava.generateForwardToken({}),
      customer_meter: lava.generateForwardToken({ customer_id, meter_slug }),
      meter_only: lava.generateForwardToken({ meter_slug }),
      null_customer_meter: lava.generateForwardToken({ customer_id: null, meter_slug }),
      provider_key: lava.generateForwardToken({ provider_key }),
      disable_billing: lava.generateForwardToken({ disable_billing: true }),
    },
    providers: lava.providers,
  };
}

// forward: lava.gateway(UPSTREAM_URL, {body}). Env UPSTREAM_URL, BODY, and optionally
// CUSTOMER_ID, METER_SLUG, PROVIDER_KEY, DISABLE_BILLING (true/1), HEADERS (JSON), METHOD.
function forward(lava) {
  return lava.gateway(env.UPSTREAM_URL ?? DEFAULT_UPSTREAM_URL, { body: body(), ...billingOptions() });
}

// rewrite: like forward, plus env FORMAT (openai | anthropic | google | bedrock; default openai).
function rewrite(lava) {
  return lava.gateway(env.UPSTREAM_URL ?? DEFAULT_UPSTREAM_URL, {
    body: body(),
    format: env.FORMAT ?? 'openai',
    ...billingOptions(),
  });
}

// fetch_provider: the README's pattern, plain fetch() on lava.providers.<PROVIDER> + PROVIDER_PATH.
// Env FORWARD_TOKEN (default: the raw secret key), BODY, PROVIDER (default openai),
// PROVIDER_PATH (default /chat/completions).
async function fetch_provider(lava) {
  const bearer = env.FORWARD_TOKEN ?? env.LAVA_SECRET_KEY;
  const url = lava.providers[env.PROVIDER ?? 'openai'] + (env.PROVIDER_PATH ?? '/chat/completions');
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bearer}` },
    body: JSON.stringify(body()),
  });
  const text = await response.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: response.status, request_id: response.headers.get('x-lava-request-id'), body: parsed };
}

// One small function per scenario. ARGS-driven ones pass the parsed ARGS straight to the SDK.
const scenarios = {
  token,
  forward,
  fetch_provider,
  rewrite,

  models: (lava) => lava.models.list(),
  // usage: env START (default: 30 days ago); ARGS may add end, customer_id, meter_id, metadata_filters.
  usage: (lava) =>
    lava.usage.retrieve({ start: env.START ?? new Date(Date.now() - 30 * 86400e3).toISOString(), ...args() }),
  // requests_list: {limit: 5}; ARGS may add/override cursor, limit, customer_id, meter_id, metadata_filters.
  requests_list: (lava) => lava.requests.list({ limit: 5, ...args() }),
  request_get: (lava) => lava.requests.retrieve(env.REQUEST_ID),
  request_create: (lava) => lava.requests.create(args()),

  customers_create: (lava) => lava.customers.create(args()),
  customers_list: (lava) => lava.customers.list(args()),
  customers_get: (lava) => lava.customers.retrieve(idFrom('customer_id')),
  meters_create: (lava) => lava.meters.create(args()),
  meters_list: (lava) => lava.meters.list(args()),
  spend_keys_create: (lava) => lava.spendKeys.create(args()),
  spend_keys_list: (lava) => lava.spendKeys.list(args()),
  spend_keys_rotate: (lava) => lava.spendKeys.rotate(idFrom('spend_key_id')),
  secret_keys_create: (lava) => lava.secretKeys.create(args()),
  webhooks_create: (lava) => lava.webhooks.create(args()),

  // Extras: the rest of the in-scope management calls, same conventions.
  customers_update: (lava) => lava.customers.update(idFrom('customer_id'), params()),
  customers_delete: (lava) => lava.customers.delete(idFrom('customer_id')),
  customers_subscription: (lava) => lava.customers.getSubscription(idFrom('customer_id')),
  meters_get: (lava) => lava.meters.retrieve(idFrom('meter_id')),
  meters_update: (lava) => lava.meters.update(idFrom('meter_id'), params()),
  meters_delete: (lava) => lava.meters.delete(idFrom('meter_id')),
  spend_keys_get: (lava) => lava.spendKeys.retrieve(idFrom('spend_key_id')),
  spend_keys_update: (lava) => lava.spendKeys.update(idFrom('spend_key_id'), params()),
  spend_keys_revoke: (lava) => lava.spendKeys.revoke(idFrom('spend_key_id')),
  secret_keys_list: (lava) => lava.secretKeys.list(args()),
  secret_keys_delete: (lava) => lava.secretKeys.delete(idFrom('secret_key_id')),
  webhooks_list: (lava) => lava.webhooks.list(args()),
  webhooks_get: (lava) => lava.webhooks.retrieve(idFrom('webhook_id')),
  webhooks_update: (lava) => lava.webhooks.update(idFrom('webhook_id'), params()),
  webhooks_delete: (lava) => lava.webhooks.delete(idFrom('webhook_id')),
};

// "Lava API Error: 404 Not Found - {...}" -> 404
function errorLine(err) {
  const line = { error: err?.message ?? String(err) };
  const match = /^Lava API Error: (\d{3}) /.exec(line.error);
  if (match) line.status = Number(match[1]);
  if (err?.cause) line.cause = err.cause.message ?? String(err.cause);
  return line;
}

async function main() {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) {
    emit({ error: `unknown scenario: ${name}`, scenarios: Object.keys(scenarios) });
    process.exitCode = 2;
    return;
  }
  if (!env.BASE_URL) {
    // Without it the SDK would talk to Lava's production API.
    emit({ error: 'BASE_URL is required (e.g. http://127.0.0.1:8080/v1/)' });
    process.exitCode = 2;
    return;
  }

  const timeoutMs = Number(env.SDK_CHECK_TIMEOUT_MS ?? 30000);
  const watchdog = setTimeout(() => {
    emit({ error: `sdk_check timed out after ${timeoutMs} ms` });
    process.exit(1);
  }, timeoutMs);

  try {
    const lava = new Lava(env.LAVA_SECRET_KEY, { baseUrl: env.BASE_URL });
    emit(await scenario(lava));
  } catch (err) {
    emit(errorLine(err));
  } finally {
    clearTimeout(watchdog);
  }
}

await main();
