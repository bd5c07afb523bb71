// Generated from crates/app/src/ipc.rs by `PORTCULLIS_WRITE_BINDINGS=1 cargo test -p portcullis-app --test app committed_typescript`.
// Do not edit: a test fails when this file and the Rust types differ.

export type AppError = { code: string, message: string, };

export type Phase = "fresh" | "locked" | "ready";

export type AppStatus = { phase: Phase, standalone: boolean, 
/**
 * "OS keyring" or "passphrase (Argon2id)", once set up.
 */
key_store: string | null, server_url: string | null, user: UserView | null, };

export type UserView = { name: string, roles: Array<string>, };

export type GrantView = { user: string, not_after: number, };

export type TargetView = { name: string, host: string, port: number, login: string, credential_kind: string, 
/**
 * The target's public host key line (public; the fingerprint is shown, this pre-fills edits).
 */
host_key: string, host_key_fingerprint: string, environment: string, tags: Array<string>, description: string, created_at: number, last_used_at: number | null, last_used_by: string | null, active_grants: Array<GrantView>, 
/**
 * The gateway that brokers (and records) every session on it.
 */
gateway: string, 
/**
 * Seen as a requester: only name, environment, tags, description and one's own access.
 */
requester_view: boolean, };

export type VaultFilter = { text: string | null, environment: string | null, tag: string | null, };

export type NewTargetForm = { name: string, host: string, port: number, login: string, host_key: string, 
/**
 * "password" or "private_key"
 */
credential_kind: string, credential: string, environment: string, tags: Array<string>, description: string, };

export type NewUserView = { name: string, 
/**
 * `None` when a second admin must confirm the account (`confirmation` says why).
 */
enrolment_code: string | null, confirmation: string | null, expires_at: number, };

export type GatewayView = { name: string, embedded: boolean, address: string | null, host_key_fingerprint: string | null, enrolled_at: number | null, last_contact_at: number | null, 
/**
 * Records it holds that the server has not acknowledged, as it last reported.
 */
backlog: number, targets: number, 
/**
 * A second admin vouched for it; until then it serves no target.
 */
confirmed: boolean, revoked: boolean, };

export type NewGatewayView = { name: string, enrolment_code: string, expires_at: number, };

export type RequestView = { id: string, requester: string, target: string, 
/**
 * `ssh` (a target), `checkout` or `use` (a vault item).
 */
access: string, duration_secs: number, reason: string, status: string, created_at: number, expires_at: number, decided_by: string | null, decision_reason: string | null, grant_not_after: number | null, 
/**
 * `k of N`.
 */
approvals: number, approvals_needed: number, approver_groups: Array<string>, 
/**
 * The policies that permitted it.
 */
permitted_by: Array<string>, grant_id: string | null, revoked_at: number | null, revoked_by: string | null, revoke_reason: string | null, };

export type TimelineEntryView = { at: number, 
/**
 * requested | permitted | approved | denied | granted | session_started | session_ended |
 * revoked | withdrawn | expired
 */
kind: string, actor: string | null, text: string, 
/**
 * Session entries: the session to replay.
 */
session_id: string | null, };

export type RequestDetailView = { request: RequestView, timeline: Array<TimelineEntryView>, };

export type PolicySetView = { version: number, text: string, created_at: number, 
/**
 * `null`: the built-in default.
 */
created_by: string | null, policies: number, };

export type PolicyProblemView = { line: number | null, column: number | null, message: string, };

export type PolicyCheckView = { valid: boolean, problems: Array<PolicyProblemView>, policies: number, };

export type PolicyTestForm = { user: string, target: string, duration_secs: number, 
/**
 * RFC 3339; now when empty.
 */
at: string | null, source_ip: string | null, 
/**
 * Test this draft instead of the set in force.
 */
text: string | null, };

export type PolicyTestView = { allowed: boolean, 
/**
 * One line beginning with allow or deny.
 */
summary: string, policies: Array<string>, approvals: number, approver_groups: Array<string>, at: string, source_ip: string, time_zone: string, };

export type MemberView = { name: string, roles: Array<string>, groups: Array<string>, created_by: string | null, disabled_at: number | null, 
/**
 * Confirmed independently of its creator, by this admin.
 */
confirmed_by: string | null, };

export type GroupSummaryView = { name: string, members: Array<string>, };

export type KeyView = { id: string, name: string, created_at: number, last_used_at: number | null, };

export type KeyPromptView = { kind: string, };

export type RevokeView = { request: RequestView, sessions_ended: number, };

export type LiveView = { 
/**
 * connected | disconnected | request_created | request_decided | request_updated | resync |
 * security_keys_changed
 */
kind: string, request: RequestView | null, message: string | null, };

export type SessionView = { id: string, user: string | null, target: string, command: string | null, started_at: number, ended_at: number | null, exit_status: number | null, end_reason: string | null, 
/**
 * The gateway that recorded it.
 */
recorded_by: string, 
/**
 * Where its recording stands: `verified` (every record under a signed, countersigned
 * checkpoint), `pending_upload`, `failed` (with `verification_why`), or `unknown`.
 */
verification: string, verification_why: string | null, };

export type BundleCheckView = { verified: boolean, records: number, log_size: number, complete: boolean, detail: string, };

export type AlarmView = { id: number, at: number, kind: string, gateway: string, index: number | null, message: string, };

export type TerminalEvent = { "kind": "output", data: string, } | { "kind": "closed", message: string, exit_status: number | null, };

export type CertificateView = { subject: string, issuer: string, names: Array<string>, not_before: number, not_after: number, sha256: string, chain_length: number, };

export type SecretItemView = { name: string, kind: string, environment: string, folder: string, tags: Array<string>, description: string, owner: string, revealable: boolean, expires_at: number | null, 
/**
 * Expired or expiring within 30 days.
 */
expiring: boolean, version: number, versions_kept: number, target: string | null, 
/**
 * Public fields (a host, a user name, a URL).
 */
fields: Array<[string, string]>, certificate: CertificateView | null, ssh_key: string | null, updated_at: number, updated_by: string, };

export type SecretPageView = { items: Array<SecretItemView>, 
/**
 * Ask with this as `after` for the next page (`null`: the last).
 */
next: string | null, };

export type SecretQueryForm = { search: string | null, kind: string | null, env: string | null, folder: string | null, expiring: boolean, after: string | null, };

export type SecretFieldView = { name: string, secret: boolean, required: boolean, multiline: boolean, };

export type SecretKindView = { kind: string, primary: string, fields: Array<SecretFieldView>, };

export type SecretFieldInput = { name: string, text: string | null, file: string | null, };

export type NewSecretForm = { name: string, kind: string, environment: string, folder: string, tags: Array<string>, description: string, revealable: boolean, target: string | null, fields: Array<SecretFieldInput>, reason: string, };

export type SecretVersionItemView = { version: number, created_at: number, created_by: string, reason: string, restored_from: number | null, destroyed: boolean, current: boolean, };

export type RevealedView = { secret: string, version: number, until: number, value: string, };

export type CopiedView = { secret: string, version: number, until: number, clears_in_secs: number, };

export type CheckinView = { secret: string, version: number, 
/**
 * A bound password's rotation, started by the check-in.
 */
rotation: string | null, };
