// A chat backend in Node talking to MemoryOS over HTTP: no dependencies, Node 18+ (built-in fetch).
//
//   MEMORYOS_API_URL=http://127.0.0.1:8080 MEMORYOS_API_KEY=... node examples/node/chat_backend.mjs
//
// It publishes a conversation (one bulk request, then one turn per request as a live chat would),
// retrieves the memory context for a new message and prints the prompt block to put in front of the
// model. Errors come back as {error, detail: [{field, message}]}; 503 means Redis is briefly away:
// the same request is retried after Retry-After, and turn ids make a repeated publish harmless.

const API_URL = (process.env.MEMORYOS_API_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
const API_KEY = process.env.MEMORYOS_API_KEY;
const USER = process.env.MEMORYOS_USER ?? "node-demo-user";

class MemoryError extends Error {
  constructor(status, body) {
    const fields = (body.detail ?? []).map((d) => `${d.field}: ${d.message}`).join("; ");
    super(`HTTP ${status}: ${body.error ?? "error"}${fields ? ` (${fields})` : ""}`);
    this.status = status;
    this.body = body;
  }
}

class MemoryClient {
  constructor(baseUrl, apiKey, { retries = 3 } = {}) {
    if (!apiKey) throw new Error("set MEMORYOS_API_KEY to a key from the server's MEMORYOS_API_KEYS");
    this.baseUrl = baseUrl;
    this.headers = { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" };
    this.retries = retries;
  }

  async request(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(this.baseUrl + path, {
        method,
        headers: this.headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (response.status === 503 && attempt < this.retries) {
        const wait = Number(response.headers.get("retry-after") ?? "1");
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        continue; // same body, same turn ids: a turn stored before the failure is not stored twice
      }
      const text = await response.text();
      const parsed = text ? JSON.parse(text) : {};
      if (!response.ok) throw new MemoryError(response.status, parsed);
      return parsed;
    }
  }

  // One turn or an array of turns; returns their turn ids (202 Accepted: workers do the rest).
  publish(userId, turns) {
    return this.request("POST", `/v1/users/${encodeURIComponent(userId)}/turns`, turns);
  }

  retrieve(userId, query, { topK, assistantId } = {}) {
    const body = { query };
    if (topK !== undefined) body.top_k = topK;
    if (assistantId !== undefined) body.assistant_id = assistantId;
    return this.request("POST", `/v1/users/${encodeURIComponent(userId)}/retrieve`, body);
  }

  profile(userId) {
    return this.request("GET", `/v1/users/${encodeURIComponent(userId)}/profile`);
  }
}

function check(condition, message) {
  if (!condition) {
    console.error(`FAILED: ${message}`);
    process.exit(1);
  }
}

async function main() {
  const memory = new MemoryClient(API_URL, API_KEY);
  const run = Date.now().toString(36);

  // An earlier conversation, imported in one request; turn_id makes it safe to send again.
  const history = [
    ["I just adopted a cat called Pimenta", "Lovely name! How old is she?"],
    ["She is two, and she loves cardboard boxes", "Cats and boxes, a classic."],
    ["I work night shifts at the hospital", "That must be tiring; take care of your sleep."],
  ].map(([user_input, agent_response], i) => ({
    user_input,
    agent_response,
    turn_id: `node-${run}-${i}`,
    metadata: { channel: "node-example" },
  }));
  const bulk = await memory.publish(USER, history);
  check(bulk.turn_ids.length === history.length, "bulk publish returned every turn id");
  console.log(`published ${bulk.turn_ids.length} turns in one request for ${bulk.user_id}`);

  // A live exchange: one turn per request.
  const live = await memory.publish(USER, {
    user_input: "Any tips for keeping Pimenta busy while I am at work?",
    agent_response: "Puzzle feeders and a window perch work well.",
    turn_id: `node-${run}-live`,
  });
  check(live.turn_ids[0] === `node-${run}-live`, "single publish echoed the turn id");

  // Sending the same turn again (a retry after a timeout, say) stores nothing new.
  await memory.publish(USER, history[0]);

  // Bad input is refused with the field named, and nothing is stored.
  try {
    await memory.publish(USER, { user_input: "", agent_response: "" });
    check(false, "a blank turn should be refused");
  } catch (error) {
    check(error instanceof MemoryError && error.status === 422, `blank turn refused with 422, got ${error}`);
    console.log(`refused as expected: ${error.message}`);
  }

  // Before answering the next message, ask memory for context.
  const context = await memory.retrieve(USER, "What is my cat's name?", { topK: 5 });
  const recent = context.short_term.map((page) => page.turn_id);
  for (const turn of [...history, { turn_id: `node-${run}-live` }]) {
    check(recent.includes(turn.turn_id), `turn ${turn.turn_id} is in short-term memory`);
  }
  check(recent.length === new Set(recent).size, "no turn twice");
  check(context.prompt.includes("Pimenta"), "the prompt carries what the user said");
  console.log(`retrieved ${context.short_term.length} recent turns and ${context.pages.length} older pages ` +
              `(${context.prompt_tokens} prompt tokens)`);
  console.log("--- memory block for the model's prompt ---");
  console.log(context.prompt);

  const profile = await memory.profile(USER);
  console.log(`profile so far: ${profile.profile ? profile.profile.summary : "(built in the background)"}`);
  console.log("OK");
}

main().catch((error) => {
  console.error(error instanceof MemoryError ? error.message : error);
  process.exit(1);
});
