// The one module that talks to the Tauri host. Everything else in the UI imports from here,
// so the UI can run against a mock host in unit tests.
import { Channel, invoke } from "@tauri-apps/api/core";
import { isPermissionGranted, sendNotification } from "@tauri-apps/plugin-notification";
import type {
  AlarmView, AppError, AppStatus, BundleCheckView, GatewayView, GroupSummaryView, KeyPromptView, KeyView, LiveView, MemberView, NewGatewayView,
  NewTargetForm, NewUserView, PolicyCheckView, PolicySetView, PolicyTestForm, PolicyTestView, RequestDetailView,
  RequestView, RevokeView, SessionView, TargetView, TerminalEvent, VaultFilter,
  CheckinView, CopiedView, NewSecretForm, RevealedView, SecretFieldInput, SecretItemView, SecretKindView, SecretPageView,
  SecretQueryForm, SecretVersionItemView,
} from "./bindings";

export type { AppError } from "./bindings";

/** Errors from the core are `{ code, message }`; anything else becomes `internal`. */
export function asAppError(e: unknown): AppError {
  if (e && typeof e === "object" && "code" in e && "message" in e) return e as AppError;
  return { code: "internal", message: String(e) };
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw asAppError(e);
  }
}

export const host = {
  status: () => call<AppStatus>("app_status"),
  createStandalone: (adminName: string, passphrase: string | null) =>
    call<AppStatus>("create_standalone", { adminName, passphrase }),
  enroll: (serverUrl: string, code: string, passphrase: string | null) =>
    call<AppStatus>("enroll", { serverUrl, code, passphrase }),
  unlock: (passphrase: string | null) => call<AppStatus>("unlock", { passphrase }),
  listTargets: (filter: VaultFilter) => call<TargetView[]>("list_targets", { filter }),
  addTarget: (form: NewTargetForm) => call<TargetView>("add_target", { form }),
  updateTarget: (form: NewTargetForm) => call<TargetView>("update_target", { form }),
  addUser: (name: string, roles: string[], groups: string[]) => call<NewUserView>("add_user", { name, roles, groups }),
  confirmUser: (name: string) => call<NewUserView>("confirm_user", { name }),
  members: () => call<MemberView[]>("list_members"),
  groups: () => call<GroupSummaryView[]>("list_groups"),
  addGroup: (name: string) => call<GroupSummaryView>("add_group", { name }),
  setUserGroups: (user: string, groups: string[]) => call<MemberView>("set_user_groups", { user, groups }),
  policy: () => call<PolicySetView>("policy_show"),
  checkPolicy: (text: string) => call<PolicyCheckView>("policy_check", { text }),
  savePolicy: (text: string) => call<PolicySetView>("policy_save", { text }),
  testPolicy: (form: PolicyTestForm) => call<PolicyTestView>("policy_test", { form }),
  keys: () => call<KeyView[]>("list_keys"),
  addKey: (name: string, onPrompt: (p: KeyPromptView) => void) => {
    const prompts = new Channel<KeyPromptView>();
    prompts.onmessage = onPrompt;
    return call<KeyView>("add_key", { name, prompts });
  },
  removeKey: (key: string, onPrompt: (p: KeyPromptView) => void) => {
    const prompts = new Channel<KeyPromptView>();
    prompts.onmessage = onPrompt;
    return call<KeyView>("remove_key", { key, prompts });
  },
  /** The PIN a waiting security key asked for (null cancels); it goes to the key only. */
  keyPin: (pin: string | null) => call<void>("key_pin", { pin }),
  secretKinds: () => call<SecretKindView[]>("secret_kinds"),
  listSecrets: (query: SecretQueryForm) => call<SecretPageView>("list_secrets", { query }),
  addSecret: (form: NewSecretForm) => call<SecretItemView>("add_secret", { form }),
  newSecretVersion: (name: string, fields: SecretFieldInput[], reason: string) =>
    call<SecretItemView>("new_secret_version", { name, fields, reason }),
  secretHistory: (name: string) => call<SecretVersionItemView[]>("secret_history", { name }),
  restoreSecret: (name: string, version: number, reason: string) =>
    call<SecretItemView>("restore_secret", { name, version, reason }),
  /** The one call whose answer carries a secret value: for the check-out's masked field. */
  revealSecret: (name: string) => call<RevealedView>("reveal_secret", { name }),
  /** The value goes to the clipboard from the core (cleared after 30 s); it never comes here. */
  copySecret: (name: string) => call<CopiedView>("copy_secret", { name }),
  checkinSecret: (name: string) => call<CheckinView>("checkin_secret", { name }),
  gateways: () => call<GatewayView[]>("list_gateways"),
  addGateway: (name: string) => call<NewGatewayView>("add_gateway", { name }),
  listRequests: (pendingOnly: boolean) => call<RequestView[]>("list_requests", { pendingOnly }),
  createRequest: (target: string, durationSecs: number, reason: string) =>
    call<RequestView>("create_request", { target, durationSecs, reason }),
  review: (id: string, approve: boolean, reason: string | null, onPrompt: (p: KeyPromptView) => void) => {
    const prompts = new Channel<KeyPromptView>();
    prompts.onmessage = onPrompt;
    return call<RequestView>("review_request", { id, approve, reason, prompts });
  },
  revoke: (id: string, reason: string | null) => call<RevokeView>("revoke", { id, reason }),
  requestDetail: (id: string) => call<RequestDetailView>("request_detail", { id }),
  watch: (onEvent: (e: LiveView) => void) => {
    const events = new Channel<LiveView>();
    events.onmessage = onEvent;
    return call<void>("watch", { events });
  },
  connect: (target: string, cols: number, rows: number, onEvent: (e: TerminalEvent) => void) => {
    const events = new Channel<TerminalEvent>();
    events.onmessage = onEvent;
    return call<string>("connect", { target, cols, rows, events });
  },
  terminalInput: (id: string, data: string) => call<void>("terminal_input", { id, data }),
  terminalResize: (id: string, cols: number, rows: number) => call<void>("terminal_resize", { id, cols, rows }),
  terminalClose: (id: string) => call<void>("terminal_close", { id }),
  mySessions: () => call<SessionView[]>("my_sessions"),
  auditSessions: () => call<SessionView[]>("audit_sessions"),
  sessionCast: (id: string) => call<string>("session_cast", { id }),
  verifySession: (id: string) => call<BundleCheckView>("verify_session", { id }),
  exportBundle: (id: string) => call<string>("export_bundle", { id }),
  auditAlarms: () => call<AlarmView[]>("audit_alarms"),
  /** A desktop notification; silently nothing where the desktop has no notification service. */
  notify: async (title: string, body: string) => {
    try {
      if (await isPermissionGranted()) sendNotification({ title, body });
    } catch {
      // Notifications are a convenience: the inbox in the window is the source of truth.
    }
  },
};
