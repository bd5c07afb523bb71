// The security-key dialog's state: what the key asks for while a ceremony (an approval that
// needs the key, a key being added) runs in the core.
import { host, type AppError } from "../ipc/host";
import type { KeyPromptView } from "../ipc/bindings";

class KeyPrompt {
  /** null: no dialog; "touch" | "pin" | "processing". */
  kind = $state<string | null>(null);
  what = $state("");
  error = $state<string | null>(null);

  /** Runs `ceremony` with the dialog following its prompts; the dialog closes when it ends. */
  async run<T>(what: string, ceremony: (onPrompt: (p: KeyPromptView) => void) => Promise<T>): Promise<T> {
    this.what = what;
    this.error = null;
    try {
      return await ceremony((p) => (this.kind = p.kind === "done" ? null : p.kind));
    } finally {
      this.kind = null;
    }
  }

  async answer(pin: string | null) {
    this.kind = pin === null ? null : "processing";
    try {
      await host.keyPin(pin);
    } catch (e) {
      this.error = (e as AppError).message;
    }
  }
}

export const keyPrompt = new KeyPrompt();
