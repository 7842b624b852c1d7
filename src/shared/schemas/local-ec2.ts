/**
 * The wire format of the local stack's EC2 stand-in (src/local/local-ec2.ts), spoken by the
 * local capacity adapter (src/scheduler/fleet/local-capacity.ts). Plain JSON over HTTP, the
 * capacity port's types one to one:
 *
 *   POST /launch    LaunchRequest            → LaunchResult (idempotent per clientToken)
 *   POST /terminate { ids }                  → { terminating: ids it knew }
 *   POST /describe  { tags }                 → { instances: InstanceInfo[] }
 *   errors          4xx/5xx { error: { code, message } }
 */
import { z } from "zod";
import { capacityErrorKinds, instanceStates, markets } from "../capacity.ts";

const market = z.enum(markets);
const tags = z.record(z.string(), z.string());

export const poolSchema = z.strictObject({
  instanceType: z.string().min(1),
  subnetId: z.string().min(1).optional(),
  availabilityZone: z.string().min(1).optional(),
});

export const launchRequestSchema = z.strictObject({
  market,
  count: z.number().int().min(1).max(1000),
  pools: z.array(poolSchema).min(1),
  tags,
  clientToken: z.string().min(1).max(64),
});

export const launchResultSchema = z.object({
  launched: z.array(
    z.object({
      instanceId: z.string(),
      market,
      instanceType: z.string(),
      availabilityZone: z.string().optional(),
      subnetId: z.string().optional(),
      launchedAt: z.number(),
    }),
  ),
  errors: z.array(
    z.object({
      pool: poolSchema.optional(),
      market: market.optional(),
      code: z.string(),
      message: z.string(),
      kind: z.enum(capacityErrorKinds),
    }),
  ),
  requestId: z.string().optional(),
});

export const terminateRequestSchema = z.strictObject({ ids: z.array(z.string().min(1)) });
export const terminateResultSchema = z.object({ terminating: z.array(z.string()) });

export const describeRequestSchema = z.strictObject({ tags });
export const describeResultSchema = z.object({
  instances: z.array(
    z.object({
      instanceId: z.string(),
      market,
      instanceType: z.string(),
      availabilityZone: z.string().optional(),
      state: z.enum(instanceStates),
      launchedAt: z.number(),
      tags,
    }),
  ),
});

export const localEc2ErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});
