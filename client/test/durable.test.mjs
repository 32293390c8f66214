// Durable channels in the client: positions tracked from acks and messages,
// `since` on every resubscribe, the "recovery" event, duplicate dropping and
// history() over WebSocket.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Redcast } from "../redcast.mjs";
import { makeFakeWebSocket, flush, fixedRandom } from "../test-support/fakes.mjs";

const E1 = "18c2f-3a1";
const E2 = "18c30-001";

function setup(t, opts = {}) {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const WS = makeFakeWebSocket();
  const rc = new Redcast("ws://example.test", { WebSocket: WS, random: fixedRandom(0.5), ...opts });
  const errors = [];
  const recoveries = [];
  rc.on("error", (e) => errors.push(e));
  rc.on("recovery", (r) => recoveries.push(r));
  t.after(() => rc.close());
  return { rc, WS, errors, recoveries, tick: (ms) => t.mock.timers.tick(ms) };
}

const subscribes = (ws) => ws.frames().filter((f) => f.type === "subscribe");

/** Subscribes `channels` on an open socket and acks with `positions`. */
async function subscribeDurable(rc, WS, channels, positions, got = []) {
  for (const c of channels) rc.subscribe(c, (data, ch, pos) => got.push([ch, data, pos]));
  WS.last.open();
  await flush();
  const f = subscribes(WS.last).at(-1);
  WS.last.receive({ type: "subscribed", id: f.id, channels: f.channels, positions });
  return got;
}

/** Drops the socket, lets the backoff run, opens the new one: returns it. */
function reconnect(WS, tick) {
  WS.last.serverClose(1006);
  tick(30_000);
  WS.last.open();
  return WS.last;
}

const msg = (channel, offset, data = offset, epoch = E1) => ({ type: "message", channel, data, offset, epoch });

test("positions come from the ack, then from each message; handlers get the position", async (t) => {
  const { rc, WS } = setup(t);
  const got = await subscribeDurable(rc, WS, ["c", "plain"], { c: { offset: 41, epoch: E1 } });
  assert.deepEqual(rc.position("c"), { offset: 41, epoch: E1 });
  assert.equal(rc.position("plain"), undefined);
  WS.last.receive(msg("c", 42, "x"));
  WS.last.receive({ type: "message", channel: "plain", data: "y" });
  assert.deepEqual(rc.position("c"), { offset: 42, epoch: E1 });
  assert.deepEqual(got, [["c", "x", { offset: 42, epoch: E1 }], ["plain", "y", undefined]]);
  // A copy: the caller cannot move the client's position.
  rc.position("c").offset = 0;
  assert.equal(rc.position("c").offset, 42);
});

test("every reconnect resumes in the one subscribe frame, with since for known positions only", async (t) => {
  const { rc, WS, tick } = setup(t);
  await subscribeDurable(rc, WS, ["c", "d", "plain"], { c: { offset: 41, epoch: E1 }, d: { offset: 0, epoch: E2 } });
  WS.last.receive(msg("c", 42));
  const ws = reconnect(WS, tick);
  const frames = subscribes(ws);
  assert.equal(frames.length, 1);
  assert.deepEqual(frames[0].channels.sort(), ["c", "d", "plain"]);
  assert.deepEqual(frames[0].since, { c: { offset: 42, epoch: E1 }, d: { offset: 0, epoch: E2 } });
});

test("no since on a first subscribe, nor when no channel is durable", async (t) => {
  const { rc, WS, tick } = setup(t);
  await subscribeDurable(rc, WS, ["plain"], undefined);
  assert.equal("since" in subscribes(WS.last)[0], false);
  const ws = reconnect(WS, tick);
  assert.equal("since" in subscribes(ws)[0], false);
});

