// Drives the chat page (GET /) in headless Chromium with playwright-core
// (tests/browser.rs): give the API key the page asks for, ask, watch the
// answer grow, see the sources, stop.
// Usage: node chat_page.mjs BASE_URL SCREENSHOT_DIR API_KEY
import { chromium } from "playwright-core";

const [base, outDir, apiKey] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = {};
try {
  const page = await browser.newPage();
  // Anything the page's security policy blocks is an error here.
  result.policyErrors = [];
  page.on("console", (m) => { if (/Content.Security.Policy/i.test(m.text())) result.policyErrors.push(m.text()); });
  await page.goto(base + "/");
  // Without a key the API refuses; the page then asks for one.
  await page.fill("#query", "How do I install a package?");
  await page.click("#send");
  await page.waitForFunction(() => !document.querySelector("#key-row").hidden, null, { timeout: 10000 });
  result.askedForKey = (await page.textContent("#error")).includes("unauthorized");
  await page.fill("#key", apiKey);
  await page.click("#send");
  // Sample the answer's length while it streams.
  const lengths = [];
  for (let i = 0; i < 40; i++) {
    lengths.push((await page.textContent("#answer")).length);
    if ((await page.textContent("#status")).startsWith("Done")) break;
    await page.waitForTimeout(50);
  }
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Done"), null, { timeout: 20000 });
  result.growth = [...new Set(lengths)].length;
  result.answer = await page.textContent("#answer");
  result.sources = await page.$$eval("#sources li a", (as) => as.map((a) => ({ text: a.textContent, href: a.href })));
  await page.screenshot({ path: outDir + "/chat-page.png", fullPage: true });

  // Stop: a second question, stopped after the first text arrives.
  await page.fill("#query", "What is Debian?");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelector("#answer").textContent.length > 0, null, { timeout: 20000 });
  await page.click("#stop");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Stopped.", null, { timeout: 5000 });
  const stoppedAt = (await page.textContent("#answer")).length;
  await page.waitForTimeout(600);
  result.grewAfterStop = (await page.textContent("#answer")).length !== stoppedAt;
  result.sendEnabled = await page.isEnabled("#send");

  // Errors are shown.
  await page.fill("#query", "x".repeat(1));
  await page.evaluate(() => { document.querySelector("#query").removeAttribute("maxlength"); });
  await page.fill("#query", "y".repeat(2001));
  await page.click("#send");
  await page.waitForFunction(() => document.querySelector("#error").textContent.length > 0, null, { timeout: 5000 });
  result.error = await page.textContent("#error");
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
