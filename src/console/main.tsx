/**
 * The shardfleet web console: sign in with a token, list operations, watch one live, submit one.
 * Served by the scheduler (same origin, no CDN); every figure comes from the API.
 */
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Whoami } from "../shared/contracts/api.ts";
import { Api, storedToken, storeToken } from "./api.ts";
import { OperationPage } from "./operation-page.tsx";
import { OperationsList } from "./operations-list.tsx";
import { useRoute } from "./router.ts";
import { SignIn } from "./sign-in.tsx";
import { UploadPage } from "./upload-page.tsx";

type Session = { api: Api; who: Whoami } | "checking" | "signed-out";

function App() {
  const [session, setSession] = useState<Session>("checking");
  const route = useRoute();

  // A new page: its title for the tab and screen readers, and focus on its heading.
  useEffect(() => {
    document.title =
      route.page === "operation"
        ? `Operation ${route.id} · shardfleet`
        : route.page === "new"
          ? "New operation · shardfleet"
          : "Operations · shardfleet";
    window.setTimeout(() => document.querySelector<HTMLElement>("main h1")?.focus(), 0);
  }, [route]);

  // A stored token (or an API without tokens) signs in by itself.
  useEffect(() => {
    const api = new Api(storedToken());
    api.get<Whoami>("/whoami").then(
      (who) => setSession({ api, who }),
      () => setSession("signed-out"),
    );
  }, []);

  const signIn = async (token: string) => {
    const api = new Api(token);
    const who = await api.get<Whoami>("/whoami");
    storeToken(token);
    setSession({ api, who });
  };

  if (session === "checking") return <p class="loading">Loading…</p>;
  if (session === "signed-out") return <SignIn onSignIn={signIn} />;
  const { api, who } = session;
  const signOut = () => {
    storeToken(null);
    setSession("signed-out");
  };
  return (
    <>
      <button type="button" class="skip" onClick={skipToMain}>
        Skip to content
      </button>
      <header class="top">
        <a class="brand" href="#/">
          shardfleet
        </a>
        <nav aria-label="Main">
          <a href="#/" aria-current={route.page === "list" ? "page" : undefined}>
            Operations
          </a>
          <a href="#/new" aria-current={route.page === "new" ? "page" : undefined}>
            New operation
          </a>
        </nav>
        <p class="who">
          <span data-testid="tenant">{who.tenant}</span> ({who.role})
          {api.token ? (
            <button type="button" class="link" onClick={signOut}>
              Sign out
            </button>
          ) : null}
        </p>
      </header>
      <main id="main">
        {route.page === "list" ? <OperationsList api={api} /> : null}
        {route.page === "new" ? <UploadPage api={api} /> : null}
        {route.page === "operation" ? <OperationPage api={api} id={route.id} /> : null}
      </main>
    </>
  );
}

/** Skipping to the content moves focus without touching the hash (the router's). */
function skipToMain() {
  document.querySelector<HTMLElement>("main h1")?.focus();
}

const root = document.getElementById("app");
if (root) render(<App />, root);
