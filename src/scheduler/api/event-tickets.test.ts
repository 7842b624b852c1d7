import { describe, expect, it } from "vitest";
import { FakeClock } from "../../../test/support/fake-clock.ts";
import { EventTickets } from "./event-tickets.ts";
import type { Principal } from "./tenants.ts";

const ACME: Principal = { tenant: "acme", role: "member", key: "0123456789abcdef" };

describe("events-stream tickets", () => {
  it("speak for the principal that asked, for that operation only", () => {
    const tickets = new EventTickets({ clock: new FakeClock() });
    const { ticket } = tickets.issue("op-1", ACME);
    expect(tickets.verify(ticket, "op-1")).toEqual(ACME);
    expect(tickets.verify(ticket, "op-2")).toBeUndefined();
  });

  it("expire after their time to live", async () => {
    const clock = new FakeClock();
    const tickets = new EventTickets({ clock }, { ttlMs: 60_000 });
    const { ticket, expiresAt } = tickets.issue("op-1", ACME);
    expect(Date.parse(expiresAt)).toBe(clock.now() + 60_000);
    await clock.advance(59_999);
    expect(tickets.verify(ticket, "op-1")).toEqual(ACME);
    await clock.advance(1);
    expect(tickets.verify(ticket, "op-1")).toBeUndefined();
  });

  it("cannot be widened, forged or taken to another scheduler", () => {
    const clock = new FakeClock();
    const tickets = new EventTickets({ clock });
    const { ticket } = tickets.issue("op-1", ACME);
    const [body, signature] = ticket.split(".") as [string, string];
    const claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
    const admin = Buffer.from(JSON.stringify({ ...claims, role: "admin" })).toString("base64url");
    expect(tickets.verify(`${admin}.${signature}`, "op-1")).toBeUndefined();
    expect(tickets.verify(`${body}.${signature.slice(1)}x`, "op-1")).toBeUndefined();
    expect(tickets.verify(`${body}.${signature}.extra`, "op-1")).toBeUndefined();
    expect(tickets.verify("not-a-ticket", "op-1")).toBeUndefined();
    // Another process draws another key.
    expect(new EventTickets({ clock }).verify(ticket, "op-1")).toBeUndefined();
  });
});
