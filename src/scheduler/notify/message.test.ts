import { describe, expect, it } from "vitest";
import { operationApiLink, operationLink } from "./message.ts";

describe("notification links", () => {
  it("link opens the operation's page in the web console; apiLink is its JSON", () => {
    for (const base of [
      "https://sf.example.test",
      "https://sf.example.test/",
      "https://x.test/sf/",
    ]) {
      const link = new URL(operationLink(base, "op-1a2b")!);
      // The console is served at the base's root and routes by the fragment
      // (src/console/router.ts: `#/operations/ID`, as its own list links to the page).
      expect(link.pathname).toBe(new URL(base.endsWith("/") ? base : `${base}/`).pathname);
      expect(link.hash).toBe("#/operations/op-1a2b");
      const api = new URL(operationApiLink(base, "op-1a2b")!);
      expect(api.pathname.endsWith("/operations/op-1a2b")).toBe(true);
      expect(api.hash).toBe("");
    }
  });

  it("no public base URL: no links", () => {
    expect(operationLink(undefined, "op-1")).toBeNull();
    expect(operationApiLink(undefined, "op-1")).toBeNull();
  });
});
