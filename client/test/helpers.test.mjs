import { test } from "node:test";
import assert from "node:assert/strict";
import { Redcast } from "../redcast.mjs";

const { backoffDelay, endpoints, diffChannels, closePolicy, isSubprotocolSafe } = Redcast;
const cfg = { initial: 500, max: 30000 };

test("backoffDelay: bounded by min(max, initial * 2^attempt)", () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const cap = Math.min(cfg.max, cfg.initial * 2 ** attempt);
    assert.equal(backoffDelay(attempt, cfg, () => 0), 0, "lower bound is 0 (full jitter)");
    const top = backoffDelay(attempt, cfg, () => 0.999999);
    assert.ok(top < cap + 1 && top >= cap - 1, `attempt ${attempt}: ${top} ~ ${cap}`);
  }
});

test("backoffDelay: never exceeds max, even for huge attempts", () => {
  for (const attempt of [31, 100, 1e6, Infinity]) {
    const d = backoffDelay(attempt, cfg, () => 0.999999);
    assert.ok(Number.isFinite(d) && d <= cfg.max, `attempt ${attempt} gave ${d}`);
  }
});

test("backoffDelay: full jitter spreads over the whole window", () => {
  const cap = 4000; // attempt 3
  const samples = Array.from({ length: 2000 }, () => backoffDelay(3, cfg));
  assert.ok(samples.every((d) => d >= 0 && d < cap));
  assert.ok(Math.min(...samples) < cap * 0.1, "reaches near zero");
  assert.ok(Math.max(...samples) > cap * 0.9, "reaches near the cap");
});

test("backoffDelay: scales with the injected random", () => {
  assert.equal(backoffDelay(0, cfg, () => 0.5), 250);
  assert.equal(backoffDelay(2, cfg, () => 0.5), 1000);
  assert.equal(backoffDelay(10, cfg, () => 0.5), 15000);
  assert.equal(backoffDelay(1, { initial: 100, max: 150 }, () => 0.5), 75);
});

test("endpoints: derives /ws and /sse from any accepted base URL", () => {
  assert.deepEqual(endpoints("ws://h:8080"), { ws: "ws://h:8080/ws", sse: "http://h:8080/sse" });
  assert.deepEqual(endpoints("https://h"), { ws: "wss://h/ws", sse: "https://h/sse" });
  assert.deepEqual(endpoints("wss://h/app/ws"), { ws: "wss://h/app/ws", sse: "https://h/app/sse" });
  assert.deepEqual(endpoints("http://h/app/sse/"), { ws: "ws://h/app/ws", sse: "http://h/app/sse" });
  assert.deepEqual(endpoints("http://h/?x=1"), { ws: "ws://h/ws?x=1", sse: "http://h/sse?x=1" });
  assert.deepEqual(endpoints("/rt", "https://site.test/page"), { ws: "wss://site.test/rt/ws", sse: "https://site.test/rt/sse" });
  assert.throws(() => endpoints("ftp://h"), TypeError);
});

test("diffChannels: computes subscribe/unsubscribe sets", () => {
  const d = diffChannels(new Set(["a", "b", "c"]), new Set(["b", "x"]));
  assert.deepEqual(d, { subscribe: ["a", "c"], unsubscribe: ["x"] });
  assert.deepEqual(diffChannels(new Set(), new Set()), { subscribe: [], unsubscribe: [] });
});

test("closePolicy: close code table", () => {
  for (const code of [1000, 1001, 1002, 1003, 1006, 1007, 1009, 1011, 4000, 4001, 4008]) {
    assert.equal(closePolicy(code), "reconnect", `code ${code}`);
  }
  assert.equal(closePolicy(1008), "refresh");
  assert.equal(closePolicy(4003), "refresh");
  assert.equal(closePolicy(4029), "throttle");
});

test("isSubprotocolSafe: JWTs yes, base64 with / or = no", () => {
  assert.ok(isSubprotocolSafe("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.abc-_d"));
  assert.ok(!isSubprotocolSafe("abc/def=="));
  assert.ok(!isSubprotocolSafe("has space"));
  assert.ok(!isSubprotocolSafe(""));
});

test("module entry points agree", async () => {
  const mod = await import("../redcast.mjs");
  assert.equal(mod.default, mod.Redcast);
  assert.equal(globalThis.Redcast, mod.Redcast);
});
