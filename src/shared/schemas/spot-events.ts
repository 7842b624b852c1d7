/**
 * EC2 spot events as an EventBridge rule delivers them to an SQS queue: the message body is the
 * event JSON itself (a rule target without an input transformer). Two detail types matter:
 *
 * - `EC2 Spot Instance Interruption Warning` — two minutes before EC2 interrupts a spot
 *   instance; `detail` is `{ "instance-id", "instance-action": "hibernate" | "stop" | "terminate" }`;
 * - `EC2 Instance Rebalance Recommendation` — the instance is at elevated risk of interruption
 *   (advisory, may come long before a warning, or with it, or never be followed by one);
 *   `detail` is `{ "instance-id" }`.
 *
 * The envelope (`version`, `id`, `detail-type`, `source: "aws.ec2"`, `account`, `time`, `region`,
 * `resources: [instance ARN]`, `detail`) follows the examples in the EC2 User Guide ("Spot
 * Instance interruption notices", "EC2 instance rebalance recommendations"). Fields we do not
 * read may change or be added by AWS, so objects are not strict; what we rely on is checked.
 * The local stack builds the same JSON (src/local/spot-events.ts).
 */
import { z } from "zod";

export const SPOT_INTERRUPTION_WARNING = "EC2 Spot Instance Interruption Warning";
export const REBALANCE_RECOMMENDATION = "EC2 Instance Rebalance Recommendation";

const envelope = {
  version: z.string(),
  /** EventBridge's event id: unique per event (a redelivery keeps it). */
  id: z.string().min(1),
  source: z.literal("aws.ec2"),
  /** Present on every EC2 event; not needed here. */
  account: z.string().optional(),
  /** When EC2 emitted the event, e.g. "2026-11-23T10:00:00Z". */
  time: z.iso.datetime({ offset: true }),
  region: z.string().min(1),
  /** The instance ARN. Its form varies (account or AZ in it): never parsed, `detail` names the instance. */
  resources: z.array(z.string()),
};

const instanceId = z.string().min(1);

export const spotInterruptionWarningSchema = z.object({
  ...envelope,
  "detail-type": z.literal(SPOT_INTERRUPTION_WARNING),
  detail: z.object({
    "instance-id": instanceId,
    "instance-action": z.enum(["hibernate", "stop", "terminate"]),
  }),
});

export const rebalanceRecommendationSchema = z.object({
  ...envelope,
  "detail-type": z.literal(REBALANCE_RECOMMENDATION),
  detail: z.object({ "instance-id": instanceId }),
});

export const spotEventSchema = z.discriminatedUnion("detail-type", [
  spotInterruptionWarningSchema,
  rebalanceRecommendationSchema,
]);
export type SpotInterruptionWarningEvent = z.infer<typeof spotInterruptionWarningSchema>;
export type RebalanceRecommendationEvent = z.infer<typeof rebalanceRecommendationSchema>;
export type SpotEvent = z.infer<typeof spotEventSchema>;
/** What EC2 does to an instance it interrupts. */
export type SpotAction = SpotInterruptionWarningEvent["detail"]["instance-action"];

/** What the fleet manager needs of an event, without the envelope. */
export interface SpotSignal {
  kind: "interruption-warning" | "rebalance-recommendation";
  instanceId: string;
  /** When EC2 emitted it (ms since the epoch). */
  at: number;
  /** The EventBridge event id (logs). */
  eventId: string;
  /** What EC2 will do to the instance (warnings only). */
  action?: SpotAction;
}

export function toSpotSignal(event: SpotEvent): SpotSignal {
  const base = {
    instanceId: event.detail["instance-id"],
    at: Date.parse(event.time),
    eventId: event.id,
  };
  return event["detail-type"] === SPOT_INTERRUPTION_WARNING
    ? { kind: "interruption-warning", ...base, action: event.detail["instance-action"] }
    : { kind: "rebalance-recommendation", ...base };
}

/**
 * Parses an SQS message body. Never throws: an invalid body comes back with a one-line reason
 * (it can never become valid, so the caller deletes it).
 */
export function parseSpotEvent(
  body: string,
): { ok: true; event: SpotEvent } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  const parsed = spotEventSchema.safeParse(json);
  if (parsed.success) return { ok: true, event: parsed.data };
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? issue.path.map(String).join(".") : "(event)";
  return { ok: false, reason: `${where}: ${issue?.message ?? "invalid"}` };
}
