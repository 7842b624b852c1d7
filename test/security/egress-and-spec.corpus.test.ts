/**
 * The project's own hostile-spec corpus, against the real local stack (SQS/S3 server, scheduler
 * and one worker as child processes), a canary HTTP source that nothing may reach, the local
 * instance metadata emulator, and one allowed source as the control that proves calls do go out.
 *
 * - What the intake can know (scheme, URL syntax, a literal address and port, template columns,
 *   unknown option keys, the plugin, the concurrency cap) is answered 400 naming the JSON path,
 *   and nothing is left in S3 nor listed as an operation.
 * - What depends on a row's values or on DNS (a host column, `localhost`, odd IPv4 forms in a
 *   cell) is refused by the worker at connect time: the row's `error` says why, and the canary
 *   and the metadata emulator receive zero requests.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForOperation } from "../../src/cli/wait.ts";
import { type LocalImds, startLocalImds } from "../../src/local/imds.ts";
import { type HttpSource, startHttpSource } from "../support/http-source.ts";
import {
  downloadRows,
  startTestStack,
  type TestStack,
  withStackStore,
} from "../support/local-stack.ts";

/** A source on loopback that counts what reaches it. */
async function startSource(answer: unknown): Promise<HttpSource & { hits: string[] }> {
  const hits: string[] = [];
  const source = await startHttpSource((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(answer));
  });
  return { ...source, hits };
}

let env: TestStack;
let canary: Awaited<ReturnType<typeof startSource>>;
let control: Awaited<ReturnType<typeof startSource>>;
let imds: LocalImds;
let csv: string;

const imdsPort = () => Number(new URL(imds.endpoint).port);
const imdsHits = () => [...imds.hits.values()].reduce((a, b) => a + b, 0);

beforeAll(async () => {
  canary = await startSource({ secret: "the canary was reached" });
  control = await startSource({ v: "ok" });
  imds = await startLocalImds({ instanceId: "i-canary", market: "spot" });
  env = await startTestStack("corpus", {
    workers: 1,
    // Exactly the control source: the canary, the metadata emulator and the stack's own servers
    // share its loopback address and stay out of reach.
    egressAllow: [`127.0.0.1:${control.port}`],
  });
  csv = path.join(env.dir, "ids.csv");
  await writeFile(csv, "id,name\n1,a\n2,b\n");
}, 90_000);

afterAll(async () => {
  await env?.close();
  await canary?.close();
  await control?.close();
  await imds?.close();
}, 60_000);

/** Every key in the stack's bucket. */
const bucketKeys = () => withStackStore(env.stack, (store) => store.list(""));

async function submitRaw(
  spec: unknown,
  file = csv,
): Promise<{ status: number; body: { error?: { code: string; message: string }; id?: string } }> {
  const form = new FormData();
  form.append("spec", JSON.stringify(spec));
  form.append("file", new Blob([await readFile(file)], { type: "text/csv" }), path.basename(file));
  const res = await fetch(`${env.stack.apiUrl}/operations`, { method: "POST", body: form });
  return { status: res.status, body: (await res.json()) as never };
}

const http = (url: string, extra: Record<string, unknown> = {}) => ({
  task: { name: "http-enrich", options: { url, results: { v: "v" }, ...extra } },
});

interface IntakeCase {
  name: string;
  spec: () => unknown;
  code: "EGRESS_REFUSED" | "SPEC_INVALID";
  message: () => string | RegExp;
}

