// Asks one question on the chat page in headless Chromium (tests/browser.rs)
// and prints how each source is shown: a link (with its href) or plain text.
// Usage: node chat_page_links.mjs BASE_URL
import { chromium } from "playwright-core";

const [base] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.fill("#query", "How do I install a package?");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Done"), null, { timeout: 20000 });
  const shown = await page.$$eval("#sources li > :first-child", (els) =>
    els.map((e) => ({ tag: e.tagName.toLowerCase(), text: e.textContent, href: e.getAttribute("href") })));
  console.log(JSON.stringify(shown));
} finally {
  await browser.close();
}
