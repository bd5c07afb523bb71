// Requests as this user sees them, kept current by the server's live push (no polling).
import { host, type AppError } from "../../ipc/host";
import type { LiveView, RequestView, UserView } from "../../ipc/bindings";

export class Access {
  requests = $state<RequestView[]>([]);
  live = $state<"connecting" | "live" | "offline">("connecting");
  error = $state<string | null>(null);

  constructor(readonly me: UserView) {}

  get mine() {
    return this.requests.filter((r) => r.requester === this.me.name);
  }

  get inbox() {
    return this.requests.filter((r) => r.status === "pending" && r.requester !== this.me.name);
  }

  async start() {
    await this.reload();
    try {
      await host.watch((e) => this.onLive(e));
    } catch (e) {
      this.live = "offline";
      this.error = (e as AppError).message;
    }
  }

  async reload() {
    try {
      this.requests = await host.listRequests(false);
      this.error = null;
    } catch (e) {
      this.error = (e as AppError).message;
    }
  }

  upsert(r: RequestView) {
    const i = this.requests.findIndex((x) => x.id === r.id);
    if (i >= 0) this.requests[i] = r;
    else this.requests = [r, ...this.requests];
  }

  private onLive(e: LiveView) {
    if (e.kind === "connected") {
      this.live = "live";
      void this.reload(); // anything missed while disconnected
    } else if (e.kind === "disconnected") {
      this.live = "offline";
    } else if (e.kind === "resync") {
      void this.reload();
    } else if (e.kind === "security_keys_changed") {
      // Seen on every device of the user: a key someone else registered is noticed.
      void host.notify("Security keys changed", e.message ?? "");
    } else if (e.request) {
      const r = e.request;
      this.upsert(r);
      const approver = this.me.roles.includes("approver");
      if (e.kind === "request_created" && approver && r.requester !== this.me.name) {
        void host.notify("Access request", `${r.requester} asks for ${r.target}: ${r.reason}`);
      } else if (e.kind === "request_updated" && r.requester === this.me.name && r.status === "revoked") {
        void host.notify("Access revoked", `${r.target}${r.revoke_reason ? ` — ${r.revoke_reason}` : ""}`);
      } else if (e.kind === "request_decided" && r.requester === this.me.name) {
        void host.notify(`Request ${r.status}`, `${r.target}${r.decision_reason ? ` — ${r.decision_reason}` : ""}`);
      }
    }
  }
}
