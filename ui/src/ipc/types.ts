// Types of the IPC boundary, mirroring crates/app/src/ipc.rs. No type here carries a credential
// coming back from the core; NewTargetForm.credential only goes in.

export type Phase = "fresh" | "locked" | "ready";

export interface UserView { name: string; roles: string[] }

export interface AppStatus {
  phase: Phase;
  standalone: boolean;
  key_store: string | null;
  server_url: string | null;
  user: UserView | null;
}

export interface AppError { code: string; message: string }

export interface GrantView { user: string; not_after: number }

export interface TargetView {
  name: string;
  host: string;
  port: number;
  login: string;
  credential_kind: string;
  host_key_fingerprint: string;
  environment: string;
  tags: string[];
  description: string;
  created_at: number;
  last_used_at: number | null;
  last_used_by: string | null;
  active_grants: GrantView[];
}

export interface TargetFilter { text: string | null; environment: string | null; tag: string | null }

export interface NewTargetForm {
  name: string;
  host: string;
  port: number;
  login: string;
  host_key: string;
  credential_kind: "password" | "private_key";
  credential: string;
  environment: string;
  tags: string[];
  description: string;
}

export interface NewUserView { name: string; enrolment_code: string; expires_at: number }

export interface RequestView {
  id: string;
  requester: string;
  target: string;
  duration_secs: number;
  reason: string;
  status: "pending" | "approved" | "denied" | "expired";
  created_at: number;
  expires_at: number;
  decided_by: string | null;
  decision_reason: string | null;
  grant_not_after: number | null;
}

export interface LiveView {
  kind: "connected" | "disconnected" | "request_created" | "request_decided" | "resync";
  request: RequestView | null;
  message: string | null;
}

export type TerminalEvent =
  | { kind: "output"; data: string }
  | { kind: "closed"; message: string; exit_status: number | null };

export interface SessionView {
  id: string;
  user: string | null;
  target: string;
  command: string | null;
  started_at: number;
  ended_at: number | null;
  exit_status: number | null;
  end_reason: string | null;
  synced: boolean;
}
