/** Hash routes (`#/`, `#/new`, `#/operations/ID`): the API owns every path on the origin. */
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "list"; cursor?: string }
  | { page: "new" }
  | { page: "operation"; id: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/";
  const op = /^\/operations\/([A-Za-z0-9_-]+)$/.exec(path);
  if (op?.[1]) return { page: "operation", id: op[1] };
  if (path === "/new") return { page: "new" };
  return { page: "list" };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function go(hash: string): void {
  location.hash = hash;
}
