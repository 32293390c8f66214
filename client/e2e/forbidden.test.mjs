// A channel whose rule is `subscribe = "nobody"` shows the server's
// forbidden error on the page, an invalid name its invalid_channel error
// (the server answers one subscribe with both, then acks the rest), and
// the allowed channel keeps working.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  ARTIFACTS, TIMEOUT, assertNoPanic, publish, startStack, stopStack,
  waitForMessage, waitForRedisSubscribers, waitForState,
} from "./harness.mjs";

describe("forbidden channel", () => {
  let redis, redcast, browser, page;

  const stack = {};

  before(async () => {
    ({ redis, redcast, browser, page } = await startStack(stack));
  });

  after(() => stopStack(stack, "forbidden-redcast.log"));

  test("the page shows the forbidden error and still gets the allowed channel", async () => {
    await page.goto(`${redcast.url}/demo?channel=demo.alerts&channel=secret.plans&channel=bad%20name`);
    await waitForState(page, "open");

    const error = page.locator('#errors li[data-code="forbidden"]');
    await error.waitFor({ timeout: TIMEOUT });
    assert.match(await error.textContent(), /secret\.plans/);
    const invalid = page.locator('#errors li[data-code="invalid_channel"]');
    await invalid.waitFor({ timeout: TIMEOUT });
    assert.match(await invalid.textContent(), /bad name/);
    assert.equal(await page.locator('#errors li').count(), 2);
    await page
      .locator('#channels li[data-channel="secret.plans"][data-status="forbidden"]')
      .waitFor({ timeout: TIMEOUT });
    await page
      .locator('#channels li[data-channel="bad name"][data-status="rejected"]')
      .waitFor({ timeout: TIMEOUT });
    assert.equal(
      await page.locator('#channels li[data-channel="demo.alerts"]').getAttribute("data-status"),
      "subscribed",
    );

    await waitForRedisSubscribers(redis.port, ["demo.alerts"]);
    assert.equal(await publish(redis.port, "demo.alerts", "disk almost full"), 1);
    await waitForMessage(page, "demo.alerts", "disk almost full");
    // redcast never asked Redis for the forbidden channel.
    assert.equal(await publish(redis.port, "secret.plans", "nobody hears this"), 0);
    // The publish hint only suggests channels that were not refused.
    const hint = await page.locator("#hint-one").textContent();
    assert.match(hint, /PUBLISH demo\.alerts/);
    assert.doesNotMatch(hint, /secret\.plans|bad name/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "demo-forbidden.png"), fullPage: true });
    assert.deepEqual(browser.errors, []);
    assertNoPanic(redcast.child);
  });
});
