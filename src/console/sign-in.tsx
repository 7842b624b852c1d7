/** Sign in with an API token; it stays in this tab's sessionStorage only. */
import { useState } from "preact/hooks";
import { errorText } from "./api.ts";

export function SignIn(props: { onSignIn: (token: string) => Promise<void> }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await props.onSignIn(token.trim());
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="sign-in">
      <h1>shardfleet</h1>
      <form onSubmit={submit} aria-describedby="sign-in-help">
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          required
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <p id="sign-in-help" class="help">
          The token your operator gave you (shardfleet token create). It is kept in this tab only.
        </p>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <p role="alert" class="error">
          {error}
        </p>
      </form>
    </main>
  );
}
