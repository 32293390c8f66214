import { test } from "node:test";
import assert from "node:assert/strict";
import { Redcast } from "../redcast.mjs";
import { makeFakeWebSocket, flush, fixedRandom } from "../test-support/fakes.mjs";

// random = 0.5 makes every backoff delay exactly half its cap:
// attempt 0 -> 250 ms, 1 -> 500 ms, 2 -> 1000 ms, 3 -> 2000 ms ...
function setup(t, opts = {}) {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const WS = makeFakeWebSocket();
  const rc = new Redcast("ws://example.test", { WebSocket: WS, random: fixedRandom(0.5), ...opts });
  const states = [];
  const errors = [];
  const closes = [];
  rc.on("state", (s) => states.push(s));
  rc.on("error", (e) => errors.push(e));
  rc.on("close", (c) => closes.push(c));
  t.after(() => rc.close());
  return { rc, WS, states, errors, closes, tick: (ms) => t.mock.timers.tick(ms) };
}

/** Open the latest socket and ack its resubscribe frame, as a healthy server would. */
function openAndAck(WS) {
  const ws = WS.last;
  ws.open();
  for (const f of ws.frames()) {
    if (f.type === "subscribe") ws.receive({ type: "subscribed", id: f.id, channels: f.channels });
    if (f.type === "ping") ws.receive({ type: "pong", id: f.id });
  }
  return ws;
}

test("connects to /ws offering the redcast.v1 subprotocol", (t) => {
  const { WS, rc } = setup(t);
  assert.equal(WS.instances.length, 1);
  assert.equal(WS.last.url, "ws://example.test/ws");
  assert.deepEqual(WS.last.protocols, ["redcast.v1"]);
  assert.equal(rc.state, "connecting");
  WS.last.open();
  assert.equal(rc.state, "open");
});

test("token goes in the bearer.<token> subprotocol, after redcast.v1", (t) => {
  const { WS } = setup(t, { token: "abc.def-ghi" });
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.abc.def-ghi"]);
  assert.equal(WS.last.url, "ws://example.test/ws");
});

test("a token that is not a valid subprotocol value falls back to ?token=", (t) => {
  const { WS } = setup(t, { token: "a/b+c==" });
  assert.deepEqual(WS.last.protocols, ["redcast.v1"]);
  assert.equal(new URL(WS.last.url).searchParams.get("token"), "a/b+c==");
});

test("getToken is asked for the initial token when none is given", async (t) => {
  const { WS } = setup(t, { getToken: async () => "t1" });
  assert.equal(WS.instances.length, 0, "waits for the token");
  await flush();
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.t1"]);
});

test("subscriptions made before open go out in one frame on open", async (t) => {
  const { rc, WS } = setup(t);
  rc.subscribe("a", () => {});
  rc.subscribe("b", () => {});
  await flush();
  assert.equal(WS.last.sent.length, 0, "nothing can be sent before open");
  WS.last.open();
  const subs = WS.last.frames().filter((f) => f.type === "subscribe");
  assert.equal(subs.length, 1);
  assert.deepEqual(subs[0].channels, ["a", "b"]);
  assert.equal(typeof subs[0].id, "string");
});

test("after a reconnect every channel is resubscribed in ONE frame", async (t) => {
  const { rc, WS, tick } = setup(t);
  openAndAck(WS);
  for (const c of ["a", "b", "c"]) rc.subscribe(c, () => {});
  await flush();
  assert.equal(WS.last.frames().filter((f) => f.type === "subscribe").length, 1, "batched while open too");
  WS.last.serverClose(1001, "going away");
  assert.equal(rc.state, "reconnecting");
  tick(250);
  assert.equal(WS.instances.length, 2);
  WS.last.open();
  const frames = WS.last.frames();
  assert.equal(frames.length, 1);
  assert.equal(frames[0].type, "subscribe");
  assert.deepEqual(frames[0].channels.sort(), ["a", "b", "c"]);
});

test("server subscribe only for the first handler, unsubscribe only for the last", async (t) => {
  const { rc, WS } = setup(t);
  const ws = openAndAck(WS);
  const got = [];
  const h1 = rc.subscribe("orders.42", (data, ch) => got.push(["h1", data, ch]));
  const h2 = rc.subscribe("orders.42", (data, ch) => got.push(["h2", data, ch]));
  await flush();
  const count = (type) => ws.frames().filter((f) => f.type === type).length;
  assert.equal(count("subscribe"), 1);

  ws.receive({ type: "message", channel: "orders.42", data: { total: 3 } });
  assert.deepEqual(got, [["h1", { total: 3 }, "orders.42"], ["h2", { total: 3 }, "orders.42"]]);

  h1.unsubscribe();
  h1.unsubscribe(); // idempotent
  await flush();
  assert.equal(count("unsubscribe"), 0, "h2 still listens");
  h2.unsubscribe();
  await flush();
  const unsub = ws.frames().filter((f) => f.type === "unsubscribe");
  assert.equal(unsub.length, 1);
  assert.deepEqual(unsub[0].channels, ["orders.42"]);
  assert.deepEqual(rc.channels, []);
});

