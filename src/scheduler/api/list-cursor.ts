/**
 * The opaque cursor of `GET /operations`: the last id of a page, base64url-encoded with a
 * version, so clients treat it as a token and the scheme can change without breaking them.
 */
import { BadInputError } from "../../shared/errors.ts";
import { OPERATION_ID_PATTERN } from "../operations.ts";

const PREFIX = "v1:";

export function encodeListCursor(lastId: string): string {
  return Buffer.from(`${PREFIX}${lastId}`, "utf-8").toString("base64url");
}

/** The id after which the next page starts; 400 naming `cursor` for anything else. */
export function decodeListCursor(cursor: string): string {
  const text = Buffer.from(cursor, "base64url").toString("utf-8");
  const id = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : "";
  if (!OPERATION_ID_PATTERN.test(id)) {
    throw new BadInputError(
      "BAD_REQUEST",
      "querystring.cursor: not a cursor this API gave out (pass nextCursor unchanged)",
    );
  }
  return id;
}
