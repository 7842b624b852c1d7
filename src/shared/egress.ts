/**
 * The egress policy: where a task's outbound calls may go. Pure: parsing the allow list,
 * classifying an address and deciding on one (address, port) pair. The worker applies it at
 * connect time to the address actually connected to (after DNS, so rebinding cannot pass); the
 * intake applies it to what a spec names literally.
 *
 * Public unicast addresses are always allowed. Everything else (loopback, private, link-local,
 * cloud metadata, unspecified, multicast, broadcast, shared and reserved ranges, IPv4 behind
 * IPv6 translation prefixes) is refused unless `SHARDFLEET_EGRESS_ALLOW` names it. The metadata
 * addresses are matched only by an entry naming the exact address, never by a CIDR or a host.
 */
import ipaddr from "ipaddr.js";
import { ShardfleetError } from "./errors.ts";

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** Why an address is not simply public; `public` is the only class allowed without a rule. */
export type AddressClass =
  | "public"
  | "loopback"
  | "private"
  | "link-local"
  | "metadata"
  | "unspecified"
  | "multicast"
  | "broadcast"
  | "shared"
  | "reserved";

/**
 * Cloud instance metadata, credentials and time/DNS endpoints (EC2 IMDS IPv4 and IPv6, ECS task
 * metadata, Amazon DNS and time sync). Reaching one hands out the machine's identity.
 */
export const METADATA_ADDRESSES: readonly string[] = [
  "169.254.169.254",
  "169.254.169.253",
  "169.254.169.123",
  "169.254.170.2",
  "169.254.170.23",
  "fd00:ec2::254",
  "fd00:ec2::253",
  "fd00:ec2::123",
  "fd00:ec2::23",
];
const METADATA = new Set(METADATA_ADDRESSES.map((a) => ipaddr.parse(a).toNormalizedString()));

/** One entry of the allow list. `port` absent: any port. */
export type EgressRule =
  | { readonly kind: "address"; readonly address: string; readonly port?: number }
  | {
      readonly kind: "cidr";
      readonly range: readonly [Address, number];
      readonly text: string;
      readonly port?: number;
    }
  | { readonly kind: "host"; readonly host: string; readonly port?: number };

export interface EgressPolicy {
  /** Exceptions to the refusal of non-public addresses, in the order given. */
  readonly allow: readonly EgressRule[];
}

/** Allows public addresses only: the default. */
export const PUBLIC_ONLY: EgressPolicy = Object.freeze({ allow: Object.freeze([]) });

/**
 * A call the egress policy refused. At intake it is a 400 naming the field; in a worker it is
 * the row's error (never retried, never a shard failure).
 */
export class EgressRefusedError extends ShardfleetError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super("EGRESS_REFUSED", message, { details });
  }
}

const HOSTNAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}[a-z0-9_])?)*$/;

