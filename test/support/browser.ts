/**
 * Chromium for the browser tests: Debian's package driven by playwright-core (no browser
 * download). Missing chromium fails the tests with one line saying what to install; only
 * `SKIP_BROWSER_TESTS=1` skips them, and says so, and not where `REQUIRE_BROWSER_TESTS=1` (set
 * by .ci/run) or `CI` is set.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Where screenshots and downloads go (gitignored). */
export const ARTIFACTS = path.resolve("test-artifacts/browser");

/** Whether the browser tests are skipped: only when asked for, never in CI. */
export function skipBrowserTests(): boolean {
  const required = process.env.REQUIRE_BROWSER_TESTS === "1" || Boolean(process.env.CI);
  const skip = process.env.SKIP_BROWSER_TESTS === "1" && !required;
  if (skip) console.warn("browser tests skipped (SKIP_BROWSER_TESTS=1)");
  return skip;
}

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `chromium is not installed at ${CHROMIUM}: apt-get install chromium (the browser tests need it; SKIP_BROWSER_TESTS=1 skips them outside CI)`,
    );
  }
  await mkdir(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container has no user namespace for chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** What went wrong in a page: uncaught errors and CSP refusals (the console must cause none). */
export function watchPage(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" && /Content Security Policy|Refused to/i.test(text)) {
      problems.push(`csp: ${text}`);
    }
  });
  return problems;
}

/** Waits until the element's text is `text` (an event, with a generous deadline). */
export async function waitForText(
  page: Page,
  selector: string,
  text: string | RegExp,
  timeoutMs = 180_000,
): Promise<void> {
  const pattern =
    typeof text === "string" ? `^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$` : text.source;
  // Runs in the page; the node-side types know no DOM, hence the narrow cast.
  await page.waitForFunction(
    ({ selector, pattern }) => {
      const doc = (globalThis as unknown as { document: PageDocument }).document;
      return new RegExp(pattern).test(doc.querySelector(selector)?.textContent?.trim() ?? "");
    },
    { selector, pattern },
    { timeout: timeoutMs, polling: 250 },
  );
}

/** The little of the page's DOM the tests read (the node-side types have no DOM). */
export interface PageDocument {
  querySelector(selector: string): { textContent: string | null } | null;
  documentElement: { scrollWidth: number };
}

/** The page's full width: wider than the viewport means sideways scrolling. */
export function scrollWidth(page: Page): Promise<number> {
  return page.evaluate(
    () =>
      (globalThis as unknown as { document: PageDocument }).document.documentElement.scrollWidth,
  );
}
