/**
 * Who is calling: the configured tokens (by hash) with their tenant and role, and each tenant's
 * caps (its token lines' caps over the SHARDFLEET_TENANT_* defaults). Built once at start.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import {
  type ApiToken,
  DEFAULT_TENANT,
  sha256Hex,
  type TenantCaps,
  type Viewer,
} from "../../shared/schemas/tokens.ts";

/** The caller of a request, as the routes see it. */
export interface Principal extends Viewer {
  /**
   * What rate limits count by: the first 16 hex digits of the token's hash, or `anonymous`.
   * Never the token.
   */
  key: string;
}

/** Without tokens the API is one user's: the `default` tenant, seeing everything. */
export const ANONYMOUS: Principal = Object.freeze({
  tenant: DEFAULT_TENANT,
  role: "admin" as const,
  key: "anonymous",
});

interface KnownToken {
  digest: Buffer;
  principal: Principal;
}

export class TenantDirectory {
  readonly #known: KnownToken[];
  readonly #caps = new Map<string, TenantCaps>();
  readonly #defaults: TenantCaps;
  /** Plain tokens of the old format (tenant `default`). */
  readonly legacyTokens: number;

  /** @param defaults caps of a tenant whose token lines name none (SHARDFLEET_TENANT_*) */
  constructor(tokens: readonly ApiToken[], defaults: TenantCaps = {}) {
    this.#defaults = defaults;
    this.legacyTokens = tokens.filter((t) => typeof t === "string").length;
    this.#known = tokens.map((t) => {
      const sha256 = typeof t === "string" ? sha256Hex(t) : t.sha256;
      const principal: Principal =
        typeof t === "string"
          ? { tenant: DEFAULT_TENANT, role: "member", key: sha256.slice(0, 16) }
          : { tenant: t.tenant, role: t.role, key: sha256.slice(0, 16) };
      if (typeof t !== "string") {
        this.#caps.set(t.tenant, { ...this.#caps.get(t.tenant), ...t.caps });
      }
      return { digest: Buffer.from(sha256, "hex"), principal };
    });
  }

  /** No token configured: every request is ANONYMOUS. */
  get anonymous(): boolean {
    return this.#known.length === 0;
  }

  /** Tenants named in the tokens (for logs and the fleet caps). */
  get tenants(): string[] {
    return [...new Set(this.#known.map((k) => k.principal.tenant))];
  }

  /**
   * The principal a presented token belongs to, or undefined. Equal-length digests let
   * timingSafeEqual compare a token of any length, and every known token is compared (no early
   * exit), so timing tells neither which token nor how much matched.
   */
  authenticate(presented: string): Principal | undefined {
    const digest = createHash("sha256").update(presented).digest();
    let match: Principal | undefined;
    for (const known of this.#known) {
      if (timingSafeEqual(digest, known.digest)) match ??= known.principal;
    }
    return match;
  }

  /** Caps of a tenant no token line gives caps to (the SHARDFLEET_TENANT_* settings). */
  get defaultCaps(): TenantCaps {
    return { ...this.#defaults };
  }

  /** The tenant's caps: what its token lines name, else the defaults. */
  capsOf(tenant: string): TenantCaps {
    return { ...this.#defaults, ...this.#caps.get(tenant) };
  }
}