test("recovered: the replay that follows the ack is delivered in order, then live messages", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  const got = await subscribeDurable(rc, WS, ["c"], { c: { offset: 41, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  // The ack's position is the top before the replay; our position must
  // stay at 41 or the replayed 42..44 would be taken for duplicates.
  ws.receive({ type: "subscribed", id: f.id, channels: ["c"], recovered: { c: true }, positions: { c: { offset: 44, epoch: E1 } } });
  assert.deepEqual(recoveries, [{ channel: "c", recovered: true }]);
  for (const n of [42, 43, 44, 45]) ws.receive(msg("c", n));
  assert.deepEqual(got.map(([, d]) => d), [42, 43, 44, 45]);
  assert.deepEqual(rc.position("c"), { offset: 45, epoch: E1 });
});

test("not recovered: a recovery event per channel; the position jumps to the ack's", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  const got = await subscribeDurable(rc, WS, ["c", "d"], { c: { offset: 41, epoch: E1 }, d: { offset: 5, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  ws.receive({
    type: "subscribed", id: f.id, channels: ["c", "d"],
    recovered: { c: false, d: true },
    positions: { c: { offset: 3, epoch: E2 }, d: { offset: 5, epoch: E1 } },
  });
  assert.deepEqual(recoveries, [
    { channel: "c", recovered: false, reason: "unrecoverable" },
    { channel: "d", recovered: true },
  ]);
  assert.deepEqual(rc.position("c"), { offset: 3, epoch: E2 });
  ws.receive(msg("c", 4, "live", E2));
  assert.deepEqual(got.at(-1), ["c", "live", { offset: 4, epoch: E2 }]);
});

test("a resumed channel missing from recovered counts as not recovered", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  await subscribeDurable(rc, WS, ["c"], { c: { offset: 1, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  ws.receive({ type: "subscribed", id: f.id, channels: ["c"], positions: { c: { offset: 9, epoch: E1 } } });
  assert.deepEqual(recoveries, [{ channel: "c", recovered: false, reason: "unrecoverable" }]);
  assert.deepEqual(rc.position("c"), { offset: 9, epoch: E1 });
});

test("duplicates are dropped: an offset at or below the last in the same epoch", async (t) => {
  const { rc, WS } = setup(t);
  const all = [];
  rc.on("message", (m) => all.push(m));
  const got = await subscribeDurable(rc, WS, ["c"], { c: { offset: 10, epoch: E1 } });
  for (const n of [10, 11, 11, 9, 12]) WS.last.receive(msg("c", n));
  assert.deepEqual(got.map(([, d]) => d), [11, 12]);
  assert.deepEqual(all.map((m) => m.offset), [11, 12]);
  assert.deepEqual(all[0], { channel: "c", data: 11, offset: 11, epoch: E1 });
  // A new epoch starts over: its offsets are not compared with the old ones.
  WS.last.receive(msg("c", 1, "fresh", E2));
  assert.deepEqual(got.at(-1), ["c", "fresh", { offset: 1, epoch: E2 }]);
  // Messages without a position (plain PUBLISH) are never dropped.
  WS.last.receive({ type: "message", channel: "c", data: "plain" });
  WS.last.receive({ type: "message", channel: "c", data: "plain" });
  assert.deepEqual(got.slice(-2).map(([, d]) => d), ["plain", "plain"]);
  assert.deepEqual(rc.position("c"), { offset: 1, epoch: E2 });
});

test("a skipped offset (lost live) drops that message and resumes from the last delivered one", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  const closes = [];
  rc.on("close", (c) => closes.push(c));
  const got = await subscribeDurable(rc, WS, ["c"], { c: { offset: 10, epoch: E1 } });
  const ws = WS.last;
  ws.receive(msg("c", 11));
  ws.receive(msg("c", 14)); // 12 and 13 never came
  assert.deepEqual(got.map(([, d]) => d), [11]);
  assert.equal(ws.closedWith.code, Redcast.GAP_CLOSE_CODE);
  assert.equal(closes[0].code, 4010);
  assert.equal(closes[0].willReconnect, true);
  assert.deepEqual(rc.position("c"), { offset: 11, epoch: E1 });
  ws.receive(msg("c", 15)); // the abandoned socket is not listened to any more
  tick(250);
  WS.last.open();
  const f = subscribes(WS.last)[0];
  assert.deepEqual(f.since, { c: { offset: 11, epoch: E1 } });
  WS.last.receive({ type: "subscribed", id: f.id, channels: ["c"], recovered: { c: true }, positions: { c: { offset: 14, epoch: E1 } } });
  for (const n of [12, 13, 14, 15]) WS.last.receive(msg("c", n));
  assert.deepEqual(got.map(([, d]) => d), [11, 12, 13, 14, 15]);
  assert.deepEqual(recoveries, [{ channel: "c", recovered: true }]);
});

test("a new epoch is taken as it comes from offset 1; from a later offset it is a gap", async (t) => {
  const { rc, WS, tick } = setup(t);
  const got = await subscribeDurable(rc, WS, ["c"], { c: { offset: 10, epoch: E1 } });
  WS.last.receive(msg("c", 1, "fresh", E2)); // the history expired, then a first publish
  assert.deepEqual(got.map(([, d]) => d), ["fresh"]);
  assert.equal(WS.instances.length, 1);
  WS.last.receive(msg("c", 4, "later", "18c31-002")); // another epoch, 1..3 missed
  assert.equal(WS.last.closedWith.code, 4010);
  assert.deepEqual(rc.position("c"), { offset: 1, epoch: E2 });
  tick(250);
  WS.last.open();
  assert.deepEqual(subscribes(WS.last)[0].since, { c: { offset: 1, epoch: E2 } });
});

test("the last handler's unsubscribe forgets the position", async (t) => {
  const { rc, WS, tick } = setup(t);
  const handler = () => {};
  const sub = rc.subscribe("c", handler);
  WS.last.open();
  await flush();
  const f = subscribes(WS.last)[0];
  WS.last.receive({ type: "subscribed", id: f.id, channels: ["c"], positions: { c: { offset: 7, epoch: E1 } } });
  assert.deepEqual(rc.position("c"), { offset: 7, epoch: E1 });
  sub.unsubscribe();
  await flush();
  assert.equal(rc.position("c"), undefined);
  rc.subscribe("c", handler);
  const ws = reconnect(WS, tick);
  assert.equal("since" in subscribes(ws)[0], false);
});

test("invalid_position (ahead): that position is forgotten; the ack that follows starts it afresh", async (t) => {
  const { rc, WS, tick, recoveries, errors } = setup(t);
  const got = await subscribeDurable(rc, WS, ["c", "d", "plain"], { c: { offset: 4, epoch: E1 }, d: { offset: 2, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  // Redis lost recent writes: c's top (3) is below what the client saw (4).
  ws.receive({ type: "error", id: f.id, code: "invalid_position", message: "ahead", channels: ["c"] });
  assert.deepEqual(recoveries, [{ channel: "c", recovered: false, reason: "invalid_position" }]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "invalid_position");
  assert.deepEqual(errors[0].channels, ["c"]);
  assert.equal(rc.position("c"), undefined);
  ws.receive({
    type: "subscribed", id: f.id, channels: ["c", "d", "plain"],
    recovered: { c: false, d: true },
    positions: { c: { offset: 3, epoch: E1 }, d: { offset: 3, epoch: E1 } },
  });
  await flush();
  assert.equal(subscribes(ws).length, 1, "nothing is sent again: the channels are subscribed");
  assert.deepEqual(recoveries.slice(1), [{ channel: "d", recovered: true }], "one event per channel");
  assert.deepEqual(rc.position("c"), { offset: 3, epoch: E1 });
  assert.deepEqual(rc.channels.sort(), ["c", "d", "plain"], "no handler was dropped");
  ws.receive(msg("d", 3));
  ws.receive(msg("c", 4, "new"));
  assert.deepEqual(got.slice(-2).map(([c, d]) => [c, d]), [["d", 3], ["c", "new"]]);
});

test("not_durable (rule changed): the whole subscribe is sent again without that position", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  await subscribeDurable(rc, WS, ["c", "d"], { c: { offset: 4, epoch: E1 }, d: { offset: 2, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  ws.receive({ type: "error", id: f.id, code: "not_durable", message: "no history", channels: ["c"] });
  assert.deepEqual(recoveries, [{ channel: "c", recovered: false, reason: "not_durable" }]);
  await flush();
  const again = subscribes(ws);
  assert.equal(again.length, 2);
  assert.deepEqual(again[1].channels.sort(), ["c", "d"]);
  assert.deepEqual(again[1].since, { d: { offset: 2, epoch: E1 } });
  ws.receive({ type: "subscribed", id: again[1].id, channels: again[1].channels, recovered: { d: true }, positions: { d: { offset: 2, epoch: E1 } } });
  assert.deepEqual(recoveries.slice(1), [{ channel: "d", recovered: true }]);
  assert.deepEqual(rc.channels.sort(), ["c", "d"]);
});

test("not_durable without a channel list: every resumed channel loses its position", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  await subscribeDurable(rc, WS, ["c", "d"], { c: { offset: 4, epoch: E1 }, d: { offset: 2, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  ws.receive({ type: "error", id: f.id, code: "not_durable", message: "no history" });
  assert.deepEqual(recoveries.map((r) => [r.channel, r.recovered, r.reason]), [["c", false, "not_durable"], ["d", false, "not_durable"]]);
  await flush();
  const again = subscribes(ws)[1];
  assert.equal("since" in again, false);
  assert.deepEqual(rc.channels.sort(), ["c", "d"]);
});

test("forbidden on a resumed channel drops it, position included; the rest recovers", async (t) => {
  const { rc, WS, tick, recoveries } = setup(t);
  await subscribeDurable(rc, WS, ["c", "d"], { c: { offset: 4, epoch: E1 }, d: { offset: 2, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  ws.receive({ type: "error", id: f.id, code: "forbidden", message: "no", channels: ["c"] });
  ws.receive({ type: "subscribed", id: f.id, channels: ["d"], recovered: { d: true }, positions: { d: { offset: 3, epoch: E1 } } });
  assert.deepEqual(rc.channels, ["d"]);
  assert.equal(rc.position("c"), undefined);
  assert.deepEqual(recoveries, [{ channel: "d", recovered: true }]);
});

test("a rate-limited resume is retried with the same since", async (t) => {
  const { rc, WS, tick } = setup(t);
  await subscribeDurable(rc, WS, ["c"], { c: { offset: 4, epoch: E1 } });
  const ws = reconnect(WS, tick);
  const f = subscribes(ws)[0];
  ws.receive({ type: "error", id: f.id, code: "rate_limited", message: "slow down", channels: ["c"] });
  tick(30_000);
  const again = subscribes(ws);
  assert.equal(again.length, 2);
  assert.deepEqual(again[1].since, { c: { offset: 4, epoch: E1 } });
});

test("history resolves with the messages and position of its answer", async (t) => {
  const { rc, WS } = setup(t);
  WS.last.open();
  const p = rc.history("c", { limit: 2 });
  const f = WS.last.frames().find((x) => x.type === "history");
  assert.deepEqual({ ...f, id: undefined }, { type: "history", channel: "c", limit: 2, id: undefined });
  WS.last.receive({
    type: "history", id: f.id, channel: "c",
    messages: [{ offset: 40, data: "a" }, { offset: 41, data: { b: 1 } }],
    position: { offset: 41, epoch: E1 },
  });
  assert.deepEqual(await p, { messages: [{ offset: 40, data: "a" }, { offset: 41, data: { b: 1 } }], position: { offset: 41, epoch: E1 } });
  // History is a read: it does not move the live position.
  assert.equal(rc.position("c"), undefined);
});

test("history without limit sends none; errors reject with the server's code", async (t) => {
  const { rc, WS, errors } = setup(t);
  WS.last.open();
  const codes = ["not_durable", "forbidden", "history_unavailable", "invalid_field"];
  const ps = codes.map(() => rc.history("c"));
  const frames = WS.last.frames().filter((x) => x.type === "history");
  assert.equal("limit" in frames[0], false);
  frames.forEach((f, i) => WS.last.receive({ type: "error", id: f.id, code: codes[i], message: codes[i], channels: ["c"] }));
  for (const [i, p] of ps.entries()) await assert.rejects(p, { name: "RedcastError", code: codes[i] });
  assert.deepEqual(errors, [], "reported through the promise only");
  assert.deepEqual(rc.channels, [], "a forbidden history drops no subscription");
});

test("history: bad limit, timeout, queue while offline, retry after a drop, close", async (t) => {
  const { rc, WS, tick } = setup(t, { requestTimeout: 5000 });
  await assert.rejects(rc.history("c", { limit: 0 }), { code: "invalid_field" });
  await assert.rejects(rc.history("c", { limit: 1.5 }), { code: "invalid_field" });

  const early = rc.history("c"); // before open: queued
  WS.last.open();
  let f = WS.last.frames().find((x) => x.type === "history");
  assert.ok(f, "sent on open");
  // The connection drops before the answer: a read is asked again.
  WS.last.serverClose(1006);
  tick(250);
  WS.last.open();
  f = WS.last.frames().find((x) => x.type === "history");
  assert.ok(f, "asked again on the new connection");
  WS.last.receive({ type: "history", id: f.id, channel: "c", messages: [], position: { offset: 0, epoch: E1 } });
  assert.deepEqual(await early, { messages: [], position: { offset: 0, epoch: E1 } });

  const late = rc.history("c");
  tick(5000);
  await assert.rejects(late, { code: "timeout" });

  const pending = rc.history("c");
  rc.close();
  await assert.rejects(pending, { code: "closed" });
  await assert.rejects(rc.history("c"), { code: "closed" });
});

test("sseEventId writes positions in the server's id form", () => {
  assert.equal(
    Redcast.sseEventId({ "chat.1": { offset: 42, epoch: E1 }, "a b&c": { offset: 7, epoch: "x:y" } }),
    "chat.1=42%3A18c2f-3a1&a+b%26c=7%3Ax%3Ay",
  );
  assert.equal(Redcast.sseEventId({}), "");
});
