// types.ts - the API shapes the console reads (proto/auth.yaml, proto/records.yaml).

export type Role = 'staff' | 'admin';

export interface Account {
    id: string;
    email: string;
    name: string;
    kind: 'patient' | 'staff' | 'operator';
    locale: 'ja' | 'en';
    org_id?: string | null;
    role?: Role | null;
}

export interface SessionIssued {
    token: string;
    expires_at: string;
    idle_expires_at: string;
    account: Account;
    must_change_password: boolean;
    mfa_enrollment_required?: boolean;
}

export interface MfaChallenge {
    mfa_required: true;
    mfa_token: string;
    methods: string[];
}

export interface SessionInfo {
    session_id: string;
    account: Account;
    kind: Account['kind'];
    org_id?: string | null;
    role?: Role | null;
    mfa_methods: string[];
    mfa_enrollment_required?: boolean;
    idle_expires_at: string;
    expires_at: string;
    must_change_password: boolean;
}

export interface Page<T> {
    items: T[];
    next_cursor: string | null;
}

export interface LabelRef {
    id: string;
    name: string;
}

export interface Label extends LabelRef {
    description: string | null;
    patient_count: number;
}

export type Values = Record<string, number | string | boolean>;

export interface Patient {
    patient_id: string;
    name: string;
    email?: string | null;
    linked_at: string;
    groups: LabelRef[];
    categories: LabelRef[];
    latest: Record<string, { measured_at: string; values: Values }>;
}

export interface RecordItem {
    id: string;
    type: string;
    measured_at: string;
    values: Values;
    note: string | null;
    source: string;
}

export interface Stats {
    min: number;
    max: number;
    mean: number;
}

export interface Summary {
    type: string;
    bucket: string;
    items: { start: string; count: number; values: Record<string, Stats> }[];
}

export interface Invitation {
    id: string;
    code: string;
    note: string | null;
    created_at: string;
    expires_at: string;
}

export interface StaffMember {
    id: string;
    email: string;
    name: string;
    role: Role;
    status: 'active' | 'pending';
    mfa_methods: string[];
    locked: boolean;
    last_login_at: string | null;
}

export interface Org {
    id: string;
    name: string;
    seat_limit: number;
    seats_used: number;
}

export interface SessionSummary {
    id: string;
    created_at: string;
    idle_expires_at: string;
    current: boolean;
    ip?: string | null;
    user_agent?: string | null;
}

// proto/audit.yaml

export interface AuditEvent {
    event_id: string;
    seq: number;
    occurred_at: string;
    recorded_at: string;
    actor: { account_id?: string | null; kind: string; org_id?: string | null; role?: Role | null };
    action: string;
    target: { type: string; id: string; patient_id?: string | null; org_id?: string | null };
    outcome: { result: 'success' | 'failure' | 'denied'; reason?: string | null };
    details?: Record<string, unknown>;
}

export type Decision = 'keep' | 'change' | 'remove';

export interface Attestation {
    account_id: string;
    decision: Decision;
    comment: string | null;
    by: string;
    at: string;
}

export interface ReviewLine {
    account_id: string;
    email: string;
    name: string;
    role: Role | 'operator' | null;
    created_at: string;
    last_login_at: string | null;
    mfa_enabled: boolean;
    role_changes: { at: string; from: string | null; to: string | null; by: string | null }[];
    flags: string[];
    attestation: Attestation | null;
}

export interface AccessReview extends Page<ReviewLine> {
    month: string;
    snapshot_at: string | null;
}
