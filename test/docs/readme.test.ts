/**
 * The README says what the code does: every configuration variable has a row (with its default),
 * every row names a real variable, every `npm run` script, CLI command and flag, API route and
 * source path it names exists. A rename that forgets the README fails here, not in a reader's
 * shell.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli/program.ts";
import { addDemoCommand } from "../../src/demo/command.ts";
import { buildApp } from "../../src/scheduler/api/app.ts";
import type { SchedulerMetrics } from "../../src/scheduler/metrics/metrics.ts";
import type { NotificationRecords } from "../../src/scheduler/notify/records.ts";
import { OperationService } from "../../src/scheduler/operations.ts";
import { systemClock } from "../../src/shared/clock.ts";
import { CONFIG_SETTINGS } from "../../src/shared/config.ts";
import { silentLogger } from "../../src/shared/logger.ts";
import type { ObjectStore } from "../../src/shared/object-store.ts";
import { fleetEventKinds } from "../../src/shared/schemas/fleet.ts";
import { operationSpecInputSchema } from "../../src/shared/schemas/operation.ts";
import { httpEnrichOptionsSchema, transformOptionsSchema } from "../../src/shared/schemas/tasks.ts";

const root = path.resolve(import.meta.dirname, "../..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");
const README = read("README.md");
/** Every document a reader follows for commands (CHANGELOG is history and may name old ones). */
const DOCS = ["README.md", "BENCHMARKS.md", "SECURITY.md", "docs/deploy.md", "docs/simulation.md"];

/** The body of the README's `## title` section, up to the next `## ` heading. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  expect(start, `README section "${title}"`).toBeGreaterThan(-1);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end === -1 ? undefined : end);
}

/** A markdown table row's cells (a `\|` inside a cell stays in it). */
const cells = (row: string) =>
  row
    .trim()
    .replace(/^\|/, "")
    .replace(/\|$/, "")
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());

/** The `code` spans of a text. */
const codeSpans = (text: string) => [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);

describe("the README's configuration table", () => {
  const rows = section("Configuration")
    .split("\n")
    .filter((line) => /^\|\s*`/.test(line))
    .map(cells);
  const named = rows.flatMap((row) =>
    codeSpans(row[0]!).map((name) => ({ name, defaults: codeSpans(row.at(-1)!) })),
  );
  const variables = Object.keys(CONFIG_SETTINGS);

  it("has a row for every SHARDFLEET_* variable the components parse, each once", () => {
    const documented = named.map((n) => n.name);
    expect(variables.filter((v) => !documented.includes(v))).toEqual([]);
    expect(documented.filter((v, i) => documented.indexOf(v) !== i)).toEqual([]);
  });

  it("names only variables that exist (SHARDFLEET_* parsed in config.ts, or standard AWS ones)", () => {
    const unknown = named
      .map((n) => n.name)
      .filter((v) => !variables.includes(v) && !/^AWS_[A-Z0-9_]+$/.test(v));
    expect(unknown).toEqual([]);
  });

  it("gives each variable's default as the code has it", () => {
    // The plugin directory's default is an absolute path to the package's plugins/.
    const described: Record<string, string> = { SHARDFLEET_PLUGIN_DIR: "plugins/" };
    const wrong = [];
    for (const { name, defaults } of named) {
      const schema = CONFIG_SETTINGS[name];
      if (!schema) continue;
      const parsed = schema.safeParse(undefined);
      if (!parsed.success || parsed.data === undefined) continue;
      const expected = described[name] ?? String(parsed.data);
      if (!defaults.includes(expected)) wrong.push({ name, expected, readme: defaults });
    }
    expect(wrong).toEqual([]);
  });
});

describe("the README's spec and task options", () => {
  it("has a row for every field of the operation spec", () => {
    const rows = section("Submitting work (CLI)")
      .split("\n")
      .filter((line) => /^\|\s*`/.test(line))
      .flatMap((line) => codeSpans(cells(line)[0]!));
    // `task.name` and `task.options` stand for `task`; `checkpoint.everyRows` for `checkpoint`.
    const documented = new Set(rows.map((field) => field.split(".")[0]));
    const missing = Object.keys(operationSpecInputSchema.shape).filter((f) => !documented.has(f));
    expect(missing).toEqual([]);
  });

  it("names every option of each built-in task", () => {
    const tasks = section("Submitting work (CLI)");
    const spans = new Set(codeSpans(tasks.slice(tasks.indexOf("\n### Tasks\n"))));
    const missing = [
      ...Object.keys(httpEnrichOptionsSchema.shape),
      ...Object.keys(transformOptionsSchema.shape),
    ].filter((option) => !spans.has(option));
    expect(missing).toEqual([]);
  });
});

describe("the README's fleet events", () => {
  it("names every fleet event kind", () => {
    const spans = new Set(codeSpans(section("The fleet")));
    expect(fleetEventKinds.filter((kind) => !spans.has(kind))).toEqual([]);
  });
});

