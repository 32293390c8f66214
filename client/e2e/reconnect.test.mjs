// redcast is killed and restarted on the same port while the demo page
// stays open: the page shows reconnecting, then open again, and gets a
// new message without a reload.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  assertNoPanic, cleanup, publish, startRedcast, text,
  waitForMessage, waitForRedisSubscribers, waitForState,
  startStack,
} from "./harness.mjs";

describe("server restart", () => {
  let redis, redcast, browser, page;
  const logs = [];

  const stack = {};

  before(async () => {
    ({ redis, redcast, browser, page } = await startStack(stack));
  });

  after(async () => {
    logs.forEach((child, i) => child.saveLog(`reconnect-redcast-${i + 1}.log`));
    await cleanup(
      () => browser?.close(),
      () => redcast?.stop(),
      () => redis?.stop(),
    );
  });

  test("the open page reconnects to a restarted redcast and receives new messages", async () => {
    logs.push(redcast.child);
    await page.goto(`${redcast.url}/demo?channel=demo.ticks`);
    await waitForState(page, "open");
    await waitForRedisSubscribers(redis.port, ["demo.ticks"]);
    assert.equal(await publish(redis.port, "demo.ticks", { before: "restart" }), 1);
    await waitForMessage(page, "demo.ticks", "restart");
    assert.equal(await text(page, "#reconnects"), "0");

    // Each page load is counted, so a reload would show up here.
    const navigations = await page.evaluate(() => performance.getEntriesByType("navigation").length);
    await page.evaluate(() => { window.__sameDocument = true; });

    const { port, adminPort } = redcast;
    await redcast.stop(); // SIGKILL: no close frame, the browser sees 1006
    await waitForState(page, "reconnecting");

    redcast = await startRedcast({ redisPort: redis.port, port, adminPort });
    logs.push(redcast.child);
    await waitForState(page, "open");
    await page.waitForFunction(() => document.getElementById("reconnects").textContent === "1");

    await waitForRedisSubscribers(redis.port, ["demo.ticks"]);
    assert.equal(await publish(redis.port, "demo.ticks", { after: "restart", n: 2 }), 1);
    await waitForMessage(page, "demo.ticks", "\"after\":\"restart\"");

    assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
    assert.equal(await page.evaluate(() => performance.getEntriesByType("navigation").length), navigations);
    assert.equal(await text(page, "#total"), "2");
    assert.match(await text(page, "#transport"), /^websocket/);
    assert.deepEqual(browser.errors, []);
    assertNoPanic(redcast.child);
  });
});
