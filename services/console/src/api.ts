// api.ts - calls to the gateway's /api/v1 routes with the bearer token.
//
// The token lives in memory and in sessionStorage (so a reload keeps the tab signed in),
// never in localStorage or a URL; clearToken() forgets both. Errors are RFC 9457
// problem+json bodies, turned into ApiError (status, code, field errors).

const TOKEN_KEY = 'phr.console.token';

let token: string | null = sessionStorage.getItem(TOKEN_KEY);
let activity: (() => void) | null = null;
let expired: (() => void) | null = null;

export interface FieldError {
    field: string;
    message: string;
}

export class ApiError extends Error {
    constructor(
        readonly status: number,
        readonly code: string,
        readonly errors: FieldError[] = [],
        readonly detail = '',
    ) {
        super(`${status} ${code}`);
    }
}

export function getToken(): string | null {
    return token;
}

export function setToken(t: string): void {
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
}

export function clearToken(): void {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
}

/** Called after every answered request that carried the token (the idle window restarts). */
export function onActivity(fn: (() => void) | null): void {
    activity = fn;
}

/** Called when the server no longer knows the token (401 unauthenticated / session_expired). */
export function onExpired(fn: (() => void) | null): void {
    expired = fn;
}

type Query = Record<string, string | number | undefined | null>;

export function withQuery(path: string, q: Query): string {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) {
        if (v !== undefined && v !== null && v !== '') {
            p.set(k, String(v));
        }
    }
    const s = p.toString();
    return s ? `${path}?${s}` : path;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (token) {
        headers.Authorization = `Bearer ${token}`;
    }
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
    }
    let res: Response;
    try {
        res = await fetch(`/api/v1${path}`, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            credentials: 'omit',
            cache: 'no-store',
        });
    } catch {
        throw new ApiError(0, 'network_error');
    }
    if (token && res.status !== 401 && activity) {
        activity();
    }
    const text = await res.text();
    let data: unknown = null;
    if (text) {
        try {
            data = JSON.parse(text);
        } catch {
            data = null;
        }
    }
    if (!res.ok) {
        const p = (data ?? {}) as { code?: string; errors?: FieldError[]; detail?: string };
        const sent = headers.Authorization !== undefined;
        if (sent && res.status === 401 && /^(unauthenticated|session_expired)$/.test(p.code ?? '')) {
            expired?.();
        }
        throw new ApiError(res.status, p.code ?? `http_${res.status}`, p.errors ?? [], p.detail);
    }
    return data as T;
}
