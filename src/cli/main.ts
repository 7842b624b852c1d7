/** Entry point of the `shardfleet` command (see bin/shardfleet.js). */
import { main } from "./program.ts";

await main(process.argv);