test("subscribe + unsubscribe in the same tick sends nothing", async (t) => {
  const { rc, WS } = setup(t);
  const ws = openAndAck(WS);
  const before = ws.sent.length;
  rc.subscribe("x", () => {}).unsubscribe();
  await flush();
  assert.equal(ws.sent.length, before);
});

test("a throwing handler does not stop the others", (t) => {
  const { rc, WS } = setup(t);
  const ws = openAndAck(WS);
  const original = console.error;
  console.error = () => {};
  t.after(() => { console.error = original; });
  let second = 0;
  rc.subscribe("a", () => { throw new Error("boom"); });
  rc.subscribe("a", () => second++);
  ws.receive({ type: "message", channel: "a", data: "s" });
  assert.equal(second, 1);
});

for (const code of [1001, 4008, 4001, 1011, 1006]) {
  test(`close ${code} reconnects after the backoff delay`, (t) => {
    const { rc, WS, closes, tick } = setup(t);
    openAndAck(WS);
    WS.last.serverClose(code);
    assert.equal(rc.state, "reconnecting");
    assert.deepEqual(closes, [{ code, reason: "", willReconnect: true }]);
    tick(249);
    assert.equal(WS.instances.length, 1, "not before the jittered delay");
    tick(1);
    assert.equal(WS.instances.length, 2);
    WS.last.open();
    assert.equal(rc.state, "open");
  });
}

test("1008 without getToken: no reconnect loop, state closed", (t) => {
  const { rc, WS, errors, closes, tick } = setup(t, { token: "bad" });
  openAndAck(WS);
  WS.last.serverClose(1008, "forbidden origin");
  assert.equal(rc.state, "closed");
  tick(10 * 60 * 1000);
  assert.equal(WS.instances.length, 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "policy_violation");
  assert.equal(errors[0].closeCode, 1008);
  assert.equal(closes.at(-1).willReconnect, false);
});

test("1008 with getToken: reconnects with the fresh token", async (t) => {
  let n = 0;
  const { rc, WS, tick } = setup(t, { token: "old", getToken: async () => `fresh${++n}` });
  openAndAck(WS);
  WS.last.serverClose(1008, "bad token");
  tick(250);
  await flush();
  assert.equal(WS.instances.length, 2);
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.fresh1"]);
  WS.last.open();
  assert.equal(rc.state, "open");
});

test("1008 with getToken that cannot produce a new token: stops", async (t) => {
  const { rc, WS, errors, tick } = setup(t, { token: "same", getToken: async () => "same" });
  openAndAck(WS);
  WS.last.serverClose(1008);
  tick(250);
  await flush();
  assert.equal(rc.state, "closed");
  assert.equal(WS.instances.length, 1);
  assert.equal(errors.at(-1).code, "policy_violation");
  tick(60000);
  assert.equal(WS.instances.length, 1);
});

test("repeated 1008 with fresh tokens still backs off", async (t) => {
  let n = 0;
  const { WS, tick } = setup(t, { token: "t0", getToken: () => `t${++n}` });
  WS.last.serverClose(1008); // attempt 0 -> 250 ms
  tick(250); await flush();
  assert.equal(WS.instances.length, 2);
  WS.last.serverClose(1008); // attempt 1 -> 500 ms
  tick(499); await flush();
  assert.equal(WS.instances.length, 2);
  tick(1); await flush();
  assert.equal(WS.instances.length, 3);
});

test("4003 token expired: getToken then reconnect", async (t) => {
  const { rc, WS, tick } = setup(t, { token: "old", getToken: () => Promise.resolve("new") });
  openAndAck(WS);
  WS.last.serverClose(4003, "token expired");
  tick(250);
  await flush();
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.new"]);
  assert.equal(rc.state, "reconnecting");
});

test("4003 without getToken: stops with token_expired", (t) => {
  const { rc, errors } = setup(t, { token: "old" });
  rc._conn.socket.open();
  rc._conn.socket.serverClose(4003);
  assert.equal(rc.state, "closed");
  assert.equal(errors[0].code, "token_expired");
});

