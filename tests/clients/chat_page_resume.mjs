// The chat page resumes a dropped answer (tests/browser.rs): the first
// response is cut after its first four events (the route hands the page
// only those), and the page must reconnect with Last-Event-ID and show the
// whole answer once.
// Usage: node chat_page_resume.mjs BASE_URL
import { chromium } from "playwright-core";

const [base] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { requests: [] };
try {
  const page = await browser.newPage();
  let cut = false;
  await page.route("**/api/chat/stream", async (route) => {
    const req = route.request();
    result.requests.push({ method: req.method(), lastEventId: req.headers()["last-event-id"] || null });
    if (req.method() === "POST" && !cut) {
      cut = true;
      const res = await route.fetch();
      const blocks = (await res.text()).split("\n\n").filter((b) => b.trim());
      await route.fulfill({ status: 200, headers: res.headers(), body: blocks.slice(0, 4).join("\n\n") + "\n\n" });
    } else {
      await route.continue();
    }
  });
  await page.goto(base + "/");
  await page.fill("#query", "How do I install a package?");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Done"), null, { timeout: 20000 });
  result.answer = await page.textContent("#answer");
  result.error = await page.textContent("#error");
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
