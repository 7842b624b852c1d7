/**
 * What the intake checks in a spec beyond its schema, before anything runs: the `{column}`
 * placeholders against the header row, the URL's syntax and scheme, a literal host and port the
 * egress policy refuses, and the `transform` plugin's existence. What depends on a row's values
 * or on DNS is left to the worker, where it becomes that row's error.
 *
 * Every refusal names the spec's JSON path, as the schema's own refusals do.
 */
import { checkEgress, type EgressPolicy, PUBLIC_ONLY, parseAddress } from "../shared/egress.ts";
import { BadInputError } from "../shared/errors.ts";
import { listPlugins } from "../shared/plugins.ts";
import type { OperationSpec } from "../shared/schemas/operation.ts";
import type { HttpEnrichOptions, TransformOptions } from "../shared/schemas/tasks.ts";
import { compileTemplate, urlTemplateShape } from "../shared/url-template.ts";
import { checkNotify, type NotifyChannels } from "./notify/spec-check.ts";

export interface SpecCheckOptions {
  /** The policy the workers apply (SHARDFLEET_EGRESS_ALLOW). @default PUBLIC_ONLY */
  egress?: EgressPolicy;
  /**
   * The workers' plugin directory (SHARDFLEET_PLUGIN_DIR; workers run the same image).
   * @default undefined (plugin names are not checked)
   */
  pluginDir?: string;
  /** Which notification channels the deployment has on. @default both off */
  notify?: NotifyChannels;
}

const NOTIFY_OFF: NotifyChannels = { webhook: false, email: false };

function refuse(path: string, message: string, code: "SPEC_INVALID" | "EGRESS_REFUSED") {
  return new BadInputError(code, `spec ${path}: ${message}`, { details: { path } });
}

/**
 * Everything but the header row: run the moment the spec arrives, so a bad spec sent before its
 * file is refused before a byte of the file is stored. Throws BadInputError (SPEC_INVALID or
 * EGRESS_REFUSED, both 400) naming the JSON path.
 */
export async function checkSpecAlone(
  spec: OperationSpec,
  options: SpecCheckOptions = {},
): Promise<void> {
  checkNotify(spec.notify, options.egress ?? PUBLIC_ONLY, options.notify ?? NOTIFY_OFF);
  switch (spec.task.name) {
    case "http-enrich":
      return checkHttpEnrich(spec.task.options, options.egress ?? PUBLIC_ONLY);
    case "transform":
      return checkTransform(spec.task.options, options.pluginDir);
  }
}

/** The `{column}` placeholders against the input's header row (SPEC_INVALID naming the path). */
export function checkSpecColumns(spec: OperationSpec, headers: readonly string[]): void {
  if (spec.task.name !== "http-enrich") return;
  const { options } = spec.task;
  const known = new Set(headers);
  const templates = [
    ["task.options.url", compileTemplate(options.url)],
    ["task.options.body", options.body === undefined ? undefined : compileTemplate(options.body)],
  ] as const;
  for (const [path, template] of templates) {
    const unknown = template?.columns.find((c) => !known.has(c));
    if (unknown !== undefined) {
      throw refuse(
        path,
        `unknown column {${unknown}} (columns: ${headers.join(", ")})`,
        "SPEC_INVALID",
      );
    }
  }
}

/** Both checks: the spec alone, then its columns against `headers`. */
export async function checkSpec(
  spec: OperationSpec,
  headers: readonly string[],
  options: SpecCheckOptions = {},
): Promise<void> {
  await checkSpecAlone(spec, options);
  checkSpecColumns(spec, headers);
}

function checkHttpEnrich(options: HttpEnrichOptions, egress: EgressPolicy): void {
  const url = compileTemplate(options.url);
  const shape = urlTemplateShape(url);
  if (!shape.ok) {
    throw refuse(
      "task.options.url",
      `not a URL: ${JSON.stringify(options.url)} (an absolute http(s) URL; {column} placeholders fill in row values)`,
      "SPEC_INVALID",
    );
  }
  if (shape.protocol !== "http:" && shape.protocol !== "https:") {
    throw refuse(
      "task.options.url",
      `only http and https are supported, got ${shape.protocol}`,
      "SPEC_INVALID",
    );
  }
  // A literal address is decided now; a host name waits for DNS at connect time.
  if (shape.literalHost === undefined || !parseAddress(shape.literalHost)) return;
  const address = shape.literalHost;
  const decision =
    shape.literalPort !== undefined
      ? checkEgress(egress, { address, port: shape.literalPort })
      : // The port comes from the row: refuse only what no port of the address could pass.
        checkEgress(
          { allow: egress.allow.map(({ port: _port, ...rule }) => rule) },
          { address, port: 0 },
        );
  if (!decision.ok) {
    const reason =
      shape.literalPort === undefined ? decision.reason.replace(/:0 is /, " is ") : decision.reason;
    throw refuse("task.options.url", `egress refused: ${reason}`, "EGRESS_REFUSED");
  }
}

async function checkTransform(options: TransformOptions, pluginDir: string | undefined) {
  if (pluginDir === undefined) return;
  const plugins = await listPlugins(pluginDir);
  if (!plugins.includes(options.module)) {
    throw refuse(
      "task.options.module",
      `unknown plugin ${JSON.stringify(options.module)} (the workers have: ${plugins.join(", ") || "none"})`,
      "SPEC_INVALID",
    );
  }
}
