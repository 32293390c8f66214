import { test } from "node:test";
import assert from "node:assert/strict";
import { Redcast } from "../redcast.mjs";
import { makeFakeWebSocket, makeFakeEventSource, flush, fixedRandom } from "../test-support/fakes.mjs";

function setup(t, opts = {}) {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const WS = makeFakeWebSocket();
  const ES = makeFakeEventSource();
  const rc = new Redcast("https://example.test", {
    WebSocket: WS, EventSource: ES, random: fixedRandom(0.5), ...opts,
  });
  const errors = [];
  const transports = [];
  rc.on("error", (e) => errors.push(e));
  rc.on("transport", (x) => transports.push(x));
  t.after(() => rc.close());
  return { rc, WS, ES, errors, transports, tick: (ms) => t.mock.timers.tick(ms) };
}

test("sse: one EventSource with the channel list and token in the query", async (t) => {
  const { rc, ES, WS } = setup(t, { transport: "sse", token: "tok/en=" });
  const got = [];
  rc.subscribe("a", (d, c) => got.push([c, d]));
  rc.subscribe("b", (d, c) => got.push([c, d]));
  // With no channels no stream is held; the first subscribe opens one.
  assert.equal(rc.state, "open");
  assert.equal(ES.instances.length, 0);
  await flush();
  assert.equal(ES.instances.length, 1);
  const es = ES.last;
  const u = new URL(es.url);
  assert.equal(u.origin + u.pathname, "https://example.test/sse");
  assert.deepEqual(u.searchParams.getAll("channel"), ["a", "b"]);
  assert.equal(u.searchParams.get("token"), "tok/en=");
  es.open();
  es.receive({ type: "message", channel: "b", data: [1, 2] });
  assert.deepEqual(got, [["b", [1, 2]]]);
  assert.equal(WS.instances.length, 0);
});

test("sse: changing subscriptions reconnects the EventSource with the new list", async (t) => {
  const { rc, ES } = setup(t, { transport: "sse" });
  const a = rc.subscribe("a", () => {});
  await flush();
  ES.last.open();
  rc.subscribe("b", () => {});
  await flush();
  assert.equal(ES.instances.length, 2);
  assert.ok(ES.instances[0].closed);
  assert.deepEqual(ES.last.channels(), ["a", "b"]);
  ES.last.open();
  a.unsubscribe();
  await flush();
  assert.ok(ES.instances[1].closed);
  assert.deepEqual(ES.last.channels(), ["b"]);
});

test("sse: subscription change while the stream is still connecting is applied on open", async (t) => {
  const { rc, ES } = setup(t, { transport: "sse" });
  rc.subscribe("a", () => {});
  await flush();
  rc.subscribe("b", () => {}); // ES for ["a"] has not opened yet
  await flush();
  ES.last.open();
  assert.deepEqual(ES.last.channels(), ["a", "b"]);
  assert.equal(rc.state, "open");
});

test("sse: publish rejects with unsupported_transport", async (t) => {
  const { rc } = setup(t, { transport: "sse" });
  await assert.rejects(rc.publish("a", 1), { code: "unsupported_transport" });
});

test("sse: stream error reconnects with backoff and the same channels", async (t) => {
  const { rc, ES, tick } = setup(t, { transport: "sse" });
  rc.subscribe("a", () => {});
  await flush();
  ES.last.open();
  ES.last.fail();
  assert.equal(rc.state, "reconnecting");
  assert.ok(ES.instances[0].closed, "we own the retry, not the browser");
  tick(249);
  assert.equal(ES.instances.length, 1);
  tick(1);
  assert.equal(ES.instances.length, 2);
  assert.deepEqual(ES.last.channels(), ["a"]);
});

test("sse: error events are surfaced; forbidden channels are dropped", async (t) => {
  const { rc, ES, errors } = setup(t, { transport: "sse" });
  rc.subscribe("a", () => {});
  rc.subscribe("admin", () => {});
  await flush();
  ES.last.open();
  ES.last.receive({ type: "error", code: "forbidden", message: "no", channels: ["admin"] });
  assert.deepEqual(errors, [{ code: "forbidden", message: "no", channels: ["admin"] }]);
  await flush();
  assert.deepEqual(ES.last.channels(), ["a"]);
});

test("auto: two WebSocket failures before open fall back to SSE", async (t) => {
  const { rc, WS, ES, transports, tick } = setup(t, { transport: "auto" });
  const got = [];
  rc.subscribe("orders.42", (d) => got.push(d));
  const queued = rc.publish("orders.42", 1);
  WS.last.fail();
  tick(250);
  assert.equal(WS.instances.length, 2, "one retry over WebSocket first");
  assert.equal(ES.instances.length, 0);
  WS.last.fail();
  assert.equal(rc.transport, "sse");
  assert.deepEqual(transports, ["sse"]);
  await assert.rejects(queued, { code: "unsupported_transport" });
  assert.equal(ES.instances.length, 1, "falls back immediately");
  assert.deepEqual(ES.last.channels(), ["orders.42"]);
  ES.last.open();
  assert.equal(rc.state, "open");
  ES.last.receive({ type: "message", channel: "orders.42", data: { ok: true } });
  assert.deepEqual(got, [{ ok: true }]);
});

test("auto: a WebSocket that opened resets the failure count (no fallback)", (t) => {
  const { rc, WS, ES, tick } = setup(t, { transport: "auto" });
  WS.last.fail();
  tick(250);
  WS.last.open();
  WS.last.serverClose(1001);
  tick(10000);
  WS.last.fail();
  assert.equal(rc.transport, "websocket");
  assert.equal(ES.instances.length, 0);
});