const port = () => canary.port;
/** Literal-address SSRF forms: the intake knows the address and refuses it. */
const literalCases: IntakeCase[] = [
  [
    "loopback",
    () => `http://127.0.0.1:${port()}/x`,
    () => `127.0.0.1:${port()} is a loopback address`,
  ],
  [
    "decimal IPv4",
    () => `http://2130706433:${port()}/`,
    () => `127.0.0.1:${port()} is a loopback address`,
  ],
  ["hex IPv4", () => `http://0x7f.1:${port()}/`, () => `127.0.0.1:${port()} is a loopback address`],
  [
    "octal IPv4",
    () => `http://017700000001:${port()}/`,
    () => `127.0.0.1:${port()} is a loopback address`,
  ],
  ["IPv6 loopback", () => `http://[::1]:${port()}/`, () => `[::1]:${port()} is a loopback address`],
  [
    "IPv4-mapped IPv6",
    () => `http://[::ffff:127.0.0.1]:${port()}/`,
    () => `127.0.0.1:${port()} is a loopback address`,
  ],
  [
    "unspecified",
    () => `http://0.0.0.0:${port()}/`,
    () => `0.0.0.0:${port()} is an unspecified address`,
  ],
  [
    "the metadata emulator",
    () => `http://127.0.0.1:${imdsPort()}/latest/api/token`,
    () => `127.0.0.1:${imdsPort()} is a loopback address`,
  ],
  [
    "the scheduler API",
    () => `${env.stack.apiUrl}/operations`,
    () => `${new URL(env.stack.apiUrl!).host} is a loopback address`,
  ],
  [
    "the S3 server",
    () => `${env.stack.endpoint}/${env.stack.resources.bucket}/`,
    () => `${new URL(env.stack.endpoint).host} is a loopback address`,
  ],
  [
    "EC2 metadata (IPv4)",
    () => "http://169.254.169.254/latest/api/token",
    () => "169.254.169.254:80 is a cloud metadata address",
  ],
  [
    "EC2 metadata (IPv6)",
    () => "http://[fd00:ec2::254]/latest/meta-data/",
    () => "[fd00:ec2::254]:80 is a cloud metadata address",
  ],
  [
    "link-local IPv4",
    () => "http://169.254.10.10/",
    () => "169.254.10.10:80 is a link-local address",
  ],
  ["link-local IPv6", () => "http://[fe80::1]/", () => "[fe80::1]:80 is a link-local address"],
  ["private 10/8", () => "http://10.0.0.1/", () => "10.0.0.1:80 is a private address"],
  ["private 172.16/12", () => "https://172.16.5.4/", () => "172.16.5.4:443 is a private address"],
  [
    "private 192.168/16",
    () => "http://192.168.1.1:8080/",
    () => "192.168.1.1:8080 is a private address",
  ],
  ["unique local IPv6", () => "http://[fc00::1]/", () => "[fc00::1]:80 is a private address"],
  ["multicast", () => "http://224.0.0.1/", () => "224.0.0.1:80 is a multicast address"],
].map(([name, url, reason]) => ({
  name: `${name as string} (literal address)`,
  spec: () => http((url as () => string)()),
  code: "EGRESS_REFUSED" as const,
  message: () => `spec task.options.url: egress refused: ${(reason as () => string)()}`,
}));

