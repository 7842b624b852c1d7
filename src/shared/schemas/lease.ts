/**
 * The scheduler lease (`keys.schedulerLease()`): which scheduler process may act on the bucket
 * (split, merge, manage the fleet, drain the dead-letter queue, consume spot events), until
 * when, and who held it before. One record per bucket; only `src/scheduler/lease/` writes it,
 * always conditionally (create with `If-None-Match: *`, renew, release and take over with
 * `If-Match` on the ETag read).
 */
import { z } from "zod";

const timestamp = z.iso.datetime();

/** One holder's time with the lease, as far as the record knows it. */
export const leaseTenureSchema = z
  .object({
    /** `host/pid/random`: unique per process start. */
    holder: z.string().min(1).max(256),
    acquiredAt: timestamp,
    /**
     * When the lease lapses unless renewed (the holder's clock at the write that set it, plus
     * the duration). For a past tenure: when it ended at the latest.
     */
    expiresAt: timestamp,
    renewals: z.number().int().min(0),
  })
  .strict();

export type LeaseTenure = z.infer<typeof leaseTenureSchema>;

/** How many past tenures the record keeps (oldest dropped first). */
export const LEASE_HISTORY_LENGTH = 20;

export const schedulerLeaseSchema = z
  .object({
    v: z.literal(1),
    ...leaseTenureSchema.shape,
    /**
     * The lease's length as the holder configured it: a standby counts it from when it first
     * saw this version of the record, on its own clock (so clock skew between machines cannot
     * make it take over early).
     */
    durationMs: z.number().int().positive(),
    /** The holder stopped on purpose: a standby may take over at once. */
    released: z.boolean().optional(),
    /** Earlier tenures, oldest first, at most LEASE_HISTORY_LENGTH. */
    history: z.array(leaseTenureSchema).max(LEASE_HISTORY_LENGTH),
  })
  .strict();

export type SchedulerLease = z.infer<typeof schedulerLeaseSchema>;