test("getToken failure is retried with backoff", async (t) => {
  let calls = 0;
  const { WS, errors, tick } = setup(t, {
    getToken: async () => { if (++calls === 1) throw new Error("auth down"); return "ok"; },
  });
  await flush();
  assert.equal(errors[0].code, "token_error");
  assert.equal(WS.instances.length, 0);
  tick(250);
  await flush();
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.ok"]);
});

test("4029 rate limited: reconnects with at least attempt-3 backoff", (t) => {
  const { WS, tick } = setup(t);
  openAndAck(WS);
  WS.last.serverClose(4029);
  tick(1999);
  assert.equal(WS.instances.length, 1);
  tick(1);
  assert.equal(WS.instances.length, 2);
});

test("backoff grows while attempts fail and resets after the subscribed ack", async (t) => {
  const { rc, WS, tick } = setup(t);
  rc.subscribe("a", () => {});
  // Three attempts that never open: 250, 500, 1000 ms.
  for (const delay of [250, 500, 1000]) {
    WS.last.fail();
    tick(delay - 1);
    const n = WS.instances.length;
    tick(1);
    assert.equal(WS.instances.length, n + 1, `next attempt after ${delay} ms`);
  }
  // Open but never acked: not yet proven healthy, so the next delay keeps growing.
  WS.last.open();
  WS.last.serverClose(1011);
  tick(1999);
  assert.equal(WS.instances.length, 4);
  tick(1);
  assert.equal(WS.instances.length, 5);
  // Healthy session (subscribed ack) resets it.
  openAndAck(WS);
  WS.last.serverClose(1001);
  tick(250);
  assert.equal(WS.instances.length, 6);
});

test("heartbeat: ping every interval; silence after it closes and reconnects", (t) => {
  const { rc, WS, closes, tick } = setup(t, { heartbeatInterval: 1000, heartbeatTimeout: 300 });
  const ws = openAndAck(WS);
  const pingsBefore = ws.frames().filter((f) => f.type === "ping").length;
  tick(1000);
  const pings = ws.frames().filter((f) => f.type === "ping");
  assert.equal(pings.length, pingsBefore + 1);
  assert.match(pings.at(-1).id, /^hb-\d+$/);

  // Any frame (not only the pong) counts as a sign of life.
  tick(200);
  ws.receive({ type: "message", channel: "zzz", data: 1 });
  tick(200);
  assert.equal(rc.state, "open");

  // Next heartbeat goes unanswered.
  tick(600); // t = 2000: second ping
  tick(299);
  assert.equal(rc.state, "open");
  tick(1);
  assert.equal(rc.state, "reconnecting");
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "heartbeat timeout" });
  assert.equal(closes.at(-1).code, 4000);
  tick(250);
  assert.equal(WS.instances.length, 2);
});

test("heartbeatInterval 0 disables heartbeats", (t) => {
  const { WS, tick } = setup(t, { heartbeatInterval: 0 });
  const ws = openAndAck(WS);
  const n = ws.sent.length;
  tick(10 * 60 * 1000);
  assert.equal(ws.sent.length, n);
});

test("publish resolves on the published ack matching its id", async (t) => {
  const { rc, WS } = setup(t);
  const ws = openAndAck(WS);
  const p1 = rc.publish("a", { x: 1 });
  const p2 = rc.publish("a", "two");
  const [f1, f2] = ws.frames().filter((f) => f.type === "publish");
  assert.deepEqual({ ...f1, id: undefined }, { type: "publish", channel: "a", data: { x: 1 }, id: undefined });
  assert.notEqual(f1.id, f2.id);
  ws.receive({ type: "published", id: f2.id });
  ws.receive({ type: "published", id: f1.id });
  assert.equal(await p1, undefined);
  assert.equal(await p2, undefined);
});

test("publish rejects with the server's error code; no duplicate error event", async (t) => {
  const { rc, WS, errors } = setup(t);
  const ws = openAndAck(WS);
  const p = rc.publish("secret", 1);
  const f = ws.frames().find((x) => x.type === "publish");
  ws.receive({ type: "error", id: f.id, code: "forbidden", message: "nope" });
  await assert.rejects(p, (err) => err.code === "forbidden" && err.message === "nope");
  assert.equal(errors.length, 0);
});

test("publish: undefined data is sent as null; unserializable data rejects", async (t) => {
  const { rc, WS } = setup(t);
  const ws = openAndAck(WS);
  rc.publish("a").catch(() => {}); // never acked; rejected by close() in teardown
  assert.equal(ws.frames().at(-1).data, null);
  await assert.rejects(rc.publish("a", 10n), { code: "invalid_data" });
});