const badSpecCases: IntakeCase[] = [
  {
    name: "file:// scheme",
    spec: () => http("file:///etc/passwd"),
    code: "SPEC_INVALID",
    message: () => "spec task.options.url: only http and https are supported, got file:",
  },
  {
    name: "gopher:// scheme",
    spec: () => http(`gopher://127.0.0.1:${port()}/_GET`),
    code: "SPEC_INVALID",
    message: () => "spec task.options.url: only http and https are supported, got gopher:",
  },
  {
    name: "not a URL",
    spec: () => http("not a url/{id}"),
    code: "SPEC_INVALID",
    message: () => /^spec task\.options\.url: not a URL/,
  },
  {
    name: "unknown option key",
    spec: () => http("https://registry.example/{id}", { timout: 5 }),
    code: "SPEC_INVALID",
    message: () => "spec task.options.timout: unknown field",
  },
  {
    name: "template column not in the header row",
    spec: () => http("https://registry.example/{nmae}"),
    code: "SPEC_INVALID",
    message: () => "spec task.options.url: unknown column {nmae} (columns: id, name)",
  },
  {
    name: "body column not in the header row",
    spec: () => http("https://registry.example/", { method: "POST", body: '{"x": "{idd}"}' }),
    code: "SPEC_INVALID",
    message: () => /^spec task\.options\.body: unknown column \{idd\}/,
  },
  {
    name: "concurrency over the cap",
    spec: () => http("https://registry.example/{id}", { concurrency: 1000 }),
    code: "SPEC_INVALID",
    message: () => /^spec task\.options\.concurrency: .*200/,
  },
  {
    name: "unknown plugin",
    spec: () => ({ task: { name: "transform", options: { module: "no-such-plugin" } } }),
    code: "SPEC_INVALID",
    message: () =>
      /^spec task\.options\.module: unknown plugin "no-such-plugin" \(the workers have: .*noop/,
  },
];

describe("hostile and malformed specs refused at intake (400, nothing persisted)", () => {
  it.each([...literalCases, ...badSpecCases].map((c) => [c.name, c] as const))(
    "%s",
    async (_name, c) => {
      const before = await bucketKeys();
      const { status, body } = await submitRaw(c.spec());
      expect(status).toBe(400);
      expect(body.error?.code).toBe(c.code);
      const message = c.message();
      if (typeof message === "string") expect(body.error?.message).toBe(message);
      else expect(body.error?.message).toMatch(message);
      expect(await bucketKeys()).toEqual(before);
      expect(canary.hits).toEqual([]);
      expect(imdsHits()).toBe(0);
    },
    30_000,
  );

  it("leaves no operation behind for any of them", async () => {
    const list = (await env.client.list()) as { operations: unknown[] };
    expect(list.operations).toEqual([]);
  });
});

describe("row-time refusals on the address actually connected to", () => {
  /** Each row names a target the intake cannot know: it comes from the row (and DNS). */
  const rows = () => [
    {
      host: "localhost",
      port: canary.port,
      expect: new RegExp(
        `^egress refused: (127\\.0\\.0\\.1|\\[::1\\]):${canary.port} is a loopback address \\(resolved from localhost\\)$`,
      ),
    },
    {
      host: "127.0.0.1",
      port: canary.port,
      expect: `egress refused: 127.0.0.1:${canary.port} is a loopback address`,
    },
    {
      host: "2130706433",
      port: canary.port,
      expect: `egress refused: 127.0.0.1:${canary.port} is a loopback address`,
    },
    {
      host: "0x7f.1",
      port: imdsPort(),
      expect: `egress refused: 127.0.0.1:${imdsPort()} is a loopback address`,
    },
    {
      host: "017700000001",
      port: imdsPort(),
      expect: `egress refused: 127.0.0.1:${imdsPort()} is a loopback address`,
    },
    {
      host: "localhost",
      port: imdsPort(),
      expect: new RegExp(
        `^egress refused: (127\\.0\\.0\\.1|\\[::1\\]):${imdsPort()} is a loopback address \\(resolved from localhost\\)$`,
      ),
    },
    {
      host: "169.254.169.254",
      port: 80,
      expect: "egress refused: 169.254.169.254:80 is a cloud metadata address",
    },
    { host: "10.0.0.1", port: 80, expect: "egress refused: 10.0.0.1:80 is a private address" },
    // The control: the one source the stack allows is reached, so refusals are not an outage.
    { host: "127.0.0.1", port: control.port, expect: null },
  ];

  it("refuses every hostile row with the reason in its error cell; canary and metadata see nothing", async () => {
    const input = path.join(env.dir, "targets.csv");
    await writeFile(
      input,
      `host,port\n${rows()
        .map((r) => `${r.host},${r.port}`)
        .join("\n")}\n`,
    );
    // The metadata token request of the SSRF report: PUT with the TTL header.
    const spec = {
      ...http("http://{host}:{port}/latest/api/token", {
        method: "PUT",
        headers: { "x-aws-ec2-metadata-token-ttl-seconds": "21600" },
        retries: 0,
      }),
      toleratedFailurePercent: 100,
    };
    const { client } = env;
    const { id } = await client.submit(input, spec);
    const view = await waitForOperation(client, id, { progress: false, intervalMs: 200 });
    expect(view.status).toBe("succeeded-with-failures");

    const out = await downloadRows(client, id);
    expect(out[0]).toEqual(["host", "port", "v", "error"]);
    const expected = rows();
    expect(out).toHaveLength(expected.length + 1);
    expected.forEach((row, i) => {
      const [, , v, error] = out[i + 1]!;
      if (row.expect === null) {
        expect(v).toBe("ok");
        expect(error ?? null).toBeNull();
      } else if (typeof row.expect === "string") {
        expect(error).toBe(row.expect);
      } else {
        expect(error).toMatch(row.expect);
      }
    });
    expect(canary.hits).toEqual([]);
    expect(imdsHits()).toBe(0);
    expect(control.hits).toEqual(["PUT /latest/api/token"]);
  }, 90_000);
});
