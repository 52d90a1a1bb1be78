// A person's click-through of Slipway's web UI in Debian's Chromium, run by
// cli/tests/it/web.rs against a real `slipway up`:
//
//   node click-through.mjs
//
// with SLIPWAY_URL (the API), SIGN_IN_LINK (the one `up` printed), APP and
// ENV (an application with one release there), VIEWER_TOKEN and SCREENSHOTS
// (a directory) in the environment. Prints `ok <step>` per step; on the first
// failure prints what went wrong and exits 1. Every page visited also gets an
// accessibility pass (axe-core): a serious or critical violation fails it, as
// does any Content-Security-Policy violation the browser reports.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const { SLIPWAY_URL: base, SIGN_IN_LINK: link, APP: app, ENV: env, VIEWER_TOKEN: viewerToken, SCREENSHOTS: shots } = process.env;
for (const [name, value] of Object.entries({ SLIPWAY_URL: base, SIGN_IN_LINK: link, APP: app, ENV: env, VIEWER_TOKEN: viewerToken, SCREENSHOTS: shots })) {
  if (!value) throw new Error(`${name} is not set`);
}
const envPath = `/apps/${app}/${env}`;
const cspViolations = [];

function fail(message) {
  throw new Error(message);
}

async function step(name, work) {
  try {
    await work();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAILED ${name}: ${err.stack || err}`);
    throw err;
  }
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

// axe-core in the page: no serious or critical violation.
async function accessible(page, what) {
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => axe.run(document, { resultTypes: ["violations"] }));
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) {
    fail(`${what}: accessibility violations:\n` + bad.map((v) =>
      `  ${v.impact} ${v.id}: ${v.help}\n` + v.nodes.slice(0, 3).map((n) => `    ${n.target.join(" ")}: ${n.failureSummary}`).join("\n")
    ).join("\n"));
  }
}

function watch(page) {
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) cspViolations.push(message.text());
  });
  page.on("pageerror", (err) => cspViolations.push(`script error: ${err.message}`));
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  // No sandbox as root; nothing that reaches for the internet (this
  // machine's network is closed, and Chromium would try at every start).
  args: [
    "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let exitCode = 0;
try {
  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await admin.newPage();
  watch(page);
  page.setDefaultTimeout(20000);

  await step("sign in with the one-time link", async () => {
    await page.goto(link);
    // Opening the link spends nothing (a link previewer would): Continue does.
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(`${base}/`);
    await page.getByRole("heading", { name: "What runs where" }).waitFor();
  });

  await step("the overview shows what runs where", async () => {
    const row = page.locator("tr", { hasText: `${app} / ${env}` });
    await row.waitFor();
    if (!(await row.textContent()).includes(`${app}#1`)) fail(`no release in the row: ${await row.textContent()}`);
    await shot(page, "overview");
    await accessible(page, "overview");
  });

  await step("the link is used up", async () => {
    const again = await browser.newContext();
    const other = await again.newPage();
    await other.goto(link);
    const [answer] = await Promise.all([
      other.waitForResponse((r) => r.request().method() === "POST"),
      other.getByRole("button", { name: "Continue" }).click(),
    ]);
    if (answer.status() !== 401) fail(`a second use answered ${answer.status()}`);
    await other.getByText("this sign-in link has been used or has expired").waitFor();
    await again.close();
  });

  await step("open the environment", async () => {
    await page.locator("tr", { hasText: `${app} / ${env}` }).getByRole("link", { name: env, exact: true }).click();
    await page.waitForURL(`**${envPath}`);
    await page.getByRole("heading", { name: env, exact: true }).waitFor();
    await shot(page, "environment");
    await accessible(page, "environment");
  });

  await step("preview what a deployment would change, live", async () => {
    await page.getByRole("link", { name: "Deploy…" }).click();
    await page.waitForURL(`**${envPath}/deploy`);
    await shot(page, "deploy");
    await accessible(page, "deploy");
    await page.getByLabel("Branch, tag or commit").fill("main");
    await page.getByRole("button", { name: "Preview changes" }).click();
    await page.waitForURL(/\/plans\/\d+$/);
    // Marks this document: the answer must arrive without a reload.
    await page.evaluate(() => { window.slipwayMark = true; });
    await page.locator("#plan .status.SUCCEEDED", { hasText: "planned" }).waitFor({ timeout: 120000 });
    if (!(await page.evaluate(() => window.slipwayMark === true))) fail("the page was reloaded");
    const rows = page.locator("#services tbody tr");
    if ((await rows.count()) < 1) fail("no service in the plan");
    // main is what runs: every service is unchanged.
    const actions = await page.locator("#services .status").allTextContents();
    if (!actions.every((a) => a === "unchanged")) fail(`main again changes something: ${actions}`);
    if (!(await page.getByRole("button", { name: /^Deploy [0-9a-f]{7}$/ }).count())) fail("no Deploy button for the plan's commit");
    await shot(page, "plan");
    await accessible(page, "plan");
    await page.goto(new URL(envPath, base).href);
  });

  let deployment;
  await step("deploy, and watch the log arrive live", async () => {
    await page.getByRole("link", { name: "Deploy…" }).click();
    await page.waitForURL(`**${envPath}/deploy`);
    await page.getByLabel("Branch, tag or commit").fill("main");
    await page.getByRole("button", { name: "Deploy", exact: true }).click();
    await page.waitForURL(/\/deployments\/\d+$/);
    deployment = page.url();
    // Marks this document: a reload would lose the mark.
    await page.evaluate(() => { window.slipwayMark = true; });
    const before = await page.locator(".log .line").count();
    await page.locator("#summary .status.SUCCEEDED", { hasText: "succeeded" }).waitFor({ timeout: 180000 });
    const after = await page.locator(".log .line").count();
    if (after <= before) fail(`no line arrived live (${before} at load, ${after} at the end)`);
    if (!(await page.evaluate(() => window.slipwayMark === true))) fail("the page was reloaded");
    await page.locator("#summary", { hasText: "succeeded" }).waitFor();
    await shot(page, "deployment");
    await accessible(page, "deployment");
  });

  await step("a log line has a permalink", async () => {
    await page.locator(".log .line .ln").first().click();
    if (!page.url().endsWith("#L1")) fail(`the permalink is ${page.url()}`);
    const raw = await page.request.get(`${deployment}/log.txt`);
    if (raw.status() !== 200 || !(await raw.text()).includes("converged")) fail(`raw log: ${raw.status()}`);
  });

  await step("lock, and see the banner", async () => {
    await page.goto(base + envPath);
    await page.locator("#lock-reason").fill("release freeze until 18:00");
    await page.getByRole("button", { name: "Lock", exact: true }).click();
    await page.locator(".banner.lock", { hasText: "release freeze until 18:00" }).waitFor();
    await shot(page, "locked");
    await accessible(page, "locked environment");
    await page.getByRole("button", { name: "Unlock" }).click();
    await page.locator("#lock-reason").waitFor();
  });

  await step("roll back with a reason", async () => {
    const target = `${app}#1`;
    await page.getByLabel(`Why roll back to ${target}`).fill("the new checkout breaks payments");
    await page.getByRole("button", { name: `Roll back to ${target}` }).click();
    await page.waitForURL(/\/deployments\/\d+$/);
    await page.locator("#summary .status.SUCCEEDED", { hasText: "succeeded" }).waitFor({ timeout: 180000 });
    const summary = await page.locator("#summary").textContent();
    if (!summary.includes("rollback")) fail(`not a rollback: ${summary}`);
    await page.goto(base + envPath);
    await page.locator(".banner.paused", { hasText: "the new checkout breaks payments" }).waitFor();
    await shot(page, "rolled-back");
  });

  await step("runners and setup", async () => {
    await page.goto(`${base}/runners`);
    await page.getByRole("heading", { name: "Runners" }).waitFor();
    await shot(page, "runners");
    await accessible(page, "runners");
    await page.goto(`${base}/setup`);
    await page.getByRole("heading", { name: "Setup" }).waitFor();
    await shot(page, "setup");
    await accessible(page, "setup");
  });

  await step("dark, and 360 px wide", async () => {
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(base + envPath);
    await shot(page, "environment-dark");
    await accessible(page, "environment, dark");
    await page.emulateMedia({ colorScheme: "light" });
    await page.setViewportSize({ width: 360, height: 740 });
    for (const [name, path] of [["overview-narrow", "/"], ["deployment-narrow", new URL(deployment).pathname]]) {
      await page.goto(base + path);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      if (width > 360) fail(`${path} is ${width} px wide at 360 px`);
      await shot(page, name);
    }
  });

  await step("a viewer signs in with a token, sees no action, and a forged POST is refused", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const viewer = await context.newPage();
    watch(viewer);
    await viewer.goto(base + envPath);
    if (!viewer.url().includes("/login?next=")) fail(`not sent to sign in: ${viewer.url()}`);
    await shot(viewer, "sign-in");
    await accessible(viewer, "sign-in");
    await viewer.getByLabel("Token").fill(viewerToken);
    await viewer.getByRole("button", { name: "Sign in" }).click();
    await viewer.waitForURL(`**${envPath}`);
    const cookies = await context.cookies();
    if (cookies.some((c) => c.value.includes(viewerToken))) fail("the browser keeps the token");
    for (const name of ["Lock", "Unlock", "Resume auto-deploy"]) {
      if (await viewer.getByRole("button", { name, exact: true }).count()) fail(`a viewer sees ${name}`);
    }
    if (await viewer.getByRole("button", { name: /^Roll back/ }).count()) fail("a viewer sees Roll back");
    if (await viewer.getByRole("link", { name: "Deploy…" }).count()) fail("a viewer sees Deploy");
    const csrf = await viewer.locator("input[name=csrf]").first().inputValue();
    const forged = await context.request.post(`${base}${envPath}/lock`, { form: { csrf, reason: "mine" }, maxRedirects: 0 });
    if (forged.status() !== 403) fail(`a viewer's lock answered ${forged.status()}`);
    await viewer.goto(new URL(deployment).href);
    if (await viewer.getByRole("button", { name: /Redeploy|Cancel/ }).count()) fail("a viewer sees Redeploy or Cancel");
    await shot(viewer, "viewer");
    await viewer.getByRole("button", { name: "Sign out" }).click();
    await viewer.waitForURL("**/login");
    const after = await viewer.goto(base + envPath);
    if (!viewer.url().includes("/login?next=")) fail(`still signed in after signing out (${after.status()})`);
    await context.close();
  });

  await step("no Content-Security-Policy violation or script error", async () => {
    if (cspViolations.length) fail(cspViolations.join("\n"));
  });
} catch (err) {
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
