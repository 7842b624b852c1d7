import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { PUBLIC_ONLY } from "../shared/egress.ts";
import type { BadInputError } from "../shared/errors.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import { detectFormat, parseSpecText, receiveSubmission, type SubmissionPart } from "./intake.ts";
import { checkSpecAlone } from "./spec-checks.ts";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const zip = Buffer.from("PK\x03\x04rest-of-zip");
const text = Buffer.from("name,city\nada,london\n");

function refusal(fn: () => unknown): BadInputError {
  try {
    fn();
  } catch (err) {
    return err as BadInputError;
  }
  throw new Error("expected a refusal");
}

describe("detectFormat", () => {
  it("trusts the extension when the content agrees", () => {
    expect(detectFormat("a.xlsx", "application/octet-stream", zip)).toBe("xlsx");
    expect(detectFormat("A.XLSX", "", zip)).toBe("xlsx");
    expect(detectFormat("a.csv", "application/octet-stream", text)).toBe("csv");
  });

  it("without an extension, goes by content type, then by the zip signature", () => {
    expect(detectFormat("upload", XLSX, zip)).toBe("xlsx");
    expect(detectFormat("upload", "text/csv; charset=utf-8", text)).toBe("csv");
    expect(detectFormat("upload", "application/octet-stream", zip)).toBe("xlsx");
  });

  it("refuses other files with 415 naming the file", () => {
    for (const [name, type, head] of [
      ["a.pdf", "application/pdf", Buffer.from("%PDF")],
      ["a.txt", "text/plain", text],
      ["upload", "application/octet-stream", text],
      ["a.xlsx", XLSX, text],
      ["a.csv", "text/csv", zip],
      ["a.csv", "text/csv", Buffer.from([0x61, 0, 0x62])],
    ] as const) {
      const err = refusal(() => detectFormat(name, type, head));
      expect(err.code).toBe("UNSUPPORTED_MEDIA_TYPE");
      expect(err.message).toContain(JSON.stringify(name));
    }
  });

  it("leaves an empty file to the workbook reader (422 'empty', not 415)", () => {
    expect(detectFormat("a.xlsx", XLSX, Buffer.alloc(0))).toBe("xlsx");
    expect(detectFormat("a.csv", "text/csv", Buffer.alloc(0))).toBe("csv");
  });
});

describe("parseSpecText", () => {
  it("parses JSON text and already-decoded objects alike", () => {
    const spec = { task: { name: "transform", options: { module: "upper" } } };
    expect(parseSpecText(JSON.stringify(spec)).task.name).toBe("transform");
    expect(parseSpecText(spec).shardSize).toBe(500);
  });

  it("names the problem: empty, not JSON, or the schema path", () => {
    expect(refusal(() => parseSpecText("  ")).message).toMatch(/"spec" is empty/);
    expect(refusal(() => parseSpecText("{")).message).toMatch(/"spec" is not valid JSON/);
    expect(
      refusal(() => parseSpecText({ task: { name: "transform" }, shardSize: 0 })).message,
    ).toMatch(/shardSize/);
  });
});

describe("receiveSubmission with spec checks", () => {
  it("refuses a spec sent first before a byte of the file is read or stored", async () => {
    let fileRead = false;
    let uploads = 0;
    const file = new Readable({
      read() {
        fileRead = true;
        this.push(null);
      },
    });
    async function* parts(): AsyncGenerator<SubmissionPart> {
      const spec = {
        task: {
          name: "http-enrich",
          options: { url: "http://169.254.169.254/latest/api/token", results: { v: "v" } },
        },
      };
      yield {
        type: "field",
        fieldname: "spec",
        value: JSON.stringify(spec),
        valueTruncated: false,
      };
      yield { type: "file", fieldname: "file", filename: "a.csv", mimetype: "text/csv", file };
    }
    const store = {
      upload: async () => {
        uploads++;
      },
    } as unknown as ObjectStore;
    const err = await receiveSubmission({ store }, parts(), {
      operationId: "op-1",
      maxUploadBytes: 1 << 20,
      checkSpec: (spec) => checkSpecAlone(spec, { egress: PUBLIC_ONLY }),
    }).then(
      () => undefined,
      (e: unknown) => e as BadInputError,
    );
    expect(err?.code).toBe("EGRESS_REFUSED");
    expect(err?.message).toBe(
      "spec task.options.url: egress refused: 169.254.169.254:80 is a cloud metadata address",
    );
    expect(fileRead).toBe(false);
    expect(uploads).toBe(0);
  });
});
