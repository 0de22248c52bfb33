// The browser test of /docs (run by scripts/docs-browser.sh): loads the page from a running
// server in headless Chromium and checks what a person would see there.
//
//   node check.mjs BASE_URL SCREENSHOT.png
//
// - every operation of the served openapi.json is rendered (method and path), and no other;
// - an operation shows its request schema, an example body and its problem codes (as code,
//   not as literal backticks);
// - "Try it out" on GET /healthz sends the request to the same origin and shows its 200;
// - nothing was loaded from another origin, and the console shows no error (a CSP violation,
//   a missing file);
// then saves a full-page screenshot. Exits 1 on the first failed check.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.PLAYWRIGHT_CORE_DIR}/`);
const { chromium } = require("playwright-core");

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node check.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}
const origin = new URL(base).origin;

function fail(message) {
  console.error(`docs-browser: FAILED: ${message}`);
  process.exit(1);
}

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const document = await (await fetch(`${base}/openapi.json`)).json();
const expected = [];
for (const [path, item] of Object.entries(document.paths)) {
  for (const method of METHODS) {
    if (item[method]) expected.push(`${method.toUpperCase()} ${path}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Nothing but the page: no background requests into the closed network.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  const elsewhere = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.origin !== origin) elsewhere.push(request.url());
  });

  const response = await page.goto(`${base}/docs`);
  if (response.status() !== 200) fail(`GET /docs answered ${response.status()}`);
  await page.waitForSelector(".opblock", { timeout: 20_000 }).catch(() =>
    fail(`no operation rendered within 20 s (${problems.join("; ") || "no console error"})`),
  );

  // Every operation, by the method and path Swagger UI shows.
  const rendered = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent.trim();
      const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path");
      return `${method} ${path}`;
    }),
  );
  const missing = expected.filter((operation) => !rendered.includes(operation));
  const extra = rendered.filter((operation) => !expected.includes(operation));
  if (missing.length || extra.length || rendered.length !== expected.length) {
    fail(`rendered ${rendered.length} operations, the document has ${expected.length}; ` +
      `missing: ${missing.join(", ") || "none"}; not in the document: ${extra.join(", ") || "none"}`);
  }
  console.log(`docs-browser: ${rendered.length} of ${expected.length} operations rendered`);

  // One operation opened: its request schema, an example body, its problem codes.
  const register = page.locator("#operations-auth-register");
  await register.locator(".opblock-summary").click();
  await register.locator(".opblock-body .responses-table").waitFor();
  const example = JSON.parse(
    await register.locator(".opblock-section-request-body .highlight-code").textContent(),
  );
  if (example.email !== "ada@example.com" || typeof example.password !== "string") {
    fail(`POST /v1/auth/register: the example body is not the document's: ${JSON.stringify(example)}`);
  }
  const statuses = await register.locator(".responses-table tr.response .response-col_status").allTextContents();
  for (const status of ["201", "400", "409", "429", "503"]) {
    if (!statuses.map((s) => s.trim()).includes(status)) fail(`POST /v1/auth/register: no ${status} response shown (${statuses})`);
  }
  const codes = await register.locator(".responses-table .response-col_description code").allTextContents();
  if (!codes.includes("email_taken") || !codes.includes("weak_password")) {
    fail(`POST /v1/auth/register: the problem codes are not shown as code: ${codes}`);
  }
  await register.locator(".opblock-section-request-body .tablinks[data-name=model]").click();
  const schema = await register.locator(".opblock-section-request-body .model-box").textContent();
  if (!schema.includes("RegisterRequest")) fail(`POST /v1/auth/register: no request schema shown: ${schema}`);
  console.log(`docs-browser: POST /v1/auth/register shows its schema, an example body and ${codes.length} problem codes`);

  // "Try it out" against this server.
  const healthz = page.locator("#operations-health-healthz");
  await healthz.locator(".opblock-summary").click();
  await healthz.locator("button.try-out__btn").click();
  await healthz.locator("button.execute").click();
  const status = healthz.locator(".live-responses-table .response .response-col_status");
  await status.waitFor({ timeout: 10_000 });
  const got = (await status.textContent()).trim();
  const url = (await healthz.locator(".request-url pre").textContent()).trim();
  if (got !== "200" || url !== `${base}/healthz`) fail(`Try it out on GET /healthz: ${got} from ${url}`);
  console.log(`docs-browser: Try it out: GET ${url} answered ${got}`);

  if (elsewhere.length) fail(`requests to other origins: ${elsewhere.join(", ")}`);
  if (problems.length) fail(problems.join("\n"));

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`docs-browser: screenshot ${screenshot}`);
} finally {
  await browser.close();
}