test("publish times out without an ack", async (t) => {
  const { rc, tick, WS } = setup(t, { requestTimeout: 1000 });
  openAndAck(WS);
  const p = rc.publish("a", 1);
  tick(1000);
  await assert.rejects(p, { code: "timeout" });
});

test("queue: publishes before open are queued up to maxQueue, then queue_full", async (t) => {
  const { rc, WS } = setup(t, { maxQueue: 2 });
  rc.subscribe("a", () => {});
  const p1 = rc.publish("a", 1);
  const p2 = rc.publish("a", 2);
  await assert.rejects(rc.publish("a", 3), { code: "queue_full" });
  await flush();
  const ws = WS.last;
  ws.open();
  const frames = ws.frames();
  assert.deepEqual(frames.map((f) => f.type), ["subscribe", "publish", "publish"], "subscriptions restored first");
  assert.deepEqual(frames.slice(1).map((f) => f.data), [1, 2]);
  for (const f of frames.slice(1)) ws.receive({ type: "published", id: f.id });
  await Promise.all([p1, p2]);
});

test("queued publishes survive a failed attempt and go out on the next open", async (t) => {
  const { rc, WS, tick } = setup(t);
  const p = rc.publish("a", "later");
  WS.last.fail();
  tick(250);
  const ws = WS.last;
  ws.open();
  const f = ws.frames().find((x) => x.type === "publish");
  assert.equal(f.data, "later");
  ws.receive({ type: "published", id: f.id });
  await p;
});

test("in-flight publish is rejected with not_connected when the socket drops (never resent)", async (t) => {
  const { rc, WS, tick } = setup(t);
  openAndAck(WS);
  const p = rc.publish("a", 1);
  WS.last.serverClose(1006);
  await assert.rejects(p, { code: "not_connected" });
  tick(250);
  WS.last.open();
  assert.equal(WS.last.frames().filter((f) => f.type === "publish").length, 0);
});

test("close() rejects queued publishes, stops reconnecting; later publish rejects closed", async (t) => {
  const { rc, WS, states, tick } = setup(t);
  const queued = rc.publish("a", 1);
  rc.close();
  await assert.rejects(queued, { code: "closed" });
  await assert.rejects(rc.publish("a", 2), { code: "closed" });
  assert.equal(rc.state, "closed");
  assert.deepEqual(WS.last.closedWith, { code: 1000, reason: "client closed" });
  tick(60000);
  assert.equal(WS.instances.length, 1);
  assert.deepEqual(states, ["closed"]); // "connecting" was emitted before we listened
});

test("state sequence across a reconnect", (t) => {
  const { rc, WS, states, tick } = setup(t);
  openAndAck(WS);
  WS.last.serverClose(1001);
  tick(250);
  openAndAck(WS);
  rc.close();
  assert.deepEqual(states, ["open", "reconnecting", "open", "closed"]);
});

test("autoConnect: false waits for connect(); subscriptions and publishes made before are kept", async (t) => {
  const { rc, WS } = setup(t, { autoConnect: false });
  rc.subscribe("a", () => {});
  const p = rc.publish("a", 1);
  await flush();
  assert.equal(WS.instances.length, 0);
  assert.equal(rc.state, "closed");
  rc.connect();
  assert.equal(rc.state, "connecting");
  const ws = WS.last;
  ws.open();
  const f = ws.frames().find((x) => x.type === "publish");
  ws.receive({ type: "published", id: f.id });
  await p;
});

test("forbidden subscribe: error event with channels; channel is not retried", async (t) => {
  const { rc, WS, errors, tick } = setup(t);
  const ws = openAndAck(WS);
  rc.subscribe("ok", () => {});
  rc.subscribe("admin", () => {});
  await flush();
  const f = ws.frames().filter((x) => x.type === "subscribe").at(-1);
  ws.receive({ type: "error", id: f.id, code: "forbidden", message: "no", channels: ["admin"] });
  ws.receive({ type: "subscribed", id: f.id, channels: ["ok"] });
  assert.deepEqual(errors, [{ code: "forbidden", message: "no", id: f.id, channels: ["admin"] }]);
  assert.deepEqual(rc.channels, ["ok"]);
  ws.serverClose(1001);
  tick(250);
  WS.last.open();
  assert.deepEqual(WS.last.frames()[0].channels, ["ok"]);
});

