/**
 * XML bytes → SAX events in batches (one batch per input chunk), with saxes. Batching keeps
 * the per-event cost off the promise queue: a sheet has millions of tags.
 */
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { SaxesParser } from "saxes";

/** A tag as the SAX parser reports it. */
export interface SaxTag {
  name: string;
  attributes: Record<string, string>;
}

export type SaxEvent =
  | { eventType: "opentag"; value: SaxTag }
  | { eventType: "closetag"; value: SaxTag }
  | { eventType: "text"; value: string };

/** Yields the events of each chunk of `input`; throws the parser's error for malformed XML. */
export async function* saxBatches(
  input: AsyncIterable<Buffer | string>,
): AsyncGenerator<SaxEvent[]> {
  const parser = new SaxesParser();
  const decoder = new StringDecoder("utf8");
  let error: Error | undefined;
  let events: SaxEvent[] = [];
  parser.on("error", (err) => {
    error ??= err;
  });
  parser.on("opentag", (tag) =>
    events.push({ eventType: "opentag", value: tag as unknown as SaxTag }),
  );
  parser.on("closetag", (tag) =>
    events.push({ eventType: "closetag", value: tag as unknown as SaxTag }),
  );
  parser.on("text", (text) => events.push({ eventType: "text", value: text }));
  for await (const chunk of input) {
    parser.write(typeof chunk === "string" ? chunk : decoder.write(chunk));
    if (error) throw error;
    yield events;
    events = [];
  }
  parser.write(decoder.end());
  parser.close();
  if (error) throw error;
  if (events.length > 0) yield events;
}

/** Drops a namespace prefix: some producers (the .NET OpenXML SDK) write `<x:c>`, `<x:v>`. */
export function localName(name: string): string {
  const colon = name.indexOf(":");
  return colon === -1 ? name : name.slice(colon + 1);
}

/** Every event of `input`, one at a time (for the small parts, where batching buys nothing). */
export async function* saxEvents(input: Readable): AsyncGenerator<SaxEvent> {
  for await (const batch of saxBatches(input)) yield* batch;
}
