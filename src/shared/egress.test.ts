import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type AddressClass,
  checkEgress,
  classifyAddress,
  METADATA_ADDRESSES,
  PUBLIC_ONLY,
  parseEgressAllow,
} from "./egress.ts";

/** The hostname the WHATWG URL parser (what http-enrich uses) makes of a URL. */
const hostOf = (url: string) => new URL(url).hostname;

describe("classifyAddress", () => {
  const cases: Array<[string, AddressClass]> = [
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::127.0.0.1", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["fc00::1", "private"],
    ["fd12:3456::1", "private"],
    ["169.254.1.1", "link-local"],
    ["fe80::1", "link-local"],
    ["169.254.169.254", "metadata"],
    ["fd00:ec2::254", "metadata"],
    ["::ffff:169.254.169.254", "metadata"],
    ["169.254.170.2", "metadata"],
    ["0.0.0.0", "unspecified"],
    ["::", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["ff02::1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["100.64.0.1", "shared"],
    ["240.0.0.1", "reserved"],
    ["64:ff9b::7f00:1", "reserved"],
    ["2002:7f00:1::", "reserved"],
    ["93.184.216.34", "public"],
    ["172.32.0.1", "public"],
    ["2606:4700::1111", "public"],
  ];
  it.each(cases)("%s is %s", (address, expected) => {
    expect(classifyAddress(address)).toBe(expected);
  });

  it.each([
    ["http://2130706433/", "loopback"],
    ["http://0x7f.1/", "loopback"],
    ["http://017700000001/", "loopback"],
    ["http://0177.0.0.1/", "loopback"],
    ["http://127.1/", "loopback"],
    ["http://[::ffff:127.0.0.1]/", "loopback"],
    ["http://0/", "unspecified"],
    ["http://0xa9fea9fe/", "metadata"],
  ] as const)("odd form %s is normalised by the URL parser and classified %s", (url, cls) => {
    expect(classifyAddress(hostOf(url))).toBe(cls);
  });

  it("refuses to classify what is not an address", () => {
    expect(() => classifyAddress("localhost")).toThrow(/not an IP address/);
  });
});

describe("checkEgress", () => {
  it("allows public addresses and says why it refuses the rest", () => {
    expect(checkEgress(PUBLIC_ONLY, { address: "93.184.216.34", port: 443 }).ok).toBe(true);
    expect(checkEgress(PUBLIC_ONLY, { address: "127.0.0.1", port: 4566 })).toEqual({
      ok: false,
      class: "loopback",
      reason: "127.0.0.1:4566 is a loopback address",
    });
    expect(checkEgress(PUBLIC_ONLY, { address: "::1", port: 80 })).toMatchObject({
      reason: "[::1]:80 is a loopback address",
    });
    expect(
      checkEgress(PUBLIC_ONLY, { address: "127.0.0.1", port: 80, hostname: "localhost" }),
    ).toMatchObject({ reason: "127.0.0.1:80 is a loopback address (resolved from localhost)" });
    expect(checkEgress(PUBLIC_ONLY, { address: "::ffff:10.0.0.1", port: 80 })).toMatchObject({
      reason: "10.0.0.1:80 is a private address",
    });
  });

  it("allows what an entry names: address, address:port, cidr, cidr:port, host:port", () => {
    const policy = parseEgressAllow(
      "127.0.0.1:8080, 10.0.0.0/8, 192.168.1.0/24:443, [::1]:9000, fd00:1::/32, registry.local:7000",
    );
    const ok = (address: string, port: number, hostname?: string) =>
      checkEgress(policy, { address, port, ...(hostname ? { hostname } : {}) }).ok;
    expect(ok("127.0.0.1", 8080)).toBe(true);
    expect(ok("127.0.0.1", 8081)).toBe(false);
    expect(ok("::ffff:127.0.0.1", 8080)).toBe(true);
    expect(ok("10.9.8.7", 1)).toBe(true);
    expect(ok("192.168.1.5", 443)).toBe(true);
    expect(ok("192.168.1.5", 80)).toBe(false);
    expect(ok("192.168.2.5", 443)).toBe(false);
    expect(ok("::1", 9000)).toBe(true);
    expect(ok("::1", 9001)).toBe(false);
    expect(ok("fd00:1::5", 80)).toBe(true);
    expect(ok("127.0.0.2", 7000, "registry.local")).toBe(true);
    expect(ok("127.0.0.2", 7000, "REGISTRY.local.")).toBe(true);
    expect(ok("127.0.0.2", 7001, "registry.local")).toBe(false);
    expect(ok("127.0.0.2", 7000, "other.local")).toBe(false);
  });

  it("never lets a broad range or a host name reach a metadata address", () => {
    const broad = parseEgressAllow("169.254.0.0/16, fd00::/8, 0.0.0.0/0, ::/0, metadata.local");
    for (const address of METADATA_ADDRESSES) {
      const decision = checkEgress(broad, { address, port: 80, hostname: "metadata.local" });
      expect(decision).toMatchObject({ ok: false, class: "metadata" });
    }
    // Other link-local addresses the broad range does allow.
    expect(checkEgress(broad, { address: "169.254.1.1", port: 80 }).ok).toBe(true);
    // Only naming it exactly does.
    const exact = parseEgressAllow("169.254.169.254, [fd00:ec2::254]:80");
    expect(checkEgress(exact, { address: "169.254.169.254", port: 80 }).ok).toBe(true);
    expect(checkEgress(exact, { address: "fd00:ec2::254", port: 80 }).ok).toBe(true);
    expect(checkEgress(exact, { address: "fd00:ec2::254", port: 81 }).ok).toBe(false);
  });

  it("an empty allow list refuses every non-public address (property)", () => {
    const nonPublicV4 = fc.oneof(
      fc.tuple(fc.constant(127), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(10), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(172), fc.integer({ min: 16, max: 31 }), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(192), fc.constant(168), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(169), fc.constant(254), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.integer({ min: 224, max: 255 }), fc.nat(255), fc.nat(255), fc.nat(255)),
    );
    fc.assert(
      fc.property(
        nonPublicV4,
        fc.integer({ min: 1, max: 65_535 }),
        fc.boolean(),
        (o, p, mapped) => {
          const v4 = o.join(".");
          const address = mapped ? `::ffff:${v4}` : v4;
          expect(checkEgress(PUBLIC_ONLY, { address, port: p }).ok).toBe(false);
        },
      ),
    );
  });
});

describe("parseEgressAllow", () => {
  it("reads an empty or blank list as public-only", () => {
    expect(parseEgressAllow(undefined).allow).toEqual([]);
    expect(parseEgressAllow(" , ").allow).toEqual([]);
  });

  it.each([
    ["127.0.0.1:0", /port must be 1-65535/],
    ["127.0.0.1:http", /port must be 1-65535/],
    ["10.0.0.0/33", /not a CIDR range/],
    ["0x7f.1", /not an address/],
    ["2130706433", /not an address/],
    ["[::1", /missing "]"/],
    ["[::1]8080", /expected ":port"/],
    ["exa mple.com", /not a host name/],
    ["http://example.com", /./],
  ])("refuses %s naming it", (entry, message) => {
    expect(() => parseEgressAllow(`example.com, ${entry}`)).toThrow(message);
  });
});
