/** Entry point of the `shardfleet` command (see bin/shardfleet.js): the CLI plus the demo. */
import { addDemoCommand } from "../demo/command.ts";
import { main } from "./program.ts";

await main(process.argv, [addDemoCommand]);
