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