test("auto: failures after open never trigger the fallback", (t) => {
  const { rc, WS, ES, tick } = setup(t, { transport: "auto" });
  for (let i = 0; i < 3; i++) {
    WS.last.open();
    WS.last.serverClose(1006);
    tick(30000);
  }
  assert.equal(rc.transport, "websocket");
  assert.equal(ES.instances.length, 0);
});

test("websocket mode never falls back", (t) => {
  const { rc, WS, ES, tick } = setup(t);
  for (let i = 0; i < 4; i++) {
    WS.last.fail();
    tick(30000);
  }
  assert.equal(rc.transport, "websocket");
  assert.equal(ES.instances.length, 0);
  assert.equal(WS.instances.length, 5);
});

// ---- durable channels over SSE --------------------------------------------

const E1 = "18c2f-3a1";
const E2 = "18c30-001";

test("sse: a new stream resumes through ?last_event_id= built from the tracked positions", async (t) => {
  const { rc, ES, tick } = setup(t, { transport: "sse" });
  const got = [];
  rc.subscribe("chat.1", (d) => got.push(d));
  rc.subscribe("plain", () => {});
  await flush();
  const first = ES.last;
  assert.equal(new URL(first.url).searchParams.has("last_event_id"), false, "nothing to resume yet");
  first.open();
  first.receive({ type: "subscribed", channels: ["chat.1", "plain"], positions: { "chat.1": { offset: 41, epoch: E1 } } });
  first.receive({ type: "message", channel: "chat.1", data: "x", offset: 42, epoch: E1 });
  first.receive({ type: "message", channel: "chat.1", data: "dup", offset: 42, epoch: E1 });
  assert.deepEqual(got, ["x"]);
  first.fail();
  tick(30_000);
  const second = ES.last;
  assert.notEqual(second, first);
  const id = new URL(second.url).searchParams.get("last_event_id");
  assert.equal(id, "chat.1=42%3A18c2f-3a1");
  assert.equal(new URLSearchParams(id).get("chat.1"), `42:${E1}`);
  assert.deepEqual(second.channels(), ["chat.1", "plain"]);
});

test("sse: the subscribed event's recovered map is reported per channel", async (t) => {
  const { rc, ES, tick } = setup(t, { transport: "sse" });
  const recoveries = [];
  rc.on("recovery", (r) => recoveries.push(r));
  const got = [];
  rc.subscribe("a", (d) => got.push(d));
  rc.subscribe("b", () => {});
  await flush();
  ES.last.open();
  ES.last.receive({ type: "subscribed", channels: ["a", "b"], positions: { a: { offset: 1, epoch: E1 }, b: { offset: 5, epoch: E1 } } });
  ES.last.fail();
  tick(30_000);
  ES.last.open();
  ES.last.receive({
    type: "subscribed", channels: ["a", "b"], recovered: { a: true, b: false },
    positions: { a: { offset: 3, epoch: E1 }, b: { offset: 0, epoch: E2 } },
  });
  for (const n of [2, 3]) ES.last.receive({ type: "message", channel: "a", data: n, offset: n, epoch: E1 });
  assert.deepEqual(got, [2, 3], "the replay is not mistaken for duplicates");
  assert.deepEqual(recoveries, [{ channel: "a", recovered: true }, { channel: "b", recovered: false, reason: "unrecoverable" }]);
  assert.deepEqual(rc.position("b"), { offset: 0, epoch: E2 });
});

test("sse: invalid_position forgets the positions but keeps the channels", async (t) => {
  const { rc, ES, tick, errors } = setup(t, { transport: "sse" });
  const recoveries = [];
  rc.on("recovery", (r) => recoveries.push(r));
  rc.subscribe("a", () => {});
  await flush();
  ES.last.open();
  ES.last.receive({ type: "subscribed", channels: ["a"], positions: { a: { offset: 9, epoch: E1 } } });
  ES.last.fail();
  tick(30_000);
  ES.last.open();
  ES.last.receive({ type: "error", code: "invalid_position", message: "ahead", channels: ["a"] });
  assert.deepEqual(recoveries, [{ channel: "a", recovered: false, reason: "invalid_position" }]);
  assert.equal(errors[0].code, "invalid_position");
  assert.deepEqual(rc.channels, ["a"]);
  assert.equal(rc.position("a"), undefined);
  ES.last.fail();
  tick(30_000);
  assert.equal(new URL(ES.last.url).searchParams.has("last_event_id"), false);
});

test("sse: history rejects with unsupported_transport", async (t) => {
  const { rc } = setup(t, { transport: "sse" });
  await assert.rejects(rc.history("a"), { name: "RedcastError", code: "unsupported_transport" });
});

test("sse: a skipped offset reopens the stream from the last delivered position", async (t) => {
  const { rc, ES, tick } = setup(t, { transport: "sse" });
  const got = [];
  rc.subscribe("a", (d) => got.push(d));
  await flush();
  ES.last.open();
  ES.last.receive({ type: "subscribed", channels: ["a"], positions: { a: { offset: 1, epoch: E1 } } });
  ES.last.receive({ type: "message", channel: "a", data: 2, offset: 2, epoch: E1 });
  ES.last.receive({ type: "message", channel: "a", data: 5, offset: 5, epoch: E1 });
  assert.deepEqual(got, [2]);
  assert.ok(ES.instances[0].closed);
  tick(250);
  assert.equal(ES.instances.length, 2);
  assert.equal(new URLSearchParams(new URL(ES.last.url).searchParams.get("last_event_id")).get("a"), `2:${E1}`);
});