/** Parses an address as the URL parser and DNS give it; an IPv4-mapped IPv6 becomes IPv4. */
export function parseAddress(text: string): Address | undefined {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (ipaddr.IPv4.isValidFourPartDecimal(bare)) return ipaddr.IPv4.parse(bare);
  if (!ipaddr.IPv6.isValid(bare)) return undefined;
  const v6 = ipaddr.IPv6.parse(bare);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

function port(text: string, entry: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65_535) {
    throw new Error(`${JSON.stringify(entry)}: port must be 1-65535, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function parseEntry(entry: string): EgressRule {
  let body = entry;
  let portText: string | undefined;
  if (body.startsWith("[")) {
    // [v6], [v6]:port, [v6/len]:port
    const close = body.indexOf("]");
    if (close < 0) throw new Error(`${JSON.stringify(entry)}: missing "]"`);
    const rest = body.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) {
      throw new Error(`${JSON.stringify(entry)}: expected ":port" after "]"`);
    }
    portText = rest === "" ? undefined : rest.slice(1);
    body = body.slice(1, close);
  } else if (body.split(":").length === 2) {
    // host:port, a.b.c.d:port, a.b.c.d/len:port (a bare IPv6 has more colons and no port)
    const [head = "", tail = ""] = body.split(":");
    body = head;
    portText = tail;
  }
  const p = portText === undefined ? {} : { port: port(portText, entry) };
  if (body.includes("/")) {
    let range: [Address, number];
    try {
      range = ipaddr.parseCIDR(body);
    } catch {
      throw new Error(`${JSON.stringify(entry)}: not a CIDR range`);
    }
    const [address, bits] = range;
    const base = parseAddress(address.toString());
    if (
      !base ||
      (address.kind() === "ipv4" && !ipaddr.IPv4.isValidFourPartDecimal(body.split("/")[0]!))
    ) {
      throw new Error(`${JSON.stringify(entry)}: write IPv4 ranges as a.b.c.d/len`);
    }
    const full = address.kind() === "ipv4" ? 32 : 128;
    if (bits === full) return { kind: "address", address: address.toNormalizedString(), ...p };
    return { kind: "cidr", range, text: body, ...p };
  }
  const address = parseAddress(body);
  if (address) return { kind: "address", address: address.toNormalizedString(), ...p };
  if (body.includes(":") || /^[\d.]+$/.test(body) || /^0x/i.test(body)) {
    throw new Error(
      `${JSON.stringify(entry)}: not an address (write IPv4 as a.b.c.d, IPv6 in [ ] with a port)`,
    );
  }
  const host = body.toLowerCase().replace(/\.$/, "");
  if (!HOSTNAME.test(host)) throw new Error(`${JSON.stringify(entry)}: not a host name`);
  return { kind: "host", host, ...p };
}

/**
 * Parses `SHARDFLEET_EGRESS_ALLOW`: a comma list of `host[:port]`, `address[:port]` or
 * `cidr[:port]` (IPv6 in brackets when a port follows: `[fd00::1]:8080`, `[fd00::/8]:443`).
 * Throws an Error naming the bad entry.
 */
export function parseEgressAllow(text: string | undefined): EgressPolicy {
  const entries = (text ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
  return Object.freeze({ allow: Object.freeze(entries.map(parseEntry)) });
}

const V4_CLASSES: Record<string, AddressClass> = {
  unicast: "public",
  loopback: "loopback",
  private: "private",
  linkLocal: "link-local",
  unspecified: "unspecified",
  multicast: "multicast",
  broadcast: "broadcast",
  carrierGradeNat: "shared",
};
const V6_CLASSES: Record<string, AddressClass> = {
  unicast: "public",
  loopback: "loopback",
  uniqueLocal: "private",
  linkLocal: "link-local",
  deprecatedSiteLocal: "private",
  unspecified: "unspecified",
  multicast: "multicast",
};
/** ::a.b.c.d (deprecated IPv4-compatible): ipaddr.js calls it unicast; it is not public. */
const V4_COMPATIBLE = ipaddr.parseCIDR("::/96");

function classOf(address: Address): AddressClass {
  if (METADATA.has(address.toNormalizedString())) return "metadata";
  if (address.kind() === "ipv4") return V4_CLASSES[address.range()] ?? "reserved";
  const v6 = address as ipaddr.IPv6;
  const range = v6.range();
  if (range === "unicast" && v6.match(V4_COMPATIBLE)) return "reserved";
  return V6_CLASSES[range] ?? "reserved";
}

/** The class of an address (IPv4, IPv6 or IPv4-mapped IPv6); throws on a non-address. */
export function classifyAddress(text: string): AddressClass {
  const address = parseAddress(text);
  if (!address) throw new Error(`not an IP address: ${JSON.stringify(text)}`);
  return classOf(address);
}

const DESCRIPTION: Record<AddressClass, string> = {
  public: "a public address",
  loopback: "a loopback address",
  private: "a private address",
  "link-local": "a link-local address",
  metadata: "a cloud metadata address",
  unspecified: "an unspecified address",
  multicast: "a multicast address",
  broadcast: "a broadcast address",
  shared: "a shared (carrier-grade NAT) address",
  reserved: "a reserved address",
};

export type EgressDecision =
  | { readonly ok: true; readonly class: AddressClass }
  | { readonly ok: false; readonly class: AddressClass; readonly reason: string };

/** What a call is about to connect to. */
export interface EgressTarget {
  /** The IP address connected to (after DNS). */
  address: string;
  port: number;
  /** The host name the URL named, when it named one (host rules match it). */
  hostname?: string;
}

function ruleAllows(rule: EgressRule, address: Address, cls: AddressClass, t: EgressTarget) {
  if (rule.port !== undefined && rule.port !== t.port) return false;
  switch (rule.kind) {
    case "address":
      return rule.address === address.toNormalizedString();
    case "cidr": {
      const [base, bits] = rule.range;
      // A broad range never reaches metadata: only an entry naming the address does.
      return cls !== "metadata" && base.kind() === address.kind() && address.match(base, bits);
    }
    case "host":
      return cls !== "metadata" && t.hostname?.toLowerCase().replace(/\.$/, "") === rule.host;
  }
}

/** `127.0.0.1:4566`, `[::1]:4566`. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * Decides on one connection. The reason reads "127.0.0.1:4566 is a loopback address" (plus the
 * host name it came from, when there was one).
 */
export function checkEgress(policy: EgressPolicy, target: EgressTarget): EgressDecision {
  const address = parseAddress(target.address);
  if (!address) {
    return { ok: false, class: "reserved", reason: `${target.address} is not an IP address` };
  }
  const cls = classOf(address);
  if (cls === "public") return { ok: true, class: cls };
  if (policy.allow.some((rule) => ruleAllows(rule, address, cls, target))) {
    return { ok: true, class: cls };
  }
  const shown = address.toString();
  const from =
    target.hostname && parseAddress(target.hostname) === undefined
      ? ` (resolved from ${target.hostname})`
      : "";
  return {
    ok: false,
    class: cls,
    reason: `${formatEndpoint(shown, target.port)} is ${DESCRIPTION[cls]}${from}`,
  };
}

/** Schemes a task may call. */
export const EGRESS_SCHEMES: ReadonlySet<string> = new Set(["http:", "https:"]);

/** The port a URL connects to (its explicit port, else the scheme's default). */
export function urlPort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}
