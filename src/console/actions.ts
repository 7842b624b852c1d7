/** The actions an operation's page offers, by status (the API decides; this hides what cannot apply). */

export type Action = "cancel" | "pause" | "resume" | "retry";

export function actionsFor(status: string): Action[] {
  switch (status) {
    case "running":
    case "waiting-for-capacity":
      return ["pause", "cancel"];
    case "paused":
      return ["resume", "cancel"];
    case "queued":
    case "splitting":
    case "merging":
      return ["cancel"];
    case "succeeded-with-failures":
    case "failed":
      return ["retry"];
    default:
      return [];
  }
}

export const ACTION_LABEL: Record<Action, string> = {
  cancel: "Cancel",
  pause: "Pause",
  resume: "Resume",
  retry: "Retry failed rows",
};
