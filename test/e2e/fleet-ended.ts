/** Test helper: waits for an operation's fleet to be gone, in local EC2 and in the API's view. */
import type { ApiClient, OperationView } from "../../src/cli/api-client.ts";
import type { LocalStack } from "../../src/local/stack.ts";
import { FLEET_TAGS } from "../../src/shared/capacity.ts";
import { waitFor } from "../support/wait.ts";

/** Every instance of the operation terminated, then the view that shows it. */
export async function fleetEnded(
  stack: LocalStack,
  client: ApiClient,
  id: string,
  timeoutMs: number,
): Promise<OperationView> {
  const tags = { [FLEET_TAGS.operation]: id };
  await waitFor(
    "every instance terminated",
    async () => {
      const live = stack.localEc2!.describe(tags).filter((i) => i.state !== "terminated");
      return live.length === 0 ? true : undefined;
    },
    timeoutMs,
  );
  return waitFor(
    "the operation's view to show it",
    async () => {
      const v = await client.get(id);
      return v.instances?.length && v.instances.every((i) => i.state === "terminated")
        ? v
        : undefined;
    },
    timeoutMs,
  );
}
