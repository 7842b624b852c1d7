/**
 * Bodies the web console needs beyond the operation contracts: the events-stream ticket, what
 * the scheduler offers for a submission, and a workbook's preview.
 */
import { z } from "zod";

/** `POST /operations/:id/events/ticket`: a short-lived ticket for `GET …/events?ticket=`. */
export const eventTicketSchema = z.object({
  ticket: z.string(),
  expiresAt: z
    .string()
    .describe("the ticket opens a stream until then (reconnects need a new one)"),
});
export type EventTicket = z.infer<typeof eventTicketSchema>;

/** `GET /tasks`: the tasks a submission may name, and the notification channels that are on. */
export const taskOfferSchema = z.object({
  tasks: z.array(
    z.object({
      name: z.enum(["http-enrich", "transform"]),
      plugins: z
        .array(z.string())
        .describe("transform: the plugins the workers have (SHARDFLEET_PLUGIN_DIR)")
        .optional(),
    }),
  ),
  notify: z.object({ webhook: z.boolean(), email: z.boolean() }),
});
export type TaskOffer = z.infer<typeof taskOfferSchema>;

/** `POST /workbooks/preview`: the sheets, the header row and the first rows, as the intake reads them. */
export const workbookPreviewSchema = z.object({
  format: z.enum(["xlsx", "csv"]),
  sheets: z.array(z.string()).describe("xlsx: every sheet in workbook order; csv: none"),
  sheet: z.string().nullable().describe("the sheet read (xlsx), null for csv"),
  headers: z.array(z.string()),
  rows: z
    .array(z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])))
    .describe("the first data rows, cells as text, numbers or booleans (dates as ISO text)"),
});
export type WorkbookPreview = z.infer<typeof workbookPreviewSchema>;