test("invalid and forbidden errors for one subscribe, then its ack: both dropped, not retried", async (t) => {
  // What the server sends for a partially accepted subscribe (docs/protocol.md).
  const { rc, WS, errors, tick } = setup(t);
  const ws = openAndAck(WS);
  rc.subscribe("ok", () => {});
  rc.subscribe("bad name", () => {});
  rc.subscribe("secret.x", () => {});
  await flush();
  const f = ws.frames().filter((x) => x.type === "subscribe").at(-1);
  assert.deepEqual(f.channels, ["ok", "bad name", "secret.x"]);
  ws.receive({ type: "error", id: f.id, channels: ["bad name"], code: "invalid_channel", message: "invalid" });
  ws.receive({ type: "error", id: f.id, channels: ["secret.x"], code: "forbidden", message: "not allowed to subscribe" });
  ws.receive({ type: "subscribed", id: f.id, channels: ["ok"] });
  assert.deepEqual(errors.map((e) => [e.code, e.id, e.channels]), [
    ["invalid_channel", f.id, ["bad name"]],
    ["forbidden", f.id, ["secret.x"]],
  ]);
  assert.deepEqual(rc.channels, ["ok"]);
  ws.serverClose(1001);
  tick(250);
  WS.last.open();
  assert.deepEqual(WS.last.frames()[0].channels, ["ok"]);
});

test("a subscribe whose channels are all refused leaves nothing pending", async (t) => {
  const { rc, WS, errors } = setup(t);
  const ws = openAndAck(WS);
  rc.subscribe("secret.x", () => {});
  await flush();
  const f = ws.frames().at(-1);
  ws.receive({ type: "error", id: f.id, channels: ["secret.x"], code: "forbidden", message: "no" });
  assert.equal(rc._pending.size, 0);
  assert.deepEqual(rc.channels, []);
  assert.equal(errors.length, 1);
});

test("transient subscribe error (rate_limited) is retried on the same connection", async (t) => {
  const { rc, WS, errors, tick } = setup(t);
  const ws = openAndAck(WS);
  rc.subscribe("a", () => {});
  await flush();
  const f = ws.frames().at(-1);
  ws.receive({ type: "error", id: f.id, code: "rate_limited", message: "slow down" });
  assert.equal(errors[0].code, "rate_limited");
  assert.deepEqual(errors[0].channels, ["a"]);
  tick(250);
  const retry = ws.frames().at(-1);
  assert.equal(retry.type, "subscribe");
  assert.deepEqual(retry.channels, ["a"]);
  assert.notEqual(retry.id, f.id);
});

test("refreshToken sends a refresh frame, resolves on refreshed, and is used on the next connect", async (t) => {
  const { rc, WS, tick, errors } = setup(t, { token: "t1" });
  const ws = openAndAck(WS);
  let done = false;
  const p = rc.refreshToken("t2").then(() => { done = true; });
  await flush();
  const f = ws.frames().at(-1);
  assert.equal(f.type, "refresh");
  assert.equal(f.token, "t2");
  assert.equal(typeof f.id, "string");
  assert.equal(done, false, "waits for the server's answer");
  ws.receive({ type: "refreshed", id: f.id });
  await p;
  assert.deepEqual(errors, []);
  ws.serverClose(1001);
  tick(250);
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.t2"]);
});

test("refreshToken rejects with invalid_token and keeps the previous token", async (t) => {
  const { rc, WS, tick, errors } = setup(t, { token: "t1" });
  const ws = openAndAck(WS);
  const p = rc.refreshToken("t2");
  await flush();
  const f = ws.frames().at(-1);
  ws.receive({ type: "error", id: f.id, code: "invalid_token", message: "the new token is for another subject" });
  await assert.rejects(p, (e) => e.code === "invalid_token");
  assert.deepEqual(errors, [], "reported through the promise only");
  ws.serverClose(1001);
  tick(250);
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.t1"]);
});

test("refreshToken while offline resolves at once; the token is used on connect", async (t) => {
  const { rc, WS, tick } = setup(t, { token: "t1" });
  WS.last.fail();
  await rc.refreshToken("t2");
  tick(250);
  assert.deepEqual(WS.last.protocols, ["redcast.v1", "bearer.t2"]);
});

test("non-JSON, binary and unknown frames are ignored", (t) => {
  const { rc, WS } = setup(t);
  const ws = openAndAck(WS);
  let got = 0;
  rc.subscribe("a", () => got++);
  ws.receive("not json");
  ws.onmessage({ data: new ArrayBuffer(2) });
  ws.receive({ type: "from-the-future" });
  ws.receive({ type: "message", channel: "a", data: "plain string payload" });
  assert.equal(got, 1);
  assert.equal(rc.state, "open");
});