describe("commands the documents name", () => {
  it("every `npm run X` is a script in package.json", () => {
    const { scripts } = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
    const missing = DOCS.flatMap((doc) =>
      [...read(doc).matchAll(/npm run ([a-z][\w:-]*)/g)]
        .map((m) => m[1]!)
        .filter((name) => !(name in scripts))
        .map((name) => `${doc}: npm run ${name}`),
    );
    expect(missing).toEqual([]);
  });

  it("every `shardfleet COMMAND --flag` is a command with that flag", () => {
    const program = buildProgram([addDemoCommand]);
    const find = (words: string[]): Command | undefined => {
      let command: Command | undefined = program;
      let found: Command | undefined;
      for (const word of words) {
        command = command?.commands.find((c) => c.name() === word);
        if (!command) break;
        found = command;
      }
      return found;
    };
    // Command lines in code blocks, and `shardfleet …` code spans in the prose.
    const lines = DOCS.flatMap((doc) => {
      const text = read(doc);
      const blocks = [...text.matchAll(/```(?:sh|bash)?\n([\s\S]*?)```/g)].flatMap((m) =>
        m[1]!.replace(/\\\n\s*/g, " ").split("\n"),
      );
      return [...blocks, ...codeSpans(text)]
        .map((line) => line.replace(/#.*$/, ""))
        .filter((line) => /(^|&&\s*|npx )shardfleet [a-z]/.test(line))
        .map((line) => ({ doc, line: line.slice(line.indexOf("shardfleet ")) }));
    });
    expect(lines.length).toBeGreaterThan(20);
    const wrong: string[] = [];
    for (const { doc, line } of lines) {
      const words = line.split(/\s+/).slice(1);
      const names = words.filter((w) => /^[a-z]+$/.test(w));
      const command = find(names.slice(0, 2));
      if (!command) {
        wrong.push(`${doc}: ${line} (no command ${names[0]})`);
        continue;
      }
      const flags = new Set(["--help", "-h"]);
      for (const option of command.options) {
        if (option.long) flags.add(option.long);
        if (option.short) flags.add(option.short);
      }
      if (command.parent === program || command === program) flags.add("--version");
      for (const flag of line.match(/(?<![\w-])--?[a-z][\w-]*/g) ?? []) {
        if (!flags.has(flag)) wrong.push(`${doc}: ${line} (${command.name()} has no ${flag})`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe("the README's HTTP API table", () => {
  it("names routes the scheduler serves", async () => {
    // Route registration only: no request is made, so nothing reads the store or the metrics.
    const logger = silentLogger();
    const app = buildApp({
      operations: new OperationService({
        store: {} as ObjectStore,
        logger,
        clock: systemClock,
      }),
      logger,
      maxUploadBytes: 1 << 20,
      metrics: {} as SchedulerMetrics,
      notifications: {} as NotificationRecords,
    });
    await app.ready();
    const routes = section("HTTP API")
      .split("\n")
      .filter((line) => /^\|\s*`(GET|POST|PATCH|PUT|DELETE) /.test(line))
      .flatMap((line) => codeSpans(cells(line)[0]!))
      .filter((span) => /^(GET|POST|PATCH|PUT|DELETE) \//.test(span));
    expect(routes.length).toBeGreaterThan(15);
    // `/operations[?status=S…]`, `/operations/:id/cost[?format=…]`: the path alone.
    const missing = routes.filter((route) => {
      const [method, target] = route.split(" ") as ["GET", string];
      return !app.hasRoute({ method, url: target.replace(/\[?\?.*$/, "") });
    });
    expect(missing).toEqual([]);
    await app.close();
  });
});

describe("source paths the documents name", () => {
  // The checkout's own files: generated and installed trees are not walked.
  const skip = new Set(["node_modules", "dist", ".git", "test-artifacts", ".shardfleet", "out"]);
  const tracked = readdirSync(root, { withFileTypes: true })
    .filter((entry) => !skip.has(entry.name))
    .flatMap((entry) =>
      entry.isDirectory()
        ? [
            entry.name,
            ...readdirSync(path.join(root, entry.name), { recursive: true, encoding: "utf8" }).map(
              (f) => `${entry.name}/${f}`,
            ),
          ]
        : [entry.name],
    )
    .map((f) => f.split(path.sep).join("/"));

  it("exist, whole (src/…, test/…) or by their last parts (`fleet-manager/observe-source.ts`)", () => {
    const missing = DOCS.flatMap((doc) =>
      [
        ...codeSpans(read(doc)),
        ...[...read(doc).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!),
      ]
        .filter((span) => !/^https?:/.test(span))
        .filter(
          (span) =>
            /^[\w./-]+\.(ts|mjs|md|yaml|tsx)$/.test(span) ||
            /^(src|test|bench|scripts|docs|pulumi|ami|plugins|\.ci)\/[\w./-]*$/.test(span),
        )
        .map((span) => span.replace(/\/$/, ""))
        .filter((span) => {
          const inDocDir = path.posix.join(path.posix.dirname(doc), span);
          // `bench/merge`: a module named without its extension.
          const names = [span, inDocDir, `${span}.ts`];
          return !tracked.some((f) => names.some((n) => f === n || f.endsWith(`/${n}`)));
        })
        .map((span) => `${doc}: ${span}`),
    );
    expect(missing).toEqual([]);
  });
});

describe("links between the documents", () => {
  /** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes. */
  const slug = (heading: string) =>
    heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
  const anchorsOf = (doc: string) => {
    const seen = new Map<string, number>();
    return read(doc)
      .replace(/```[\s\S]*?```/g, "")
      .split("\n")
      .filter((line) => /^#{1,6} /.test(line))
      .map((line) => {
        const base = slug(line.replace(/^#+ /, "").trim());
        const n = seen.get(base) ?? 0;
        seen.set(base, n + 1);
        return n === 0 ? base : `${base}-${n}`;
      });
  };

  it("point at headings that exist (`#anchor`, `FILE.md#anchor`)", () => {
    const broken = DOCS.flatMap((doc) =>
      [...read(doc).matchAll(/\]\(([\w./-]*\.md)?#([^)\s]+)\)/g)]
        .map((m) => ({ file: m[1], anchor: m[2]! }))
        .filter(({ file, anchor }) => {
          const target = file ? path.posix.join(path.posix.dirname(doc), file) : doc;
          return !anchorsOf(target).includes(anchor);
        })
        .map(({ file, anchor }) => `${doc}: ${file ?? ""}#${anchor}`),
    );
    expect(broken).toEqual([]);
  });
});
